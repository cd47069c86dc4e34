package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// Target is the peer to run an app on: where its control port is and the
// fingerprint it announced.
type Target struct {
	Addr        string // host:port of the control port
	Fingerprint identity.Fingerprint
}

// RunConfig configures one run of a remote app.
type RunConfig struct {
	Identity ssh.Signer
	Name     string                        // our display name
	Verify   func(key ssh.PublicKey) error // pin check of the peer's key
	// Display and XAuthority default to $DISPLAY and $XAUTHORITY.
	Display, XAuthority string
	Stdout, Stderr      io.Writer
	Progress            func(stage dbusapi.Stage)
	// Granted, if set, gets the session's id once the host granted it:
	// the id both sides know the session by.
	Granted func(session string)
	Logger  *slog.Logger
	// Files and Folders are what the requester brings into the app: files
	// it opens (their paths as the app sees them are its arguments) and
	// folders that appear in its home; served from here over the session's
	// SSH connection, nothing else (see tunnel.Share).
	Files   []string
	Folders []Folder
	// TrustedDisplay makes the app a trusted X client of our display
	// (it can then read the screen and every window and type anywhere);
	// by default it is confined to its own windows (tunnel.ClientConfig).
	// The host is told which, for its consent prompt.
	TrustedDisplay bool
	// IsolatedDisplay runs the app on a display of its own in the
	// sandbox, shown here through xpra (tunnel.ClientConfig); it wins over
	// TrustedDisplay.
	IsolatedDisplay bool
	// ClientProcess, if set, runs the SSH client in a process of its own
	// (tunnel.RunAppProcess), where the X11 data path does not share the
	// Go scheduler with the rest of the caller; nil runs it in this one.
	ClientProcess *tunnel.ClientProcess
}

// ErrGrantAddress is the error for a grant that names another address than
// the one the host's control port was reached on.
var ErrGrantAddress = errors.New("the host's grant names another address than the one it was reached on")

// grantAddrMatches checks that a grant's host is the IP the control
// connection reached (IPv4-mapped forms compared as IPs). A zone in the
// grant is the host's own name for its interface, which says nothing
// here: the address is compared without it, and grantDialAddr puts this
// side's zone (the interface the control connection went out on) on a
// link-local one.
func grantAddrMatches(host string, reached net.Addr) error {
	tcp, ok := reached.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("%w: the control connection is not TCP (%v)", ErrGrantAddress, reached)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrGrantAddress, host)
	}
	want, _ := netip.AddrFromSlice(tcp.IP)
	if ip.WithZone("").Unmap() != want.Unmap() {
		return fmt.Errorf("%w: it names %s, the host was reached on %s", ErrGrantAddress, host, tcp.IP)
	}
	return nil
}

// grantDialAddr is where to connect for a grant whose host passed
// grantAddrMatches: the address the control connection reached, with its
// zone (a link-local IPv6 address means nothing without this side's
// interface), and the grant's port.
func grantDialAddr(host string, port int, reached net.Addr) string {
	if tcp, ok := reached.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			return net.JoinHostPort(ip.Unmap().WithZone(tcp.Zone).String(), strconv.Itoa(port))
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Run asks the peer to launch app, waits for its consent, runs the app with
// its windows on our display and returns its exit status. A refusal is a
// *control.RefusedError. Cancelling ctx withdraws the request or ends the
// running session.
func Run(ctx context.Context, t Target, app string, cfg RunConfig) (int, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = func(dbusapi.Stage) {}
	}
	// Before asking: nobody should allow an app whose window cannot appear.
	if err := tunnel.CheckDisplay(ctx, cfg.Display, cfg.XAuthority); err != nil {
		return -1, err
	}
	mode := control.DisplayTrusted
	if cfg.IsolatedDisplay {
		mode = control.DisplayIsolated
		if err := tunnel.CheckIsolatedDisplay(); err != nil {
			return -1, err
		}
	} else if !cfg.TrustedDisplay {
		mode = control.DisplayProtected
		if err := tunnel.CheckProtectedDisplay(ctx, cfg.Display, cfg.XAuthority); err != nil {
			return -1, err
		}
	}
	progress(dbusapi.StageAsking)
	c, err := control.Dial(ctx, t.Addr, control.ClientConfig{Identity: cfg.Identity, Name: cfg.Name, Expect: t.Fingerprint, Verify: cfg.Verify})
	if err != nil {
		return -1, err
	}
	defer c.Close()
	refs := FileRefs(cfg.Files, cfg.Folders)
	g, err := c.LaunchOpts(ctx, control.LaunchOptions{App: app, Files: refs, Display: mode}, func(stage string) { progress(dbusapi.Stage(stage)) })
	if err != nil {
		return -1, err
	}
	shares, err := clientShares(g, cfg.Files, cfg.Folders)
	if err != nil {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		c.End(endCtx, g.Session)
		cancel()
		return -1, err
	}
	// Only the address we reached the host on: a host must not point our
	// client at another machine.
	if err := grantAddrMatches(g.Host, c.RemoteAddr()); err != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn("refused a grant", "peer", t.Fingerprint, "err", err)
		return -1, err
	}
	hostKey, err := tunnel.ParseAuthorizedKey(g.HostKey)
	if err != nil {
		return -1, fmt.Errorf("the grant's host key: %w", err)
	}
	if cfg.Granted != nil {
		cfg.Granted(g.Session)
	}
	progress(dbusapi.StageConnecting)
	ccfg := tunnel.ClientConfig{
		Addr: grantDialAddr(g.Host, g.Port, c.RemoteAddr()), HostKey: hostKey, Identity: cfg.Identity,
		User: g.User, Command: g.Command, Display: cfg.Display, XAuthority: cfg.XAuthority, TrustedDisplay: cfg.TrustedDisplay, IsolatedDisplay: cfg.IsolatedDisplay,
		Stdout: cfg.Stdout, Stderr: cfg.Stderr, Logger: cfg.Logger, Shares: shares,
		Started: func() { progress(dbusapi.StageRunning) },
	}
	var code int
	if cfg.ClientProcess != nil {
		code, err = tunnel.RunAppProcess(ctx, *cfg.ClientProcess, ccfg)
	} else {
		code, err = tunnel.RunApp(ctx, ccfg)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	eerr := c.End(endCtx, g.Session)
	if eerr != nil && err != nil && ctx.Err() == nil && !control.IsRefused(eerr, "") {
		// The session broke off without an exit status and the control
		// connection is gone too (the host closes idle ones): ask again
		// on a new one why, so a session the host ended is said so.
		if c2, derr := control.Dial(endCtx, t.Addr, control.ClientConfig{Identity: cfg.Identity, Name: cfg.Name, Expect: t.Fingerprint, Verify: cfg.Verify}); derr == nil {
			eerr = c2.End(endCtx, g.Session)
			c2.Close()
		}
	}
	if err != nil && ctx.Err() == nil && (control.IsRefused(eerr, control.CodeEnded) || control.IsRefused(eerr, control.CodeSandboxFailed)) {
		// The host ended it, or the app could not start there: that, not
		// how the connection broke.
		return -1, eerr
	}
	if eerr != nil && !control.IsRefused(eerr, control.CodeBadRequest) && !errors.Is(eerr, io.EOF) {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Debug("ending session", "session", g.Session, "err", eerr)
	}
	return code, err
}
