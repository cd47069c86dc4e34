// Package session orchestrates one request end to end. On the host, Host
// implements the control protocol's Handler: consent, the requester's
// sandbox, the endpoint's host key, a one-session port forward into the
// sandbox and the grant (Prepare, shared with `ebrainpool grant`); it pins
// the peers it meets, tracks the sessions and tears each down when it
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
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
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

// Pins is what the host needs from the pin store (*identity.PinStore
// implements it): whether a peer was met before, and recording the peers
// that talk to it.
type Pins interface {
	Lookup(fp identity.Fingerprint) (identity.Pin, bool)
	Observe(name string, key ssh.PublicKey) (identity.Pin, identity.Status, error)
}

// HostConfig configures a Host.
type HostConfig struct {
	Sandboxes Sandboxes
	Consent   *consent.Engine
	// Pins, if set, tells whether a requester is known (for the prompt)
	// and pins every peer that talks to this host, after its request (so
	// the prompt of a first request says it is the first).
	Pins Pins
	// Apps returns the apps currently shared (already filtered by the
	// user's sharing setting); Icon returns an app's PNG icon or nil.
	Apps func() []catalog.App
	Icon func(catalog.App) []byte
	// NotSharing says why this host shares no apps now (sharing turned
	// off, setup missing) as a refusal (control.Refuse with the precise
	// code), or nil when it shares.
	NotSharing func() error
	// ForwardIdle closes a granted forward not used within it (default 60s).
	ForwardIdle time.Duration
	// IdleStop stops a sandbox once nothing ran in it for this long
	// (default 5m; negative: never). SetIdleStop changes it.
	IdleStop time.Duration
	// OnSession, if set, is told when a session is granted (started)
	// and when it ends, with the session as it was then; it must not
	// block (it runs in the launch and in the session's watch).
	OnSession func(s HostSession, started bool)
	Logger    *slog.Logger
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
	// Files are the names of the files and folders the requester brought.
	Files []string `json:"files,omitempty"`
	// ByRule: a remembered decision let the peer in (nobody was asked).
	ByRule bool `json:"by_rule,omitempty"`

	fwd *tunnel.Forward
	// failed is why its endpoint could not start, for the requester's
	// End (h.mu).
	failed error
}

// Host serves launch requests. It implements control.Handler.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	mu        sync.Mutex
	sessions  map[string]*HostSession
	preparing map[string]int      // launches of a peer between consent and grant
	stoppers  map[string]*stopper // idle stops by peer
	ended     map[string]ending   // sessions the host ended, for the requester's End
	closed    bool
	// closing ends with Close: the launches in progress give up (their
	// request's connection may outlive Close, see daemon.Run).
	closing context.Context
	quit    context.CancelFunc
	wg      sync.WaitGroup // launches, watches and idle stops

	// granting, if set (by tests), runs at the grant step, after the
	// session was registered: its error fails the launch there.
	granting func(*HostSession) error
}

// stopper is a pending idle stop of a peer's sandbox.
type stopper struct{ cancel context.CancelFunc }

// ending is a session the host ended: whose, and when.
type ending struct {
	peer string
	at   time.Time
}

// How long, and how many, ended sessions are remembered for the
// requester asking why its session ended.
const (
	endedKeep = 10 * time.Minute
	endedMax  = 256
)

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
	closing, quit := context.WithCancel(context.Background())
	return &Host{cfg: cfg, log: cfg.Logger, sessions: map[string]*HostSession{}, preparing: map[string]int{},
		stoppers: map[string]*stopper{}, ended: map[string]ending{}, closing: closing, quit: quit}
}

// SetSandboxes replaces the sandboxes new sessions start in (the daemon
// swaps in a sandbox manager once the one-time setup is done, without a
// restart). Sessions already granted keep theirs.
func (h *Host) SetSandboxes(sb Sandboxes) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg.Sandboxes = sb
}

// SetIdleStop changes how long a sandbox may stay idle before it is
// stopped (negative: never), for idle stops scheduled from now on.
func (h *Host) SetIdleStop(d time.Duration) {
	if d == 0 {
		d = 5 * time.Minute
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg.IdleStop = d
}

// sandboxes are the current Sandboxes (see SetSandboxes).
func (h *Host) sandboxes() Sandboxes {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg.Sandboxes
}

// observe pins a peer that talked to this host.
func (h *Host) observe(p control.Peer) {
	if h.cfg.Pins == nil || p.Key == nil {
		return
	}
	if _, _, err := h.cfg.Pins.Observe(p.Name, p.Key); err != nil {
		h.log.Warn("pinning peer", "peer", p.Fingerprint, "err", err)
	}
}

// known reports whether a peer was met before.
func (h *Host) known(fp identity.Fingerprint) bool {
	if h.cfg.Pins == nil {
		return false
	}
	_, ok := h.cfg.Pins.Lookup(fp)
	return ok
}

// Catalog lists the shared apps with their icons.
func (h *Host) Catalog(ctx context.Context, p control.Peer) ([]control.AppInfo, error) {
	defer h.observe(p)
	if err := h.cfg.NotSharing(); err != nil {
		return nil, err
	}
	var out []control.AppInfo
	for _, a := range h.cfg.Apps() {
		info := control.AppInfo{ID: a.ID, Name: a.Name, Comment: a.Comment, Categories: a.Categories}
		if a.TakesFiles() {
			info.MimeTypes = a.MimeTypes
		}
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
		return control.Refuse(control.CodeTimeout, "the host's user did not answer in time")
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

// errClosing refuses requests that arrive while the host shuts down.
var errClosing = control.Refuse(control.CodeShuttingDown, "the host is shutting down")

// Launch decides on a request and, if allowed, prepares the sandbox and the
// forward and returns the grant. Each step registers its undo as it
// succeeds (the sandbox's start: its idle stop; the forward: closing it;
// the grant: forgetting the session), so a failure at any step, the
// request withdrawn included, leaves nothing behind.
func (h *Host) Launch(ctx context.Context, p control.Peer, appID string, progress func(string)) (*control.Grant, error) {
	return h.launch(ctx, p, appID, nil, progress)
}

func (h *Host) launch(ctx context.Context, p control.Peer, appID string, files []control.FileRef, progress func(string)) (*control.Grant, error) {
	defer h.observe(p)
	if !h.enter() {
		return nil, errClosing
	}
	defer h.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.closing, cancel)()
	if err := h.cfg.NotSharing(); err != nil {
		return nil, err
	}
	app, ok := h.findApp(appID)
	if !ok {
		return nil, control.Refuse(control.CodeNoSuchApp, fmt.Sprintf("this host does not share %q", appID))
	}
	shares, paths := Layout(p.Name, files)
	argv, err := appCommand(app, paths)
	if err != nil {
		return nil, err
	}
	if len(shares) > 0 {
		if err := canBringFiles(); err != nil {
			return nil, err
		}
	}
	peer := string(p.Fingerprint)
	from := hostOf(p.Addr)
	progress(string(dbusapi.StageConsent))
	out, err := h.cfg.Consent.Ask(ctx, consent.Request{Peer: peer, PeerName: p.Name, Host: p.Name, From: from.String(),
		App: app.Name, AppID: app.ID, Command: tunnel.ShellJoin(app.Exec), FirstTime: !h.known(p.Fingerprint),
		Files: consentFiles(files), Display: string(p.Display)})
	if err != nil {
		return nil, err
	}
	if !out.Allowed {
		h.log.Info("launch refused", "peer", peer, "name", p.Name, "app", app.ID, "reason", out.Reason)
		return nil, refusal(out)
	}

	rev := newReverter()
	defer rev.Fail()
	// The sandbox is in use again: no idle stop may end it while this
	// launch prepares; the start's undo ends that and schedules one.
	h.preparingPeer(peer, +1)
	counted := true
	prepared := func() {
		if counted {
			counted = false
			h.preparingPeer(peer, -1)
		}
	}
	defer prepared()
	s := &HostSession{ID: newID(), Peer: peer, PeerName: p.Name, From: from.String(), App: app.ID, AppName: app.Name, Since: time.Now(),
		ByRule: out.Reason == consent.Remembered}
	for _, f := range files {
		s.Files = append(s.Files, f.Name)
	}
	prep, undo, err := Prepare(ctx, PrepareConfig{
		Sandboxes: h.sandboxes(), Peer: peer, Key: p.Key, Argv: argv, Mounts: mountsOf(shares),
		ListenIP: hostOf(p.LocalAddr), ListenZone: zoneOf(p.LocalAddr), AllowFrom: from, IdleTimeout: h.cfg.ForwardIdle,
		Release:   func() { prepared(); h.idleLater(peer) },
		OnSession: func() { h.mu.Lock(); s.Connected = true; h.mu.Unlock() },
		OnEndpointFailed: func(err error) {
			if r := endpointRefusal(err); r != nil {
				h.mu.Lock()
				s.failed = r
				h.mu.Unlock()
			}
		},
		Progress: func(st dbusapi.Stage) { progress(string(st)) },
		Logger:   h.log,
	})
	if err != nil {
		var se *SandboxStartError
		if errors.As(err, &se) {
			h.log.Error("starting sandbox", "peer", peer, "err", se.Err)
			return nil, control.Refuse(SandboxRefusal(se.Err))
		}
		if ctx.Err() != nil {
			return nil, control.Refuse(control.CodeCanceled, "canceled")
		}
		return nil, err
	}
	rev.Add(undo)
	s.fwd = prep.Forward

	// The grant: the session is tracked, and watched once it is granted.
	if !h.register(s) {
		return nil, errClosing
	}
	rev.Add(func() { h.forget(s) })
	if h.granting != nil {
		if err := h.granting(s); err != nil {
			return nil, err
		}
	}
	if ctx.Err() != nil {
		return nil, control.Refuse(control.CodeCanceled, "canceled")
	}
	rev.Success()
	h.told(s, true)
	go h.watch(s)
	fwd := prep.Forward
	h.log.Info("launch granted", "session", s.ID, "peer", peer, "name", p.Name, "app", app.ID, "forward", fwd.Addr(), "files", len(files))
	g := &control.Grant{
		Session: s.ID, Host: fwd.Addr().IP.String(), Port: fwd.Addr().Port,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(prep.HostKey))),
		User:    tunnel.GuestUser, Command: tunnel.ShellJoin(argv), Expires: time.Now().Add(h.cfg.ForwardIdle),
	}
	for _, sh := range shares {
		g.Shares = append(g.Shares, sh.Name)
	}
	return g, nil
}

// enter counts a launch in h.wg unless the host is closed (h.wg.Done
// ends it).
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// preparingPeer counts the peer's launches being prepared; starting one
// cancels the sandbox's pending idle stop.
func (h *Host) preparingPeer(peer string, delta int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.preparing[peer] += delta
	if h.preparing[peer] <= 0 {
		delete(h.preparing, peer)
	}
	if st := h.stoppers[peer]; delta > 0 && st != nil {
		st.cancel()
		delete(h.stoppers, peer)
	}
}

// register tracks a granted session and counts its watch in h.wg, unless
// the host is closed.
func (h *Host) register(s *HostSession) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.sessions[s.ID] = s
	h.wg.Add(1) // the watch
	return true
}

// forget drops an ungranted session (Launch failed after register).
func (h *Host) forget(s *HostSession) {
	h.mu.Lock()
	delete(h.sessions, s.ID)
	h.mu.Unlock()
	h.wg.Done() // its watch never ran
}

// watch removes a session when its forward closes and schedules the idle
// stop of the sandbox.
func (h *Host) watch(s *HostSession) {
	defer h.wg.Done()
	<-s.fwd.Done()
	h.mu.Lock()
	delete(h.sessions, s.ID)
	h.mu.Unlock()
	h.log.Info("session ended", "session", s.ID, "peer", s.Peer, "app", s.App, "err", s.fwd.Err())
	h.told(s, false)
	h.idleLater(s.Peer)
}

// told tells OnSession that s started or ended.
func (h *Host) told(s *HostSession, started bool) {
	if h.cfg.OnSession == nil {
		return
	}
	h.mu.Lock()
	c := *s
	h.mu.Unlock()
	c.fwd = nil
	h.cfg.OnSession(c, started)
}

// idleLater schedules the idle stop of a peer's sandbox, unless it is in
// use (a session, a launch being prepared), idle stops are off or the
// host is closed (Close cancels the stops; one scheduled after it would
// hold Close up for IdleStop).
func (h *Host) idleLater(peer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.cfg.IdleStop <= 0 || h.preparing[peer] > 0 {
		return
	}
	for _, o := range h.sessions {
		if o.Peer == peer {
			return
		}
	}
	if old := h.stoppers[peer]; old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &stopper{cancel: cancel}
	h.stoppers[peer] = st
	sb, idle := h.cfg.Sandboxes, h.cfg.IdleStop
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel()
		if err := sb.StopWhenIdle(ctx, peer, idle, time.Second); err != nil && !errors.Is(err, context.Canceled) {
			h.log.Warn("stopping idle sandbox", "peer", peer, "err", err)
		}
		h.mu.Lock()
		if h.stoppers[peer] == st {
			delete(h.stoppers, peer)
		}
		h.mu.Unlock()
	}()
}

// Adopt takes over the peers' sandboxes that run without a session of
// this host, those a daemon killed mid-session left (their sessions'
// endpoints ended with it): each is stopped once idle, as after a
// session of its own.
func (h *Host) Adopt(peers []string) {
	for _, p := range peers {
		h.idleLater(p)
	}
}

// End ends one of the peer's sessions. A session the host itself ended is
// refused with CodeEnded: its requester learns why it ended.
func (h *Host) End(ctx context.Context, p control.Peer, id string) error {
	h.mu.Lock()
	s, ok := h.sessions[id]
	e, wasEnded := h.ended[id]
	closed := h.closed
	h.mu.Unlock()
	switch {
	case wasEnded && e.peer == string(p.Fingerprint) && closed:
		return control.Refuse(control.CodeEnded, "the host ended the session: eBrainPool is quitting there")
	case wasEnded && e.peer == string(p.Fingerprint):
		// Also while its teardown is still under way.
		return control.Refuse(control.CodeEnded, "the host ended the session")
	case ok && s.Peer == string(p.Fingerprint):
		h.mu.Lock()
		failed := s.failed
		h.mu.Unlock()
		if err := h.EndSession(id); err != nil {
			return err
		}
		return failed // the requester learns why its app did not start
	}
	return control.Refuse(control.CodeBadRequest, "no such session of yours")
}

// endpointRefusal is what a requester is told when its session's endpoint
// could not enter the sandbox, or the stage that mounts its files failed;
// nil for every other failure (a connection that did not authenticate is
// told nothing).
func endpointRefusal(err error) error {
	var ee *sandbox.EnterError
	var se *tunnel.StageError
	switch {
	case errors.As(err, &se):
		// guest-mount's own sentence, about the sandbox (mount points in
		// the guest's home, the namespaces it makes).
		return control.Refuse(control.CodeSandboxFailed, "the app could not start: bringing your files into your sandbox on this host failed: "+se.Message)
	case !errors.As(err, &ee):
		return nil
	case ee.ProcessLimit > 0:
		return control.Refuse(control.CodeSandboxFailed, fmt.Sprintf("the app could not start: your sandbox on this host is at its process limit (%d processes); end apps you run there, or wait until their processes exit", ee.ProcessLimit))
	}
	return control.Refuse(control.CodeSandboxFailed, "the app could not start: entering your sandbox on this host failed (the host's log has liblxc's messages)")
}

// EndSession ends a session from the host's side (the sessions window).
func (h *Host) EndSession(id string) error {
	h.mu.Lock()
	s, ok := h.sessions[id]
	if ok {
		h.endedLocked(s)
	}
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("no session %s", id)
	}
	s.fwd.Close()
	<-s.fwd.Done()
	return nil
}

// endedLocked remembers that the host ended s (h.mu held).
func (h *Host) endedLocked(s *HostSession) {
	now := time.Now()
	for id, e := range h.ended {
		if now.Sub(e.at) > endedKeep || len(h.ended) >= endedMax {
			delete(h.ended, id)
		}
	}
	h.ended[s.ID] = ending{peer: s.Peer, at: now}
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

// Close ends every session, refuses new requests and waits for the
// launches in progress and the teardown (idle stops are abandoned: the
// sandboxes stay until the next start or `sandbox stop`).
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	var fwds []*tunnel.Forward
	for _, s := range h.sessions {
		h.endedLocked(s)
		fwds = append(fwds, s.fwd)
	}
	for _, st := range h.stoppers {
		st.cancel()
	}
	h.quit()
	h.mu.Unlock()
	// Outside the lock: a forward's teardown may wait for a connection
	// that is just becoming the session (OnSession takes the lock).
	for _, f := range fwds {
		f.Close()
	}
	h.wg.Wait()
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
