package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ClientConfig configures RunApp.
type ClientConfig struct {
	// Addr is the forward's host:port.
	Addr string
	// HostKey is the endpoint's host key, from the grant; it is pinned.
	HostKey ssh.PublicKey
	// Identity authenticates the requester.
	Identity ssh.Signer
	// User defaults to GuestUser.
	User string
	// Command is the granted command line (see ShellJoin).
	Command string
	// NoX11 disables X11 forwarding.
	NoX11 bool
	// TrustedDisplay gives the app the real cookie: a trusted X client,
	// which can read and drive everything on the display. By default the
	// X server makes an untrusted authorization for the session (the
	// SECURITY extension), confining the app to its own windows; a
	// display without the extension is then refused (a *DisplayError
	// wrapping ErrNoSecurityExtension).
	TrustedDisplay bool
	// IsolatedDisplay runs the app on an X server of its own in the
	// sandbox (Xpra's): only its windows travel, to an `xpra attach` run
	// here, the only client of the local display (see xpra.go). Both
	// sides need xpra (ErrNoXpra, ErrHostNoIsolated); TrustedDisplay is
	// then ignored.
	IsolatedDisplay bool
	// Display and XAuthority default to $DISPLAY and $XAUTHORITY
	// (or ~/.Xauthority).
	Display    string
	XAuthority string
	// Stdin (nil: none), Stdout and Stderr (nil: discarded) of the app.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// HandshakeTimeout bounds dial, key exchange and auth (default 10s).
	HandshakeTimeout time.Duration
	// MaxX11Conns caps concurrent X11 connections (default 64).
	MaxX11Conns int
	// Shares are what the requester brings into the session, served to
	// the endpoint when it asks (see FilesChannelType); their order is the
	// host's.
	Shares []Share
	// Started, if set, is called once the endpoint accepted the command
	// (the app is starting).
	Started func()
	Logger  *slog.Logger
}

// x11Target is where a client relays X11 channels: the real display and
// its real authorization, and the fake cookie the endpoint was given.
type x11Target struct {
	display  Display
	realName string
	realData []byte
	fake     []byte
	// chanName and chanData are what each X11 channel's setup gets
	// instead of the fake cookie: the session's untrusted authorization,
	// or the real one in trusted mode.
	chanName string
	chanData []byte
	// owned is set for an untrusted session: the filter its channels go
	// through (x11filter.go, in both modes) keeps track of their
	// resources here and keeps requests about windows to them.
	owned *x11Owned
	// For messages: the DISPLAY value, the Xauthority file ("" if there
	// is none), whether its path is the default ~/.Xauthority and whether
	// it is missing.
	name         string
	xauth        string
	xauthDefault bool
	xauthMissing bool
}

// RunApp connects to an endpoint, runs the granted command with X11
// forwarding to the local display and returns its exit status. A signal
// death gives 128+signal. Cancelling ctx ends the session.
func RunApp(ctx context.Context, cfg ClientConfig) (int, error) {
	var isolated *x11Target
	var stopXpra func()
	if cfg.HostKey == nil || cfg.Identity == nil {
		return -1, errors.New("run app: HostKey and Identity are required")
	}
	if cfg.User == "" {
		cfg.User = GuestUser
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxX11Conns <= 0 {
		cfg.MaxX11Conns = DefaultMaxX11Conns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var x11 *x11Target
	var xpra string
	if cfg.IsolatedDisplay && !cfg.NoX11 {
		t, err := localX11Target(cfg.Display, cfg.XAuthority)
		if err != nil {
			return -1, err
		}
		t.chanName, t.chanData = t.realName, t.realData
		if err := t.probe(ctx); err != nil {
			return -1, err
		}
		if xpra, err = FindXpra(); err != nil {
			return -1, &DisplayError{msg: err.Error(), err: err}
		}
		log.Info("display access", "display", t.name, "isolated", true)
		defer func() {
			if stopXpra != nil {
				stopXpra()
			}
		}()
		isolated = t
	} else if !cfg.NoX11 {
		t, err := localX11Target(cfg.Display, cfg.XAuthority)
		if err != nil {
			return -1, err
		}
		// Before connecting: a display the relay cannot use is said as
		// such, not found out by the app on the other side.
		t.chanName, t.chanData = t.realName, t.realData
		if cfg.TrustedDisplay {
			if err := t.probe(ctx); err != nil {
				return -1, err
			}
		} else {
			// Connects as the probe does, with its messages.
			ua, err := t.generateUntrusted(ctx)
			if err != nil {
				return -1, err
			}
			defer func() {
				if err := ua.revoke(context.WithoutCancel(ctx)); err != nil {
					log.Warn("revoking the session's untrusted X authorization", "err", err)
				}
			}()
			t.chanName, t.chanData = ua.name, ua.data
			t.owned = newX11Owned()
		}
		log.Info("display access", "display", t.name, "trusted", cfg.TrustedDisplay)
		x11 = t
	}

	// Before connecting: a share that cannot be served is said now.
	for _, sh := range cfg.Shares {
		h, err := newShareFS(sh, log)
		if err != nil {
			return -1, err
		}
		h.close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dl := net.Dialer{Timeout: cfg.HandshakeTimeout}
	conn, err := dl.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return -1, fmt.Errorf("connecting to %s: %w", cfg.Addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	stopDL := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Identity)},
		HostKeyCallback:   ssh.FixedHostKey(cfg.HostKey),
		HostKeyAlgorithms: hostKeyAlgorithms(cfg.HostKey),
		ClientVersion:     "SSH-2.0-ebrainpool",
		Timeout:           cfg.HandshakeTimeout,
	})
	stopDL()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return -1, fmt.Errorf("ssh handshake with %s: %w", cfg.Addr, ctx.Err())
		}
		return -1, fmt.Errorf("ssh handshake with %s: %w", cfg.Addr, err)
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	context.AfterFunc(ctx, func() { client.Close() })

	var x11wg sync.WaitGroup
	defer x11wg.Wait()
	defer client.Close()
	if x11 != nil {
		x11chans := client.HandleChannelOpen("x11")
		x11wg.Add(1)
		go func() {
			defer x11wg.Done()
			serveClientX11(ctx, x11chans, x11, cfg.MaxX11Conns, log)
		}()
	}

	if len(cfg.Shares) > 0 {
		fchans := client.HandleChannelOpen(FilesChannelType)
		x11wg.Add(1)
		go func() {
			defer x11wg.Done()
			serveClientFiles(ctx, fchans, cfg.Shares, log)
		}()
	}

	sess, err := client.NewSession()
	if err != nil {
		return -1, fmt.Errorf("opening session on %s: %w", cfg.Addr, err)
	}
	defer sess.Close()
	if x11 != nil {
		ok, err := sess.SendRequest("x11-req", true, ssh.Marshal(x11Request{
			AuthProtocol: mitMagicCookie,
			AuthCookie:   hex.EncodeToString(x11.fake),
			ScreenNumber: uint32(x11.display.Screen),
		}))
		if err != nil {
			return -1, fmt.Errorf("requesting X11 forwarding: %w", err)
		}
		if !ok {
			return -1, errors.New("endpoint refused X11 forwarding")
		}
		if x11.owned != nil {
			// A hint, in order before exec (an endpoint that does not
			// know it ignores it).
			if _, err := sess.SendRequest(protectedDisplayRequest, false, nil); err != nil {
				return -1, fmt.Errorf("requesting X11 forwarding: %w", err)
			}
		}
	}
	if isolated != nil {
		ok, err := sess.SendRequest(isolatedDisplayRequest, true, nil)
		if err != nil {
			return -1, fmt.Errorf("requesting the isolated display: %w", err)
		}
		if !ok {
			return -1, ErrHostNoIsolated
		}
	}
	sess.Stdout, sess.Stderr = cfg.Stdout, cfg.Stderr
	stdin, err := sess.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("session stdin: %w", err)
	}
	if err := sess.Start(cfg.Command); err != nil {
		return -1, fmt.Errorf("running %q on %s: %w", cfg.Command, cfg.Addr, err)
	}
	if isolated != nil {
		// xpra attach ending on its own (the server ended with the app,
		// or the user quit it) ends the session, after a moment for the
		// exit status.
		stopXpra, err = runXpraAttach(ctx, client, xpra, isolated, func() { time.AfterFunc(2*time.Second, cancel) }, log)
		if err != nil {
			return -1, err
		}
	}
	if cfg.Started != nil {
		cfg.Started()
	}
	if cfg.Stdin != nil {
		go func() {
			io.Copy(stdin, cfg.Stdin)
			stdin.Close()
		}()
	} else {
		stdin.Close()
	}
	err = sess.Wait()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("running %q: %w", cfg.Command, ctx.Err())
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ee.Signal() != "" {
			log.Info("remote app killed by signal", "signal", ee.Signal())
		}
		return ee.ExitStatus(), nil
	default:
		return -1, fmt.Errorf("running %q: %w", cfg.Command, err)
	}
}

// localX11Target reads the local display and its cookie and makes a fake
// one. Errors are *DisplayError.
func localX11Target(display, xauthority string) (*x11Target, error) {
	if display == "" {
		display = os.Getenv("DISPLAY")
	}
	if display == "" {
		return nil, noDisplayError(os.Getenv("WAYLAND_DISPLAY"))
	}
	d, err := ParseDisplay(display)
	if err != nil {
		return nil, displayErrorf(err, "DISPLAY=%s is not an X display name: %v", display, err)
	}
	t := &x11Target{display: d, name: display, fake: make([]byte, 16)}
	if _, err := rand.Read(t.fake); err != nil {
		return nil, fmt.Errorf("making fake X11 cookie: %w", err)
	}
	if xauthority == "" {
		xauthority = os.Getenv("XAUTHORITY")
	}
	if xauthority == "" {
		if home, err := os.UserHomeDir(); err == nil {
			xauthority = filepath.Join(home, ".Xauthority")
			t.xauthDefault = true
		}
	}
	t.xauth = xauthority
	if xauthority == "" {
		return t, nil
	}
	f, err := os.Open(xauthority)
	if errors.Is(err, os.ErrNotExist) {
		t.xauthMissing = true
		return t, nil
	}
	if err != nil {
		cause := err
		var pe *os.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		return nil, displayErrorf(err, "cannot read %s: %v", t.xauthFile(), cause)
	}
	entries, perr := ParseXauthority(f)
	f.Close()
	if perr != nil && len(entries) == 0 {
		return nil, displayErrorf(perr, "%s is not a valid Xauthority file: %v", t.xauthFile(), perr)
	}
	host, _ := os.Hostname()
	if data, ok := findCookie(entries, d, host); ok {
		t.realName, t.realData = mitMagicCookie, data
	}
	return t, nil
}

// xSetupTimeout bounds how long an X11 channel may take to send its setup.
const xSetupTimeout = 10 * time.Second

func serveClientX11(ctx context.Context, chans <-chan ssh.NewChannel, t *x11Target, max int, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max)
	for nc := range chans {
		select {
		case sem <- struct{}{}:
		default:
			log.Warn("refused x11 channel: too many")
			nc.Reject(ssh.ResourceShortage, "too many X11 connections")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			<-sem
			continue
		}
		go ssh.DiscardRequests(reqs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := relayClientX11(ctx, ch, t); err != nil {
				log.Warn("x11 channel closed", "err", err)
			}
		}()
	}
}

// relayClientX11 checks the fake cookie on an x11 channel, substitutes
// the real one and relays the channel to the local display.
func relayClientX11(ctx context.Context, ch ssh.Channel, t *x11Target) error {
	timer := time.AfterFunc(xSetupTimeout, func() { ch.Close() })
	setup, err := readXSetup(ch)
	timer.Stop()
	if err != nil {
		ch.Close()
		return fmt.Errorf("x11 channel for display %d: %w", t.display.Number, err)
	}
	if err := setup.checkAndReplace(t.fake, t.chanName, t.chanData); err != nil {
		ch.Close()
		return fmt.Errorf("x11 channel for display %d: %w", t.display.Number, err)
	}
	dctx, cancel := context.WithTimeout(ctx, xSetupTimeout)
	xc, err := t.display.Dial(dctx)
	cancel()
	if err != nil {
		ch.Close()
		return err
	}
	if _, err := xc.Write(setup.marshal()); err != nil {
		xc.Close()
		ch.Close()
		return fmt.Errorf("x11 channel for display %d: writing setup: %w", t.display.Number, err)
	}
	relayFiltered(xc.(halfCloser), ch, setup.order, t.owned)
	return nil
}

// hostKeyAlgorithms are the signature algorithms usable with key, so the
// server presents the pinned key and no other.
func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{key.Type()}
}
