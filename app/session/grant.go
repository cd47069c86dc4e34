package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// endpointKeyPath is where, inside a sandbox, its endpoint's host key lives.
const endpointKeyPath = "/etc/ebrainpool/ssh_host_ed25519_key"

// PrepareConfig says what to prepare for one session: whose sandbox, the
// one key and command its endpoint accepts, and where the forward listens.
type PrepareConfig struct {
	Sandboxes Sandboxes
	Peer      string        // the requester's fingerprint: whose sandbox
	Key       ssh.PublicKey // the requester's key, the only one the endpoint accepts
	Argv      []string      // the approved command
	// Mounts are the shares the requester brings, mounted in the guest's
	// home for this session only (see EndpointHandoffWith).
	Mounts []tunnel.MountSpec
	// ListenIP is where the forward listens, AllowFrom the only source it
	// accepts; IdleTimeout closes it when no session started within it
	// (default tunnel.DefaultForwardIdleTimeout).
	ListenIP, AllowFrom net.IP
	// ListenZone is ListenIP's zone for a link-local IPv6 address (the
	// interface the request came in on).
	ListenZone  string
	IdleTimeout time.Duration
	// Release undoes the sandbox's start when a later step fails, or when
	// the returned undo runs (the host schedules its idle stop; `grant`
	// stops it once idle). Nil: nothing.
	Release func()
	// OnSession is called once the requester's connection authenticated
	// and became the forward's session.
	OnSession func()
	// OnEndpointFailed is called with the error of each connection whose
	// endpoint ended without becoming the session (nil: nothing).
	OnEndpointFailed func(error)
	Progress         func(dbusapi.Stage)
	Logger           *slog.Logger
}

// Prepared is a started sandbox with a forward into it, waiting for the
// requester.
type Prepared struct {
	Forward *tunnel.Forward
	HostKey ssh.PublicKey // the endpoint's host key, for the requester to pin
}

// SandboxStartError is Prepare's error when the sandbox did not start.
type SandboxStartError struct{ Err error }

func (e *SandboxStartError) Error() string { return e.Err.Error() }
func (e *SandboxStartError) Unwrap() error { return e.Err }

// Prepare starts the requester's sandbox, prepares its endpoint (the host
// key) and opens the one-session forward into it: what the host does for
// a granted launch and `ebrainpool grant` does by hand. Each step's undo
// is registered as it succeeds, so a failure unwinds what was done (the
// forward closed, the sandbox released); on success undo unwinds it all,
// for a caller whose own later step fails. A sandbox that did not start is
// a *SandboxStartError.
func Prepare(ctx context.Context, cfg PrepareConfig) (_ *Prepared, undo func(), _ error) {
	if cfg.Sandboxes == nil || cfg.Key == nil || len(cfg.Argv) == 0 {
		return nil, nil, errors.New("prepare: Sandboxes, Key and Argv are required")
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(dbusapi.Stage) {}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	rev := newReverter()
	defer rev.Fail()

	progress(dbusapi.StageSandbox)
	if err := cfg.Sandboxes.Start(ctx, cfg.Peer); err != nil {
		return nil, nil, &SandboxStartError{err}
	}
	if cfg.Release != nil {
		rev.Add(cfg.Release)
	}

	progress(dbusapi.StageForward)
	handoff, hostKey, err := EndpointHandoffWith(cfg.Sandboxes, cfg.Peer, cfg.Key, cfg.Argv, cfg.Mounts, cfg.OnSession)
	if err != nil {
		return nil, nil, err
	}
	if failed := cfg.OnEndpointFailed; failed != nil {
		inner := handoff
		handoff = tunnel.HandoffFunc(func(ctx context.Context, conn *net.TCPConn) error {
			err := inner.Serve(ctx, conn)
			if err != nil && !errors.Is(err, context.Canceled) {
				failed(err)
			}
			return err
		})
	}
	fwd, err := tunnel.OpenForward(context.WithoutCancel(ctx), tunnel.ForwardConfig{
		ListenIP: cfg.ListenIP, ListenZone: cfg.ListenZone, AllowFrom: cfg.AllowFrom, IdleTimeout: cfg.IdleTimeout,
		Handoff: handoff, Attempts: tunnel.DefaultAuthAttempts, Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the forward for %s: %w", cfg.Peer, err)
	}
	rev.Add(func() { fwd.Close() })
	if err := ctx.Err(); err != nil {
		return nil, nil, err // withdrawn while preparing
	}
	undo = rev.Clone().Fail
	rev.Success()
	return &Prepared{Forward: fwd, HostKey: hostKey}, undo, nil
}

// EndpointHandoff prepares the requester's SSH endpoint inside its sandbox:
// the endpoint's host key (created on first use inside the sandbox's /etc,
// readable there: the only tenant of a sandbox is the peer whose connection
// the key protects) and a Handoff that starts `ebrainpool guest-sshd`
// through attach with the accepted socket as its stdin/stdout, authorizing
// exactly key for exactly argv. The endpoint reports its authentication on
// its stderr (guest-sshd --claim-fd 2, see tunnel.ServeClaimed), so a
// connection that fails to authenticate does not use up the forward;
// onSession is called when the requester's connection became the session.
// It returns the host key to pin.
func EndpointHandoff(sb Sandboxes, peer string, key ssh.PublicKey, argv []string, onSession func()) (tunnel.Handoff, ssh.PublicKey, error) {
	return EndpointHandoffWith(sb, peer, key, argv, nil, onSession)
}

// EndpointHandoffWith is EndpointHandoff for a session that brings the
// requester's files: with mounts, the endpoint is started through
// `ebrainpool guest-mount` as the container's root, which mounts each
// share in the guest's home in a mount namespace of the session's own
// and runs guest-sshd there as the guest (tunnel.GuestMountMain).
func EndpointHandoffWith(sb Sandboxes, peer string, key ssh.PublicKey, argv []string, mounts []tunnel.MountSpec, onSession func()) (tunnel.Handoff, ssh.PublicKey, error) {
	p := filepath.Join(sb.RootfsPath(peer), endpointKeyPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, nil, fmt.Errorf("preparing the endpoint key of %s: %w", peer, err)
	}
	signer, err := tunnel.LoadOrCreateHostKey(p)
	if err != nil {
		return nil, nil, fmt.Errorf("endpoint key of %s: %w", peer, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		return nil, nil, fmt.Errorf("endpoint key of %s: %w", peer, err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	args := append([]string{sandbox.GuestBinaryPath, "guest-sshd", "--host-key", endpointKeyPath, "--authorized-key", authorized, "--claim-fd", "2", "--"}, argv...)
	// The endpoint relays the session (tunnel.RelayEnv); through
	// guest-mount, the stage starts it so.
	spec := sandbox.ExecSpec{Args: args, Env: tunnel.RelayEnv([]string{})}
	if len(mounts) > 0 {
		stage := []string{sandbox.GuestBinaryPath, "guest-mount"}
		for _, m := range mounts {
			if err := tunnel.ValidShareName(m.Name); err != nil {
				return nil, nil, err
			}
			stage = append(stage, "--share", m.String())
		}
		spec = sandbox.ExecSpec{Args: append(append(stage, "--"), args...), AsRoot: true, Cwd: "/"}
	}
	handoff := tunnel.HandoffFunc(func(ctx context.Context, conn *net.TCPConn) error {
		return tunnel.ServeClaimed(ctx, func(claim *os.File) error {
			spec := spec
			spec.Stderr = claim
			code, err := sb.ServeConn(ctx, peer, conn, spec, 3*time.Second)
			if err == nil && code != 0 {
				err = fmt.Errorf("endpoint exited with status %d", code)
			}
			return err
		}, onSession)
	})
	return handoff, signer.PublicKey(), nil
}

// zoneOf is the zone of a TCP address (the interface of a link-local IPv6
// address), "" for others.
func zoneOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Zone
	}
	return ""
}
