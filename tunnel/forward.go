package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultForwardIdleTimeout is how long a forward waits for its session.
const DefaultForwardIdleTimeout = 60 * time.Second

var (
	// ErrForwardExpired is a forward's result when no session started in time.
	ErrForwardExpired = errors.New("forward expired before a session started")
	// ErrForwardClosed is a forward's result when it was closed before a session started.
	ErrForwardClosed = errors.New("forward closed before a session started")
)

// Handoff serves the one accepted connection of a forward, e.g. by
// starting the container's SSH endpoint with the socket as its
// stdin/stdout. Serve returns when the session is over; it must return
// soon after ctx is cancelled. The forward closes conn afterwards.
type Handoff interface {
	Serve(ctx context.Context, conn *net.TCPConn) error
}

// HandoffFunc adapts a function to Handoff.
type HandoffFunc func(ctx context.Context, conn *net.TCPConn) error

// Serve calls f.
func (f HandoffFunc) Serve(ctx context.Context, conn *net.TCPConn) error { return f(ctx, conn) }

// ForwardConfig configures a temporary port forward.
type ForwardConfig struct {
	// ListenIP is the local address to listen on (the LAN address the
	// request came in on); the port is chosen by the OS.
	ListenIP net.IP
	// AllowFrom is the only source address accepted.
	AllowFrom net.IP
	// IdleTimeout closes the forward when no session started within it
	// (default DefaultForwardIdleTimeout).
	IdleTimeout time.Duration
	// Handoff serves the accepted connection.
	Handoff Handoff
	// Logger receives refusals and the session's end (default slog.Default()).
	Logger *slog.Logger
}

// Forward is a listener that serves exactly one session from one address.
type Forward struct {
	cfg    ForwardConfig
	log    *slog.Logger
	ln     *net.TCPListener
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	used  bool // a session started, or the forward expired/closed
	err   error
	timer *time.Timer
}

// OpenForward starts listening and returns at once; the forward closes
// itself after its one session or when IdleTimeout passes without one.
func OpenForward(ctx context.Context, cfg ForwardConfig) (*Forward, error) {
	if cfg.ListenIP == nil || cfg.AllowFrom == nil {
		return nil, errors.New("opening forward: ListenIP and AllowFrom are required")
	}
	if cfg.Handoff == nil {
		return nil, errors.New("opening forward: Handoff is required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultForwardIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: cfg.ListenIP})
	if err != nil {
		return nil, fmt.Errorf("opening forward on %s: %w", cfg.ListenIP, err)
	}
	f := &Forward{cfg: cfg, ln: ln, done: make(chan struct{})}
	f.log = log.With("forward", ln.Addr().String(), "allow", cfg.AllowFrom.String())
	f.ctx, f.cancel = context.WithCancel(ctx)
	f.mu.Lock()
	f.timer = time.AfterFunc(cfg.IdleTimeout, func() { f.stop(ErrForwardExpired) })
	f.mu.Unlock()
	f.wg.Add(1)
	go f.acceptLoop()
	go func() {
		select {
		case <-f.ctx.Done():
			f.stop(ErrForwardClosed)
		case <-f.done:
		}
	}()
	go func() {
		f.wg.Wait()
		close(f.done)
	}()
	f.log.Debug("forward open", "idle_timeout", cfg.IdleTimeout)
	return f, nil
}

// Addr is the listening address.
func (f *Forward) Addr() *net.TCPAddr { return f.ln.Addr().(*net.TCPAddr) }

// Done is closed when the forward is closed and its session has ended.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Err is the forward's result once Done is closed: the Handoff's error
// (nil for a clean session), ErrForwardExpired or ErrForwardClosed.
func (f *Forward) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close stops the forward, ends its session (by cancelling the Handoff's
// context) and waits until everything has finished.
func (f *Forward) Close() error {
	f.stop(ErrForwardClosed)
	f.cancel()
	<-f.done
	return nil
}

// stop closes the listener; if no session started, err is the result.
func (f *Forward) stop(err error) {
	f.mu.Lock()
	if !f.used {
		f.used = true
		f.err = err
		if errors.Is(err, ErrForwardExpired) {
			f.log.Info("forward expired, no session started")
		}
	}
	timer := f.timer
	f.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	f.ln.Close()
}

func (f *Forward) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Warn("forward accept failed", "err", err)
				f.stop(fmt.Errorf("accepting on forward: %w", err))
			}
			return
		}
		remote, _ := c.RemoteAddr().(*net.TCPAddr)
		if remote == nil || !remote.IP.Equal(f.cfg.AllowFrom) {
			f.log.Warn("forward refused connection: source address not allowed", "from", c.RemoteAddr().String())
			c.SetLinger(0)
			c.Close()
			continue
		}
		f.mu.Lock()
		used := f.used
		f.used = true
		timer := f.timer
		f.mu.Unlock()
		if used {
			f.log.Warn("forward refused connection: its one session is used or over", "from", remote.String())
			c.SetLinger(0)
			c.Close()
			continue
		}
		timer.Stop()
		c.SetNoDelay(true)
		f.log.Info("forward session started", "from", remote.String())
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *Forward) serve(c *net.TCPConn) {
	defer f.wg.Done()
	start := time.Now()
	err := f.cfg.Handoff.Serve(f.ctx, c)
	c.Close()
	if err != nil {
		err = fmt.Errorf("forward session: %w", err)
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	f.log.Info("forward session ended", "duration", time.Since(start), "err", err)
	f.ln.Close()
	f.cancel()
}
