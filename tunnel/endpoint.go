package tunnel

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Endpoint defaults.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultSessionIdle      = 30 * time.Second
	DefaultMaxChannels      = 4
	DefaultMaxX11Conns      = 64
	// GuestUser is the only user name the endpoint accepts by default.
	GuestUser = "guest"
)

// permFingerprint is the Permissions extension recording which key
// authenticated the connection.
const permFingerprint = "pubkey-fp"

// EndpointConfig configures the in-container SSH endpoint.
type EndpointConfig struct {
	// HostKey is the endpoint's persistent host key (see LoadOrCreateHostKey).
	HostKey ssh.Signer
	// AuthorizedKey is the one public key allowed to log in.
	AuthorizedKey ssh.PublicKey
	// User is the only user name accepted (default GuestUser).
	User string
	// Command is the approved command's argv: exec requests must ask for
	// exactly it (see ShellJoin); shell requests run it.
	Command []string
	// Env is the app's environment; DISPLAY and XAUTHORITY are added.
	Env []string
	// Dir is the app's working directory ("" for the endpoint's).
	Dir string
	// X11Dir holds the display socket files (default DefaultX11Dir); the
	// display also listens on the abstract socket Xlib tries first, and
	// DISPLAY is ":N".
	X11Dir string
	// HandshakeTimeout bounds version exchange, key exchange and auth.
	HandshakeTimeout time.Duration
	// SessionIdle drops a connection that has not started the app within
	// it (no channel opened, or a session channel without exec/shell).
	SessionIdle time.Duration
	// MaxChannels caps the session channels per connection.
	MaxChannels int
	// MaxX11Conns caps the X11 connections the app may open.
	MaxX11Conns int
	// Claim, if set, is called once the connection has authenticated,
	// before anything is served: an error ends the connection (another
	// connection of the same forward is the session). A claim granted may
	// call hostGone later, when the forward that granted it is gone (its
	// daemon killed or crashed): that ends the session, so nothing of it
	// runs on without the host watching. See ClaimOver.
	Claim func(hostGone func()) error
	// Shares are the requester's files and folders mounted for this
	// session (TakeGuestShares): before the app starts the endpoint
	// serves each through SSHFS (default DefaultSSHFS) over a files
	// channel to the client.
	Shares []GuestShare
	SSHFS  string
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// ShellJoin quotes argv for a POSIX shell, the form an exec request for
// an approved command must have.
func ShellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=+,:@%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// StdioConn returns the process's stdin as a net.Conn (with deadlines),
// for an endpoint started with a socket on stdin/stdout.
func StdioConn() (net.Conn, error) {
	c, err := net.FileConn(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("stdin is not a socket: %w", err)
	}
	// FileConn duplicated the descriptor; free 0 and 1 so the socket
	// closes when the returned conn does.
	if devnull, err := os.Open(os.DevNull); err == nil {
		syscall.Dup2(int(devnull.Fd()), 0)
		syscall.Dup2(int(devnull.Fd()), 1)
		devnull.Close()
	}
	return c, nil
}

// The claim protocol between a forward's Handoff and the endpoint process
// it starts (guest-sshd --claim-fd): once its connection authenticated the
// endpoint writes claimAsk on the descriptor and waits for one byte,
// claimGranted (its connection is the forward's session) or anything else
// (another connection is). The descriptor is one end of a socket pair;
// the endpoint writes nothing else on it. A stage that runs before the
// endpoint (guest-mount) writes claimStageFailed and its error there
// instead when it cannot start it (ReportStageFailure).
const (
	claimAsk         = 'a'
	claimGranted     = 'y'
	claimDenied      = 'n'
	claimStageFailed = 'f'
)

// maxStageReport bounds what ServeClaimed reads of a stage's report.
const maxStageReport = 4 << 10

// StageError is ServeClaimed's error when the stage before the endpoint
// reported that it could not start it: Message is its error, written
// inside the sandbox by eBrainPool's own stage (printable text, at most
// maxStageReport bytes).
type StageError struct{ Message string }

func (e *StageError) Error() string { return "the endpoint's stage failed: " + e.Message }

// ReportStageFailure writes a stage's error on the claim descriptor w (the
// stage exits afterwards without starting the endpoint).
func ReportStageFailure(w io.Writer, err error) {
	msg := err.Error()
	if len(msg) > maxStageReport-1 {
		msg = msg[:maxStageReport-1]
	}
	w.Write(append([]byte{claimStageFailed}, msg...))
}

// printable keeps s to one line of printable text (a report is shown to
// the requester).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case r < ' ' || r == 0x7f || r == utf8.RuneError:
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// ErrNotTheSession is the endpoint's error when its forward answered that
// another connection is the session.
var ErrNotTheSession = errors.New("another connection is this grant's session")

// ClaimOver is an EndpointConfig.Claim for an endpoint process whose
// forward answers on f (guest-sshd --claim-fd), waiting at most timeout.
// Once granted it keeps reading f: the forward holds the other end for as
// long as it serves the session, so the end of the stream there means the
// host's daemon is gone (SIGKILL, a crash) and hostGone is called.
func ClaimOver(f *os.File, timeout time.Duration) func(hostGone func()) error {
	return func(hostGone func()) error {
		c, err := net.FileConn(f) // a non-blocking copy, with deadlines
		if err != nil {
			return fmt.Errorf("claiming the session: %w", err)
		}
		c.SetDeadline(time.Now().Add(timeout))
		var b [1]byte
		if _, err := c.Write([]byte{claimAsk}); err != nil {
			c.Close()
			return fmt.Errorf("claiming the session: %w", err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			c.Close()
			return fmt.Errorf("claiming the session: %w", err)
		}
		if b[0] != claimGranted {
			c.Close()
			return ErrNotTheSession
		}
		c.SetDeadline(time.Time{})
		go func() {
			defer c.Close()
			// The forward writes nothing more: whatever it might is
			// skipped; only the end of the stream counts.
			io.Copy(io.Discard, c)
			if hostGone != nil {
				hostGone()
			}
		}()
		return nil
	}
}

// ServeClaimed is a Handoff's side of the claim protocol: it makes the
// socket pair, runs start with the endpoint's end (start hands it to the
// endpoint process as the descriptor --claim-fd names, and returns once
// the process has exited), and answers the endpoint's claim through
// Authenticated(ctx), calling granted when its connection became the
// session. It returns start's error; one wrapping ErrNotAuthenticated
// when the endpoint never became the session (a wrong key, a handshake
// that failed or stalled, a connection that lost the race).
func ServeClaimed(ctx context.Context, start func(endpoint *os.File) error, granted func()) error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("claim socket pair: %w", err)
	}
	hostFile, endpoint := os.NewFile(uintptr(fds[0]), "claim"), os.NewFile(uintptr(fds[1]), "claim-endpoint")
	host, err := net.FileConn(hostFile)
	hostFile.Close()
	if err != nil {
		endpoint.Close()
		return fmt.Errorf("claim socket: %w", err)
	}
	defer host.Close()
	var claimed atomic.Bool
	var said []byte       // what the endpoint wrote instead of a claim (its error)
	var stage *StageError // what a stage reported instead of starting it
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		var b [1]byte
		if _, err := io.ReadFull(host, b[:]); err != nil {
			return
		}
		switch b[0] {
		case claimAsk:
		case claimStageFailed:
			msg, _ := io.ReadAll(io.LimitReader(host, maxStageReport))
			stage = &StageError{Message: printable(string(msg))}
			return
		default:
			rest, _ := io.ReadAll(io.LimitReader(host, maxStageReport))
			said = append(b[:], rest...)
			return
		}
		reply := byte(claimDenied)
		if Authenticated(ctx) {
			claimed.Store(true)
			reply = claimGranted
			if granted != nil {
				granted()
			}
		}
		host.Write([]byte{reply})
	}()
	err = start(endpoint)
	endpoint.Close()
	// The endpoint has exited: a claim it did not send now never comes.
	// What it wrote before is read first (a moment's grace: a process of
	// its own may still hold the descriptor, so no end of stream comes).
	host.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	<-answered
	if !claimed.Load() {
		if stage != nil {
			return fmt.Errorf("%w: %w", ErrNotAuthenticated, stage)
		}
		if len(said) > 0 {
			err = fmt.Errorf("%w (it said: %q)", cmp.Or(err, errors.New("the endpoint ended")), strings.TrimSpace(string(said)))
		}
		if err == nil {
			return ErrNotAuthenticated
		}
		return fmt.Errorf("%w: %w", ErrNotAuthenticated, err)
	}
	return err
}

// ServeEndpoint serves one SSH connection on conn: it authenticates the
// one authorized key, runs the approved command once, forwards its X11
// connections back and returns when the connection ends. The command's
// process group is killed when the session ends.
func ServeEndpoint(ctx context.Context, conn net.Conn, cfg EndpointConfig) error {
	defer conn.Close()
	if cfg.HostKey == nil || cfg.AuthorizedKey == nil || len(cfg.Command) == 0 {
		return errors.New("endpoint: HostKey, AuthorizedKey and Command are required")
	}
	if cfg.User == "" {
		cfg.User = GuestUser
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = DefaultMaxChannels
	}
	if cfg.MaxX11Conns <= 0 {
		cfg.MaxX11Conns = DefaultMaxX11Conns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("endpoint", conn.RemoteAddr().String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()

	wantFP := ssh.FingerprintSHA256(cfg.AuthorizedKey)
	wantKey := cfg.AuthorizedKey.Marshal()
	sc := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-ebrainpool",
		MaxAuthTries:  3,
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if md.User() != cfg.User || !bytes.Equal(key.Marshal(), wantKey) {
				return nil, fmt.Errorf("key %s for user %q not authorized", ssh.FingerprintSHA256(key), md.User())
			}
			return &ssh.Permissions{Extensions: map[string]string{permFingerprint: wantFP}}, nil
		},
	}
	sc.AddHostKey(cfg.HostKey)

	conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, sc)
	if err != nil {
		log.Warn("endpoint handshake failed", "err", err)
		return fmt.Errorf("%w: endpoint ssh handshake: %w", ErrNotAuthenticated, err)
	}
	defer sconn.Close()
	if sconn.Permissions == nil || sconn.Permissions.Extensions[permFingerprint] != wantFP {
		return fmt.Errorf("%w: connection authenticated without the authorized key", ErrNotAuthenticated)
	}
	log.Info("endpoint session authenticated", "key", wantFP, "user", sconn.User())
	if cfg.Claim != nil {
		// Still under the handshake deadline: a forward that does not
		// answer cannot hold the connection.
		err := cfg.Claim(func() {
			log.Warn("the host's forward of this session is gone (its daemon ended without ending the session): ending it")
			cancel()
		})
		if err != nil {
			log.Warn("endpoint connection is not the session", "err", err)
			return fmt.Errorf("endpoint: %w", err)
		}
	}
	conn.SetDeadline(time.Time{})

	go func() {
		for r := range reqs {
			// tcpip-forward, cancel-tcpip-forward, keepalives, ...: all refused.
			log.Debug("endpoint refused global request", "type", r.Type)
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()

	idle := time.AfterFunc(cfg.SessionIdle, func() {
		log.Warn("endpoint dropped idle connection: app not started", "after", cfg.SessionIdle)
		sconn.Close()
	})
	defer idle.Stop()
	s := &endpointSession{cfg: cfg, log: log, sconn: sconn, ctx: ctx, appDone: make(chan struct{}), idle: idle}

	go func() {
		// Once the app has exited, give the client a moment to close.
		select {
		case <-s.appDone:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(2 * time.Second):
			sconn.Close()
		case <-ctx.Done():
		}
	}()

	channels := 0
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			if channels >= cfg.MaxChannels {
				log.Warn("endpoint refused channel: too many", "max", cfg.MaxChannels)
				nc.Reject(ssh.ResourceShortage, "too many channels")
				continue
			}
			channels++
			ch, creqs, err := nc.Accept()
			if err != nil {
				log.Warn("endpoint accepting session channel", "err", err)
				continue
			}
			s.wg.Add(1)
			go s.handleSession(ch, creqs)
		case XpraChannelType:
			g := s.isolated()
			if g == nil {
				log.Warn("endpoint refused xpra channel: the session has no isolated display")
				nc.Reject(ssh.Prohibited, "no isolated display")
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				g.serveChannel(ctx, nc, log)
			}()
		case "direct-tcpip", "direct-streamlocal@openssh.com":
			log.Warn("endpoint refused port forwarding channel", "type", nc.ChannelType())
			nc.Reject(ssh.Prohibited, "port forwarding is disabled")
		default:
			log.Warn("endpoint refused channel", "type", nc.ChannelType())
			nc.Reject(ssh.UnknownChannelType, "channel type not supported")
		}
	}
	cancel()
	s.wg.Wait()
	err = sconn.Wait()
	s.mu.Lock()
	ran := s.started
	s.mu.Unlock()
	log.Info("endpoint connection ended", "app_started", ran)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("endpoint connection: %w", err)
	}
	return nil
}

type endpointSession struct {
	cfg     EndpointConfig
	log     *slog.Logger
	sconn   *ssh.ServerConn
	ctx     context.Context
	wg      sync.WaitGroup
	appDone chan struct{}
	idle    *time.Timer // stopped once the app starts

	mu      sync.Mutex
	started bool       // the app ran (at most once per connection)
	xpra    *guestXpra // the isolated display, if the client asked for it
}

func (s *endpointSession) isolated() *guestXpra {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xpra
}

// x11Request is the payload of "x11-req" (RFC 4254 §6.3.1).
type x11Request struct {
	SingleConnection bool
	AuthProtocol     string
	AuthCookie       string
	ScreenNumber     uint32
}

// x11ChannelOpen is the payload of an "x11" channel open (RFC 4254 §6.3.2).
type x11ChannelOpen struct {
	OriginatorAddress string
	OriginatorPort    uint32
}

type execRequest struct{ Command string }

type exitStatusMsg struct{ Status uint32 }

type exitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

func (s *endpointSession) handleSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	var disp *guestDisplay
	defer func() {
		if disp != nil {
			disp.close()
		}
	}()
	approved := ShellJoin(s.cfg.Command)
	reply := func(r *ssh.Request, ok bool) {
		if r.WantReply {
			r.Reply(ok, nil)
		}
	}
	var appWG sync.WaitGroup
	defer appWG.Wait()
	defer ch.Close()
	for {
		var r *ssh.Request
		var ok bool
		select {
		case r, ok = <-reqs:
		case <-s.ctx.Done():
			return
		}
		if !ok {
			return
		}
		switch r.Type {
		case "x11-req":
			var p x11Request
			if err := ssh.Unmarshal(r.Payload, &p); err != nil || disp != nil || s.appStarted() || s.isolated() != nil {
				reply(r, false)
				continue
			}
			cookie, err := hex.DecodeString(p.AuthCookie)
			if p.AuthProtocol != mitMagicCookie || err != nil || len(cookie) == 0 || len(cookie) > maxXAuthData {
				s.log.Warn("endpoint refused x11-req: bad authorization", "proto", p.AuthProtocol)
				reply(r, false)
				continue
			}
			disp, err = listenGuestDisplay(s.cfg.X11Dir, cookie)
			if err != nil {
				s.log.Warn("endpoint refused x11-req", "err", err)
				reply(r, false)
				continue
			}
			s.log.Info("endpoint x11 forwarding", "display", disp.display)
			for _, ln := range disp.listeners {
				go s.serveX11(ln, disp, p.SingleConnection)
			}
			reply(r, true)
		case protectedDisplayRequest:
			if disp == nil || s.appStarted() {
				reply(r, false)
				continue
			}
			disp.protected = true
			reply(r, true)
		case isolatedDisplayRequest:
			if disp != nil || s.appStarted() || s.isolated() != nil {
				reply(r, false)
				continue
			}
			g, err := newGuestXpra(s.cfg.Env)
			if err != nil {
				s.log.Warn("endpoint refused the isolated display", "err", err)
				reply(r, false)
				continue
			}
			defer g.close()
			s.mu.Lock()
			s.xpra = g
			s.mu.Unlock()
			s.log.Info("endpoint isolated display", "xpra", g.xpra)
			reply(r, true)
		case "exec", "shell":
			if r.Type == "exec" {
				var p execRequest
				if err := ssh.Unmarshal(r.Payload, &p); err != nil || p.Command != approved {
					s.log.Warn("endpoint refused exec: not the approved command", "command", p.Command, "approved", approved)
					reply(r, false)
					continue
				}
			}
			if !s.claimStart() {
				s.log.Warn("endpoint refused second run of the app")
				reply(r, false)
				continue
			}
			reply(r, true)
			appWG.Add(1)
			go func() {
				defer appWG.Done()
				defer close(s.appDone)
				if len(s.cfg.Shares) > 0 {
					stop, err := s.startShares()
					if err != nil {
						s.log.Warn("endpoint could not bring the requester's files", "err", err)
						fmt.Fprintf(ch.Stderr(), "ebrainpool: %v\n", err)
						ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: ExitSharesFailed}))
						ch.Close()
						return
					}
					defer stop() // once the app has exited
				}
				s.runApp(ch, disp)
				ch.Close()
			}()
		case "env", "pty-req", "window-change":
			// Ignored: the app gets the approved environment, no terminal.
			reply(r, false)
		default:
			// auth-agent-req@openssh.com, subsystem, signal, ...
			s.log.Warn("endpoint refused session request", "type", r.Type)
			reply(r, false)
		}
	}
}

func (s *endpointSession) appStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (s *endpointSession) claimStart() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	s.started = true
	s.idle.Stop()
	return true
}

// ExitSharesFailed is the exit status an endpoint reports when the
// requester's files could not be brought in: the app did not start.
const ExitSharesFailed = 125

// The app's stdout pipe size and the endpoint's reads from it.
const (
	appStdoutPipeSize = 1 << 20
	appStdoutBuffer   = 256 << 10
)

// runApp runs the approved command in its own process group with the
// channel as stdio and reports its exit status on the channel.
func (s *endpointSession) runApp(ch ssh.Channel, disp *guestDisplay) {
	argv := s.cfg.Command
	env := append([]string(nil), s.cfg.Env...)
	g := s.isolated()
	if g != nil {
		// The app runs as xpra's child, on xpra's X server.
		argv = xpraServerArgv(g.xpra, argv, g.dir, g.sock)
		env = g.env(env)
	}
	cmd := exec.CommandContext(s.ctx, lookPathIn(argv[0], env), argv[1:]...)
	cmd.Args[0] = argv[0]
	if disp != nil {
		env = append(env, "DISPLAY="+disp.display, "XAUTHORITY="+disp.xauthPath)
		if disp.protected {
			env = withDefaults(env, protectedAppEnv)
		}
	}
	cmd.Env = env
	cmd.Dir = s.cfg.Dir
	// The app's stdout goes through a pipe of our own: 1 MiB instead of
	// 64 KiB and reads of up to appStdoutBuffer, so bulk output wakes the
	// app and the endpoint far less often per byte.
	outR, outW, err := os.Pipe()
	if err != nil {
		s.log.Warn("endpoint could not start app", "argv", argv, "err", err)
		fmt.Fprintf(ch.Stderr(), "ebrainpool: cannot start %s: %v\n", argv[0], err)
		ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: 127}))
		return
	}
	defer outR.Close()
	defer outW.Close()
	unix.FcntlInt(outW.Fd(), unix.F_SETPIPE_SZ, appStdoutPipeSize) // best effort (pipe-max-size, per-user limits)
	cmd.Stdout = outW
	cmd.Stderr = ch.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var tree xpraTree
	cmd.Cancel = func() error {
		if g != nil {
			// xpra ends its X server and the app on SIGTERM.
			syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			tree.signal(syscall.SIGTERM)
			time.AfterFunc(xpraStopGrace, func() { tree.signal(syscall.SIGKILL) })
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	if g != nil {
		cmd.WaitDelay = 2 * xpraStopGrace
	}
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	treeDone := make(chan struct{})
	if err == nil && g != nil {
		go tree.watch(cmd.Process.Pid, treeDone)
	}
	if err != nil {
		s.log.Warn("endpoint could not start app", "argv", argv, "err", err)
		fmt.Fprintf(ch.Stderr(), "ebrainpool: cannot start %s: %v\n", argv[0], err)
		ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: 127}))
		return
	}
	s.log.Info("endpoint app started", "argv", argv, "pid", cmd.Process.Pid)
	outW.Close()
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		buf := make([]byte, appStdoutBuffer)
		// Hide the pipe's WriteTo, which would copy 32 KiB at a time.
		io.CopyBuffer(ch, struct{ io.Reader }{outR}, buf)
	}()
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	// The app's session is over: nothing it started may outlive it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	close(treeDone)
	tree.signal(syscall.SIGKILL)
	// Its output goes out before its exit status; a process that left the
	// group and keeps stdout open gets cmd.WaitDelay, as exec gives it.
	select {
	case <-outDone:
	case <-time.After(cmd.WaitDelay):
		outR.Close()
		<-outDone
	}
	ps := cmd.ProcessState
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := strings.TrimPrefix(unixSignalName(ws.Signal()), "SIG")
		s.log.Info("endpoint app killed", "signal", sig)
		ch.SendRequest("exit-signal", false, ssh.Marshal(exitSignalMsg{Signal: sig, CoreDumped: ws.CoreDump()}))
		return
	}
	code := ps.ExitCode()
	if g != nil {
		if c, ok := g.appStatus(); ok {
			code = c
		}
	}
	s.log.Info("endpoint app exited", "status", code, "err", err)
	ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: uint32(code)}))
	ch.CloseWrite()
}

// lookPathIn resolves name in the PATH of env (the app's environment),
// falling back to the endpoint's own PATH.
func lookPathIn(name string, env []string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for i := len(env) - 1; i >= 0; i-- {
		if p, ok := strings.CutPrefix(env[i], "PATH="); ok {
			for _, dir := range filepath.SplitList(p) {
				if dir == "" {
					dir = "."
				}
				f := filepath.Join(dir, name)
				if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
					return f
				}
			}
			break
		}
	}
	return name
}

func unixSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGABRT:
		return "ABRT"
	case syscall.SIGALRM:
		return "ALRM"
	case syscall.SIGFPE:
		return "FPE"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGILL:
		return "ILL"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGPIPE:
		return "PIPE"
	case syscall.SIGQUIT:
		return "QUIT"
	case syscall.SIGSEGV:
		return "SEGV"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGUSR1:
		return "USR1"
	case syscall.SIGUSR2:
		return "USR2"
	}
	return fmt.Sprintf("%d", int(sig))
}

// serveX11 forwards each X connection the app makes on ln to the client
// through a new "x11" channel.
func (s *endpointSession) serveX11(ln *net.UnixListener, disp *guestDisplay, single bool) {
	display := disp.number
	relayAccepted(ln, s.cfg.MaxX11Conns, func() (ssh.Channel, <-chan *ssh.Request, error) {
		ch, reqs, err := s.sconn.OpenChannel("x11", ssh.Marshal(x11ChannelOpen{OriginatorAddress: "127.0.0.1", OriginatorPort: 0}))
		if err != nil {
			s.log.Warn("endpoint x11 channel refused", "err", fmt.Errorf("opening x11 channel for display %d: %w", display, err))
		}
		return ch, reqs, err
	}, func() {
		s.log.Warn("endpoint refused X11 connection: too many", "display", display)
	}, func() bool {
		if single {
			for _, l := range disp.listeners {
				l.Close()
			}
		}
		return single
	})
}

// relayAccepted relays each connection accepted on ln to a channel open
// opens, at most max at a time (a connection beyond that is closed, after
// full), until ln is closed or accepted says to stop after a connection;
// it returns once every relay has ended. A connection whose channel is
// refused is closed.
func relayAccepted(ln *net.UnixListener, max int, open func() (ssh.Channel, <-chan *ssh.Request, error), full func(), accepted func() (stop bool)) {
	var active sync.WaitGroup
	defer active.Wait()
	sem := make(chan struct{}, max)
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			full()
			c.Close()
			continue
		}
		active.Add(1)
		go func() {
			defer active.Done()
			defer func() { <-sem }()
			ch, reqs, err := open()
			if err != nil {
				c.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			relay(c, ch)
		}()
		if accepted() {
			return
		}
	}
}

// TuneRelayProcess sets the Go runtime up for a process that only relays
// one SSH session: an endpoint (`ebrainpool guest-sshd`) or a client
// process (`ebrainpool x11-client`). A single P, so relaying a
// packet hands it from goroutine to goroutine without waking another
// thread (this roughly halves the per-round-trip cost on small
// machines), and a higher GC target, so the per-packet buffers of the
// SSH transport are reused instead of being returned to the OS and
// faulted in again. Not for use in a process doing other work.
func TuneRelayProcess() {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400)
}

// relaySchedtrace is the GODEBUG setting RelayEnv gives a relay process:
// a scheduler trace period of 2^31-1 ms (24.8 days), the longest there is.
const relaySchedtrace = "schedtrace=2147483647"

// RelayEnv returns env (nil: this process's environment) for starting a
// relay process (an endpoint, a client process) with relaySchedtrace in
// GODEBUG. The runtime's sysmon parks while every P is idle, and the
// first system call after that wakes it to poll every 20 µs for a
// millisecond or more; a relay goes idle between requests, so each
// request (a burst of system calls every few hundred µs) set it polling
// again: in a run of stats on a shared folder 29% of the endpoint's and
// the client process's CPU samples were sysmon's wakeups, about two
// thirds of their CPU time. With a trace period sysmon never parks and
// backs off to 10 ms instead (the cost: 100 wakeups a second while a
// session is idle). The first trace is due when the monotonic clock (time
// since boot) reaches the period, and the endpoint's stderr is its claim
// socket, so the setting is left out when that is less than a day away.
func RelayEnv(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil || ts.Nano()/1e6 > math.MaxInt32-24*3600*1000 {
		return env
	}
	out := make([]string, 0, len(env)+1)
	godebug := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GODEBUG="); ok {
			godebug = v
			continue
		}
		out = append(out, e)
	}
	switch {
	case strings.Contains(godebug, "schedtrace="):
	case godebug == "":
		godebug = relaySchedtrace
	default:
		godebug += "," + relaySchedtrace
	}
	return append(out, "GODEBUG="+godebug)
}

// withDefaults is env with each KEY=VALUE of defaults whose key env does
// not set.
func withDefaults(env, defaults []string) []string {
	for _, d := range defaults {
		k, _, _ := strings.Cut(d, "=")
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			env = append(env, d)
		}
	}
	return env
}
