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
	// ErrTooManyAttempts is a forward's result when ForwardConfig.Attempts
	// connections ended without authenticating.
	ErrTooManyAttempts = errors.New("forward closed: too many connections failed to authenticate")
	// ErrNotAuthenticated is what a reporting Handoff's error wraps when
	// its connection ended without authenticating (see Authenticated).
	ErrNotAuthenticated = errors.New("the connection did not authenticate")
)

// DefaultAuthAttempts is how many connections may try to authenticate on
// a forward whose Handoff reports authentication (see ForwardConfig.Attempts).
const DefaultAuthAttempts = 3

// attemptKey is the context key of a connection's *attempt.
type attemptKey struct{}

// Authenticated is how a Handoff reports that its connection has
// authenticated (the endpoint accepted the requester's key): it returns
// whether this connection is the forward's one session. On false another
// connection already is (or the forward closed), and the Handoff must end
// its connection without serving it. Outside a forward it returns true.
func Authenticated(ctx context.Context) bool {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return true
	}
	return a.f.claim(a)
}

// attempt is one accepted connection that may become the session.
type attempt struct {
	f       *Forward
	cancel  context.CancelFunc
	claimed bool // guarded by f.mu
}

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
	// ListenZone is ListenIP's zone (the interface) for a link-local IPv6
	// address, which needs one; "" otherwise.
	ListenZone string
	// AllowFrom is the only source address accepted.
	AllowFrom net.IP
	// IdleTimeout closes the forward when no session started within it
	// (default DefaultForwardIdleTimeout).
	IdleTimeout time.Duration
	// Handoff serves the accepted connection.
	Handoff Handoff
	// Attempts is how many connections may try to become the session
	// (default 1: the first connection accepted is the session, for a
	// Handoff that does not report authentication). With more the Handoff
	// must report: it calls Authenticated once its connection has
	// authenticated, and returns an error wrapping ErrNotAuthenticated
	// when it ended without. Connections then run side by side, so one
	// that stalls or fails (a wrong key, another local user racing the
	// requester) does not cost the requester its session: the first to
	// authenticate is the session and the others end. Connections that
	// never authenticated count against Attempts; when that many have
	// ended, or IdleTimeout passes, no more are accepted.
	Attempts int
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

	mu       sync.Mutex
	claimed  bool // a connection is the session
	stopped  bool // no more connections: expired, closed or out of attempts
	failures int  // connections that ended without becoming the session
	attempts map[*attempt]struct{}
	err      error
	timer    *time.Timer
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
	if cfg.Attempts <= 0 {
		cfg.Attempts = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: cfg.ListenIP, Zone: cfg.ListenZone})
	if err != nil {
		return nil, fmt.Errorf("opening forward on %s: %w", cfg.ListenIP, err)
	}
	f := &Forward{cfg: cfg, ln: ln, done: make(chan struct{}), attempts: map[*attempt]struct{}{}}
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

// Err is the forward's result once Done is closed: the session's Handoff
// error (nil for a clean session), or, without a session,
// ErrForwardExpired, ErrForwardClosed or ErrTooManyAttempts.
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

// stop closes the listener; if no session started, err is the result
// (unless a connection accepted before becomes the session).
func (f *Forward) stop(err error) {
	f.mu.Lock()
	if !f.claimed && !f.stopped {
		f.stopped = true
		f.err = err
		if errors.Is(err, ErrForwardExpired) {
			f.log.Info("forward expired, no session started", "pending", len(f.attempts))
		}
	}
	f.stopped = true
	timer := f.timer
	f.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	f.ln.Close()
}

// claim makes a the session if none is yet and the forward is not closed;
// the other connections end.
func (f *Forward) claim(a *attempt) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a.claimed {
		return true
	}
	if f.claimed || f.ctx.Err() != nil {
		return false
	}
	f.claimed, a.claimed = true, true
	f.timer.Stop()
	for o := range f.attempts {
		if o != a {
			o.cancel()
		}
	}
	f.log.Info("forward session authenticated")
	return true
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
		var why string
		switch {
		case f.claimed || f.stopped:
			why = "its one session is used or over"
		case f.failures+len(f.attempts) >= f.cfg.Attempts:
			why = "as many connections as it allows are trying"
		}
		if why != "" {
			f.mu.Unlock()
			f.log.Warn("forward refused connection: "+why, "from", remote.String())
			c.SetLinger(0)
			c.Close()
			continue
		}
		ctx, cancel := context.WithCancel(f.ctx)
		a := &attempt{f: f, cancel: cancel}
		f.attempts[a] = struct{}{}
		if f.cfg.Attempts == 1 {
			// The Handoff may not report: its one connection is the session.
			f.claimed, a.claimed = true, true
			f.timer.Stop()
		}
		n := f.failures + len(f.attempts)
		f.mu.Unlock()
		c.SetNoDelay(true)
		f.log.Info("forward connection accepted", "from", remote.String(), "attempt", n, "of", f.cfg.Attempts)
		f.wg.Add(1)
		go f.serve(context.WithValue(ctx, attemptKey{}, a), a, c)
	}
}

func (f *Forward) serve(ctx context.Context, a *attempt, c *net.TCPConn) {
	defer f.wg.Done()
	defer a.cancel()
	start := time.Now()
	err := f.cfg.Handoff.Serve(ctx, c)
	c.Close()
	f.mu.Lock()
	delete(f.attempts, a)
	if a.claimed {
		if err != nil {
			err = fmt.Errorf("forward session: %w", err)
		}
		f.err = err
		f.mu.Unlock()
		f.log.Info("forward session ended", "duration", time.Since(start), "err", err)
		f.ln.Close()
		f.cancel()
		return
	}
	f.failures++
	claimed := f.claimed
	exhausted := !claimed && f.failures >= f.cfg.Attempts
	if exhausted && !f.stopped {
		f.stopped = true
		f.err = fmt.Errorf("%w (last: %w)", ErrTooManyAttempts, err)
	}
	failures := f.failures
	f.mu.Unlock()
	if claimed {
		f.log.Debug("forward connection ended: another is the session", "err", err)
		return
	}
	f.log.Warn("forward connection ended without becoming the session", "failed", failures, "of", f.cfg.Attempts, "err", err)
	if exhausted {
		f.stop(ErrTooManyAttempts)
	}
}
