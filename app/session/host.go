// Package session orchestrates one request end to end. On the host, Host
// implements the control protocol's Handler: consent, the requester's
// sandbox, the endpoint's host key, a one-session port forward into the
// sandbox and the grant; it tracks the sessions and tears each down when it
// ends. On the requester, Run dials the peer, launches, runs the app with
// X11 forwarding and ends the session.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// Sandboxes is what the host needs from the sandbox package
// (*sandbox.Manager implements it).
type Sandboxes interface {
	Start(ctx context.Context, peer string) error
	ServeConn(ctx context.Context, peer string, conn *net.TCPConn, spec sandbox.ExecSpec, grace time.Duration) (int, error)
	RootfsPath(peer string) string
	StopWhenIdle(ctx context.Context, peer string, idle, poll time.Duration) error
}

// endpointKeyPath is where, inside a sandbox, its endpoint's host key lives.
const endpointKeyPath = "/etc/ebrainpool/ssh_host_ed25519_key"

// HostConfig configures a Host.
type HostConfig struct {
	Sandboxes Sandboxes
	Consent   *consent.Engine
	// Apps returns the apps currently shared (already filtered by the
	// user's sharing setting); Icon returns an app's PNG icon or nil.
	Apps func() []catalog.App
	Icon func(catalog.App) []byte
	// NotSharing says why this host shares no apps now (sharing turned
	// off, setup missing) as a refusal (control.Refuse with the precise
	// code), or nil when it shares.
	NotSharing func() error
	// KnownPeer reports whether a peer was seen before (for the popup).
	KnownPeer func(fingerprint string) bool
	// ForwardIdle closes a granted forward not used within it (default 60s).
	ForwardIdle time.Duration
	// IdleStop stops a sandbox once nothing ran in it for this long
	// (default 5m; negative: never).
	IdleStop time.Duration
	Logger   *slog.Logger
}

// HostSession is one app a peer runs on this host.
type HostSession struct {
	ID        string    `json:"id"`
	Peer      string    `json:"peer"` // fingerprint
	PeerName  string    `json:"peer_name"`
	From      string    `json:"from"`
	App       string    `json:"app"`
	AppName   string    `json:"app_name"`
	Since     time.Time `json:"since"`
	Connected bool      `json:"connected"`

	fwd *tunnel.Forward
}

// Host serves launch requests. It implements control.Handler.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*HostSession
	stoppers map[string]context.CancelFunc // idle stoppers by peer
	wg       sync.WaitGroup
}

var _ control.Handler = (*Host)(nil)

// NewHost creates a Host.
func NewHost(cfg HostConfig) *Host {
	if cfg.ForwardIdle <= 0 {
		cfg.ForwardIdle = tunnel.DefaultForwardIdleTimeout
	}
	if cfg.IdleStop == 0 {
		cfg.IdleStop = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NotSharing == nil {
		cfg.NotSharing = func() error { return nil }
	}
	return &Host{cfg: cfg, log: cfg.Logger, sessions: map[string]*HostSession{}, stoppers: map[string]context.CancelFunc{}}
}

// SetSandboxes replaces the sandboxes new sessions start in (the daemon
// swaps in a sandbox manager once the one-time setup is done, without a
// restart). Sessions already granted keep theirs.
func (h *Host) SetSandboxes(sb Sandboxes) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg.Sandboxes = sb
}

// sandboxes are the current Sandboxes (see SetSandboxes).
func (h *Host) sandboxes() Sandboxes {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg.Sandboxes
}

// Catalog lists the shared apps with their icons.
func (h *Host) Catalog(ctx context.Context, p control.Peer) ([]control.AppInfo, error) {
	if err := h.cfg.NotSharing(); err != nil {
		return nil, err
	}
	var out []control.AppInfo
	for _, a := range h.cfg.Apps() {
		info := control.AppInfo{ID: a.ID, Name: a.Name, Comment: a.Comment, Categories: a.Categories}
		if h.cfg.Icon != nil {
			info.Icon = h.cfg.Icon(a)
		}
		out = append(out, info)
	}
	return out, nil
}

func (h *Host) findApp(id string) (catalog.App, bool) {
	for _, a := range h.cfg.Apps() {
		if a.ID == id {
			return a, true
		}
	}
	return catalog.App{}, false
}

func hostOf(a net.Addr) net.IP {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP
	}
	host, _, _ := net.SplitHostPort(a.String())
	return net.ParseIP(host)
}

// refusal maps a consent outcome to what the requester is told.
func refusal(o consent.Outcome) error {
	switch o.Reason {
	case consent.TimedOut:
		return control.Refuse(control.CodeTimeout, "the host did not answer in time")
	case consent.Blocked:
		return control.Refuse(control.CodeBlocked, "the host has blocked you")
	case consent.Busy:
		return control.Refuse(control.CodeBusy, string(o.Reason))
	case consent.RateLimited:
		return control.Refuse(control.CodeRateLimited, string(o.Reason))
	case consent.Canceled:
		return control.Refuse(control.CodeCanceled, "canceled")
	case consent.EngineClosing:
		return control.Refuse(control.CodeShuttingDown, string(o.Reason))
	}
	return control.Refuse(control.CodeDenied, "the host denied the request")
}

// SandboxRefusal is what a requester is told when this host's sandbox
// cannot run: the cause as a refusal code and in the requester's terms
// (the fix is the host user's, shown on the host's own screen). For a nil
// err it returns "", "".
func SandboxRefusal(err error) (control.Code, string) {
	first := func(err error) string { s, _, _ := strings.Cut(err.Error(), "\n"); return s }
	switch {
	case errors.Is(err, sandbox.ErrNoLimits):
		return control.CodeNoLimits, first(err)
	case errors.Is(err, sandbox.ErrNotSetUp):
		return control.CodeSetupMissing, "this host cannot share apps yet: its one-time setup has not been done (its user runs `sudo ebrainpool setup --user NAME` there once, or Set up sharing in its Settings)"
	case err != nil:
		return control.CodeSandboxFailed, "the host could not start a sandbox for you (liblxc failed there; the host's log has its messages)"
	}
	return "", ""
}

// Launch decides on a request and, if allowed, prepares the sandbox and the
// forward and returns the grant.
func (h *Host) Launch(ctx context.Context, p control.Peer, appID string, progress func(string)) (*control.Grant, error) {
	if err := h.cfg.NotSharing(); err != nil {
		return nil, err
	}
	app, ok := h.findApp(appID)
	if !ok {
		return nil, control.Refuse(control.CodeNoSuchApp, fmt.Sprintf("this host does not share %q", appID))
	}
	peer := string(p.Fingerprint)
	from := hostOf(p.Addr)
	progress(string(dbusapi.StageConsent))
	known := h.cfg.KnownPeer != nil && h.cfg.KnownPeer(peer)
	out, err := h.cfg.Consent.Ask(ctx, consent.Request{Peer: peer, PeerName: p.Name, Host: p.Name, From: from.String(), App: app.Name, FirstTime: !known})
	if err != nil {
		return nil, err
	}
	if !out.Allowed {
		h.log.Info("launch refused", "peer", peer, "name", p.Name, "app", app.ID, "reason", out.Reason)
		return nil, refusal(out)
	}
	progress(string(dbusapi.StageSandbox))
	sb := h.sandboxes()
	if err := sb.Start(ctx, peer); err != nil {
		h.log.Error("starting sandbox", "peer", peer, "err", err)
		return nil, control.Refuse(SandboxRefusal(err))
	}
	progress(string(dbusapi.StageForward))
	s := &HostSession{ID: newID(), Peer: peer, PeerName: p.Name, From: from.String(), App: app.ID, AppName: app.Name, Since: time.Now()}
	handoff, hostKey, err := EndpointHandoff(sb, peer, p.Key, app.Exec, func() {
		h.mu.Lock()
		s.Connected = true
		h.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	command := tunnel.ShellJoin(app.Exec)
	fwd, err := tunnel.OpenForward(context.WithoutCancel(ctx), tunnel.ForwardConfig{
		ListenIP: hostOf(p.LocalAddr), AllowFrom: from, IdleTimeout: h.cfg.ForwardIdle, Handoff: handoff, Logger: h.log,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the forward for %s: %w", peer, err)
	}
	s.fwd = fwd
	h.mu.Lock()
	h.sessions[s.ID] = s
	if stop := h.stoppers[peer]; stop != nil {
		stop() // the sandbox is in use again
		delete(h.stoppers, peer)
	}
	h.mu.Unlock()
	h.wg.Add(1)
	go h.watch(s)
	h.log.Info("launch granted", "session", s.ID, "peer", peer, "name", p.Name, "app", app.ID, "forward", fwd.Addr())
	return &control.Grant{
		Session: s.ID, Host: fwd.Addr().IP.String(), Port: fwd.Addr().Port,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey))),
		User:    tunnel.GuestUser, Command: command, Expires: time.Now().Add(h.cfg.ForwardIdle),
	}, nil
}

// EndpointHandoff prepares the requester's SSH endpoint inside its sandbox:
// the endpoint's host key (created on first use inside the sandbox's /etc,
// readable there: the only tenant of a sandbox is the peer whose connection
// the key protects) and a Handoff that starts `ebrainpool guest-sshd`
// through attach with the accepted socket as its stdin/stdout, authorizing
// exactly key for exactly argv. It returns the host key to pin.
func EndpointHandoff(sb Sandboxes, peer string, key ssh.PublicKey, argv []string, onConnect func()) (tunnel.Handoff, ssh.PublicKey, error) {
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
	args := append([]string{sandbox.GuestBinaryPath, "guest-sshd", "--host-key", endpointKeyPath, "--authorized-key", authorized, "--"}, argv...)
	handoff := tunnel.HandoffFunc(func(ctx context.Context, conn *net.TCPConn) error {
		if onConnect != nil {
			onConnect()
		}
		code, err := sb.ServeConn(ctx, peer, conn, sandbox.ExecSpec{Args: args}, 3*time.Second)
		if err == nil && code != 0 {
			err = fmt.Errorf("endpoint exited with status %d", code)
		}
		return err
	})
	return handoff, signer.PublicKey(), nil
}

// watch removes a session when its forward closes and schedules the idle
// stop of the sandbox.
func (h *Host) watch(s *HostSession) {
	defer h.wg.Done()
	<-s.fwd.Done()
	h.mu.Lock()
	delete(h.sessions, s.ID)
	busy := false
	for _, o := range h.sessions {
		if o.Peer == s.Peer {
			busy = true
		}
	}
	var ctx context.Context
	if !busy && h.cfg.IdleStop > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		if old := h.stoppers[s.Peer]; old != nil {
			old()
		}
		h.stoppers[s.Peer] = cancel
	}
	h.mu.Unlock()
	h.log.Info("session ended", "session", s.ID, "peer", s.Peer, "app", s.App, "err", s.fwd.Err())
	if ctx != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.sandboxes().StopWhenIdle(ctx, s.Peer, h.cfg.IdleStop, time.Second); err != nil && !errors.Is(err, context.Canceled) {
				h.log.Warn("stopping idle sandbox", "peer", s.Peer, "err", err)
			}
		}()
	}
}

// End ends one of the peer's sessions.
func (h *Host) End(ctx context.Context, p control.Peer, id string) error {
	h.mu.Lock()
	s, ok := h.sessions[id]
	h.mu.Unlock()
	if !ok || s.Peer != string(p.Fingerprint) {
		return control.Refuse(control.CodeBadRequest, "no such session of yours")
	}
	return h.EndSession(id)
}

// EndSession ends a session from the host's side (the sessions window).
func (h *Host) EndSession(id string) error {
	h.mu.Lock()
	s, ok := h.sessions[id]
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("no session %s", id)
	}
	s.fwd.Close()
	<-s.fwd.Done()
	return nil
}

// Sessions lists the apps peers run here, oldest first.
func (h *Host) Sessions() []HostSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HostSession, 0, len(h.sessions))
	for _, s := range h.sessions {
		c := *s
		c.fwd = nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Close ends every session and waits for the teardown (idle stops are
// abandoned: the sandboxes stay until the next start or `sandbox stop`).
func (h *Host) Close() {
	h.mu.Lock()
	for _, s := range h.sessions {
		s.fwd.Close()
	}
	for _, stop := range h.stoppers {
		stop()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
