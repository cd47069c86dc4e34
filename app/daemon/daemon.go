// Package daemon runs everything but the GUI: identity and pins, discovery,
// the control server with consent and the sandboxes, outgoing launches, and
// the session-bus API. The desktop app embeds it; `ebrainpool daemon` runs
// it headless.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/app/session"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"github.com/godbus/dbus/v5"
	"golang.org/x/crypto/ssh"
)

// Options configure a Daemon.
type Options struct {
	Dirs config.Dirs
	// Listen is the control address (default ":PORT" with the settings'
	// port, config.DefaultControlPort unless they name another; when that
	// is taken, a port the system chooses, see PortNote). An address given
	// here that is taken is an error.
	Listen string
	// SystemBus dials the system bus for discovery (default: the system
	// bus); NoDiscovery turns discovery off (peers then come from AddPeer).
	SystemBus   discovery.DialFunc
	NoDiscovery bool
	// BrowseDomains are unicast DNS domains browsed for peers besides
	// .local and the settings' browse_domains (--browse-domain).
	BrowseDomains []string
	// SessionBus is where the API is exported (default: the session bus);
	// NoAPI runs without it.
	SessionBus *dbus.Conn
	NoAPI      bool
	// Sandbox configures the sandboxes peers' apps run in.
	Sandbox sandbox.Config
	// InFlatpak says the daemon runs inside a Flatpak, whose sandbox cannot
	// create LXC containers: it then runs apps from peers but shares none.
	InFlatpak bool
	// Elevate runs argv, the one-time setup through polkit ("pkexec",
	// this executable, "setup", "--user", NAME), and returns its combined
	// output; an error with an ExitCode() int method (as *exec.ExitError
	// has) carries pkexec's exit status. Default: run it (see
	// SetUpSharing); tests replace it.
	Elevate func(ctx context.Context, argv []string) ([]byte, error)
	// Display and XAuthority for apps we run from peers (default $DISPLAY,
	// $XAUTHORITY).
	Display, XAuthority string
	// AppDirs are the XDG data dirs scanned for shareable apps.
	AppDirs []string
	// ClientProcess, if set, runs the SSH client of our launches in a
	// process of its own (see session.RunConfig); nil runs it in this one.
	ClientProcess *tunnel.ClientProcess
	// Ready, if set, is called once Run serves: the control port
	// listens, the D-Bus API is exported, discovery has started.
	Ready  func()
	Logger *slog.Logger
}

// Daemon is a running eBrainPool instance.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	id       *identity.Identity
	pins     *identity.PinStore
	settings config.Settings
	consent  *consent.Engine
	host     *session.Host
	sandbox  *sandbox.Manager // nil when setup is missing; guarded by mu (RetrySharing swaps it)
	sbErr    error            // guarded by mu
	sbCfg    sandbox.Config   // what New made the manager with
	sharing  sharingState     // see RetrySharing
	saving   sync.Mutex       // one SaveSettings at a time
	ln       net.Listener
	portNote string // why the control port is not the one asked for ("" when it is)
	api      *dbusapi.Server

	mu sync.Mutex
	// security is what the display check found (displayUnprotectable).
	security struct{ known, missing bool }
	srv      *control.Server // while Run serves
	disc     discoveryState
	launches launchState
	manual   map[identity.Fingerprint]discovery.Peer // peers added by hand (AddPeer's discovery.Peer, tests)
	added    map[string]*added                       // peers added by address, by address (added.go)
	addedRun addedState                              // the watchers of the added peers
	changed  map[identity.Fingerprint]bool           // pinned key mismatch seen
	outgoing map[string]*outgoing
	apps     appCache
	subs     map[chan Event]struct{}
	cats     catalogs // the peers' last app lists (catalogs.go)
}

type outgoing struct {
	id, peer, peerName, app string
	since                   time.Time
	state                   dbusapi.Stage
	cancel                  context.CancelFunc
	endedHere               string   // why this side ended it (EndSession, shutdown), "" if it did not
	session                 string   // the host's session id, once granted
	files                   []string // names of the files and folders brought (a folder's ending in "/")
}

// launchState is what outgoing launches run on (guarded by Daemon.mu):
// Run's context while it serves (nil before and after), and the launches
// Run waits for when it returns.
type launchState struct {
	ctx     context.Context
	running sync.WaitGroup
}

// discoveryState is the running discovery service (guarded by Daemon.mu);
// a new display name replaces it (see reannounce).
type discoveryState struct {
	svc  *discovery.Service
	ctx  context.Context // Run's
	stop context.CancelFunc
	done chan struct{}
	// previous are the peers of the service this one replaced, standing
	// in for those not found again until settle.
	previous []discovery.Peer
	settle   time.Time
}

type appCache struct {
	at   time.Time
	apps []catalog.App
}

// New loads (or creates) the user's identity and settings and opens the
// control listener. Nothing runs until Run.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Display == "" {
		opts.Display = os.Getenv("DISPLAY")
	}
	if opts.XAuthority == "" {
		opts.XAuthority = os.Getenv("XAUTHORITY")
	}
	if opts.AppDirs == nil {
		opts.AppDirs = catalog.DataDirs(opts.Dirs.Home)
	}
	d := &Daemon{opts: opts, log: opts.Logger, manual: map[identity.Fingerprint]discovery.Peer{},
		changed: map[identity.Fingerprint]bool{}, outgoing: map[string]*outgoing{}, subs: map[chan Event]struct{}{}, added: map[string]*added{}}
	var err error
	if err := os.MkdirAll(opts.Dirs.Config, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Dirs.Config, err)
	}
	hostname, _ := os.Hostname()
	uname := "someone"
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	d.settings, err = config.Load(opts.Dirs.SettingsFile(), config.Defaults(uname, hostname))
	if err != nil {
		return nil, err
	}
	d.id, err = identity.LoadOrCreate(opts.Dirs.IdentityKey(), uname+"@"+hostname)
	if err != nil {
		return nil, fmt.Errorf("loading your identity: %w", err)
	}
	d.pins, err = identity.OpenPinStore(opts.Dirs.State)
	if err != nil {
		return nil, err
	}
	if err := d.loadAdded(); err != nil {
		return nil, err
	}
	d.consent, err = consent.New(consent.Config{Timeout: time.Duration(d.settings.ConsentTimeout), Store: consent.FileStore{Path: opts.Dirs.ConsentFile(), Logger: d.log}})
	if err != nil {
		return nil, err
	}
	sbCfg := opts.Sandbox
	if lim, ok := limitsOf(d.settings); ok {
		sbCfg.Limits = lim
	}
	if sbCfg.Logger == nil {
		sbCfg.Logger = d.log
	}
	d.sbCfg = sbCfg
	if d.opts.Elevate == nil {
		d.opts.Elevate = runElevated
	}
	if opts.InFlatpak {
		d.sbErr = ErrFlatpak
	} else {
		d.sandbox, d.sbErr = sandbox.NewManager(sbCfg)
	}
	if d.sbErr != nil {
		d.log.Warn("not sharing apps: running as requester only", "err", d.sbErr)
	}
	var sbx session.Sandboxes = noSandbox{d.sbErr}
	if d.sandbox != nil {
		sbx = d.sandbox
	}
	d.host = d.newHost(sbx)
	if err := d.listen(); err != nil {
		return nil, err
	}
	return d, nil
}

// listen opens the control listener: Options.Listen exactly, else the
// settings' port (the default one unless they name another) on every
// address. When that port is taken, the system chooses one: the daemon
// says so (PortNote, the log, the banner) and, when the settings named no
// port, keeps the one it got from then on, so that peers who added this
// host by address keep reaching it after a restart.
func (d *Daemon) listen() error {
	if d.opts.Listen != "" {
		ln, err := net.Listen("tcp", d.opts.Listen)
		if err != nil {
			return fmt.Errorf("listening for peers on %s: %w", d.opts.Listen, err)
		}
		d.ln = ln
		return nil
	}
	port := d.settings.ControlPortOrDefault()
	ln, err := net.Listen("tcp", net.JoinHostPort(controlHost, strconv.Itoa(port)))
	if err == nil {
		d.ln = ln
		return nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listening for peers on port %d: %w", port, err)
	}
	ln, err2 := net.Listen("tcp", net.JoinHostPort(controlHost, "0"))
	if err2 != nil {
		return fmt.Errorf("listening for peers: port %d is taken (%v), and no other port was free: %w", port, err, err2)
	}
	d.ln = ln
	got := ln.Addr().(*net.TCPAddr).Port
	d.portNote = fmt.Sprintf("the control port %d is taken on this computer (another program, or another user's eBrainPool): peers reach you on port %d instead; peers who add you by address need it (HOST:%d)", port, got, got)
	if d.settings.ControlPort == 0 {
		s := d.settings
		s.ControlPort = got
		if err := config.Save(d.opts.Dirs.SettingsFile(), s); err != nil {
			d.log.Warn("keeping the control port", "err", err)
		} else {
			d.settings = s
			d.portNote += ", kept from now on (Settings or settings.json change it)"
		}
	}
	d.log.Warn(d.portNote)
	return nil
}

// controlHost is where the control port listens without Options.Listen:
// every address (tests: loopback).
var controlHost = ""

// PortNote says why the control port is not the one the settings ask
// for (it was taken), or "".
func (d *Daemon) PortNote() string { return d.portNote }

// newHost is the host side of requests, on d's consent engine, pins,
// apps and settings, starting sandboxes in sbx.
func (d *Daemon) newHost(sbx session.Sandboxes) *session.Host {
	return session.NewHost(session.HostConfig{
		Sandboxes: sbx, Consent: d.consent, Pins: d.pins, Apps: d.sharedApps, Icon: d.icon,
		NotSharing: d.notSharing, IdleStop: idleStop(d.settings), Logger: d.log,
		OnSession: d.sessionEvent,
	})
}

// DefaultDiskMB is the size of a sandbox's home when the settings give
// none.
const DefaultDiskMB = sandbox.DefaultDiskBytes >> 20

// limitsOf are the sandbox limits the settings ask for: the defaults
// where a setting is 0; ok is false when none is set (the sandbox
// configuration's own limits apply).
func limitsOf(s config.Settings) (sandbox.Limits, bool) {
	if s.MemoryMB <= 0 && s.CPUs <= 0 && s.Pids <= 0 && s.DiskMB <= 0 {
		return sandbox.Limits{}, false
	}
	lim := sandbox.DefaultLimits()
	if s.MemoryMB > 0 {
		lim.MemoryBytes = int64(s.MemoryMB) << 20
	}
	if s.CPUs > 0 {
		lim.CPUs = s.CPUs
	}
	if s.Pids > 0 {
		lim.Pids = s.Pids
	}
	if s.DiskMB > 0 {
		lim.DiskBytes = int64(s.DiskMB) << 20
	}
	return lim, true
}

// idleStop is the host's idle stop from the settings (0 there: never).
func idleStop(s config.Settings) time.Duration {
	if s.IdleStop == 0 {
		return -1
	}
	return time.Duration(s.IdleStop)
}

// ErrFlatpak is why a daemon inside a Flatpak shares no apps.
var ErrFlatpak = errors.New("the Flatpak cannot create the LXC sandboxes apps are shared in; install the ebrainpool package (.deb) and run `sudo ebrainpool setup --user NAME` once to share apps")

// noSandbox refuses to start sandboxes when setup is missing.
type noSandbox struct{ err error }

func (n noSandbox) Start(context.Context, string) error { return n.err }
func (n noSandbox) ServeConn(context.Context, string, *net.TCPConn, sandbox.ExecSpec, time.Duration) (int, error) {
	return -1, n.err
}
func (n noSandbox) RootfsPath(string) string { return "/nonexistent" }
func (n noSandbox) StopWhenIdle(context.Context, string, time.Duration, time.Duration) error {
	return nil
}

// Identity is this instance's identity.
func (d *Daemon) Identity() *identity.Identity { return d.id }

// ControlAddr is the address peers reach the control server on.
func (d *Daemon) ControlAddr() *net.TCPAddr { return d.ln.Addr().(*net.TCPAddr) }

// Settings returns the current settings.
func (d *Daemon) Settings() config.Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

// notSharing is the refusal peers get when this host shares nothing, or
// nil.
func (d *Daemon) notSharing() error {
	switch {
	case !d.Settings().Sharing:
		return control.Refuse(control.CodeSharingOff, "sharing is turned off on this host")
	case d.opts.InFlatpak:
		return control.Refuse(control.CodeSharingOff, "this host runs eBrainPool as a Flatpak, which runs apps from other machines but cannot share its own (sharing needs the ebrainpool package installed there)")
	}
	if err := d.SandboxError(); err != nil {
		return control.Refuse(session.SandboxRefusal(err))
	}
	return nil
}

// SandboxError says why apps cannot be shared (setup missing), or nil.
func (d *Daemon) SandboxError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sbErr
}

// Run serves until ctx ends. When it returns, the launches it started
// have ended (their LaunchFinished sent), then the requests it serves.
func (d *Daemon) Run(ctx context.Context) error {
	// One daemon per identity on this computer, whichever bus it is on;
	// released last.
	unlock, err := lockIdentity(d.opts.Dirs.State)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Whatever the return, the goroutines are told to stop before they are
	// waited for (waiting first hung Run on an early error).
	defer func() { cancel(); wg.Wait() }()
	var conn *dbus.Conn // the session bus connection Run made, if it did
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	// The sandbox manager current when Run ends (RetrySharing may have
	// swapped one in) is closed after the host: its sessions' teardown and
	// idle stops still use it.
	// The control server outlives the host's Close and the sandboxes'
	// stop: a requester whose session the quit ended asks why (End) and
	// is told; launches are refused meanwhile (the host is closed).
	srvCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	defer d.closeSandboxes()
	// Quitting stops the sandboxes, once their sessions ended (issue 12).
	defer d.stopSandboxes()
	defer d.host.Close()
	defer d.consent.Close()
	defer d.stopDiscovery()
	defer d.stopAdded()
	// First of all, outgoing launches end (on the bus still there).
	defer d.endLaunches()
	d.mu.Lock()
	d.launches.ctx = ctx
	d.mu.Unlock()
	var busGone <-chan struct{} // the session bus connection closed
	if !d.opts.NoAPI {
		bus := d.opts.SessionBus
		if bus == nil {
			var err error
			bus, err = dbus.ConnectSessionBus()
			if err != nil {
				return fmt.Errorf("connecting to the session bus (run inside a desktop session, or start one with dbus-run-session): %w", err)
			}
			conn = bus
		}
		api, err := dbusapi.Export(bus, d)
		if err != nil {
			return err
		}
		busGone = bus.Context().Done()
		d.mu.Lock()
		d.api = api
		d.mu.Unlock()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.forwardConsentEvents(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); d.refreshCatalogs(ctx) }()
	srv := &control.Server{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Handler: d.host, Logger: d.log, Peers: d.introducePeers}
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(srvCtx, d.ln) }()
	// The first request should not wait for what starting a sandbox
	// needs (on systemd hosts: the helper in its delegated scope).
	d.warmSandboxes(ctx)
	d.startAdded(ctx)
	d.adoptSandboxes()
	if !d.opts.NoDiscovery {
		if err := d.startDiscovery(ctx, d.Settings().DisplayName); err != nil {
			return err
		}
	}
	d.log.Info("eBrainPool running", "name", d.Settings().DisplayName, "fingerprint", d.id.Fingerprint(), "control", d.ControlAddr())
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	select {
	case <-ctx.Done():
	case <-busGone:
		// The desktop session ended (its bus is gone): so does the
		// daemon, whose API and tray lived on it.
		d.log.Info("the session bus closed: stopping")
	}
	return nil
}

// adoptSandboxes hands the sandboxes already running when the daemon
// starts to the host's idle stop: a daemon killed mid-session (SIGKILL, a
// crash) left them, and nothing else would stop them. Their sessions'
// endpoints ended when it died (the claim socket's end, see
// tunnel.ClaimOver), and the mounts and processes with them.
func (d *Daemon) adoptSandboxes() {
	d.mu.Lock()
	m := d.sandbox
	d.mu.Unlock()
	if m == nil {
		return
	}
	list, err := m.List()
	if err != nil {
		d.log.Warn("looking for sandboxes left running", "err", err)
		return
	}
	var peers []string
	for _, in := range list {
		if in.State == "RUNNING" {
			peers = append(peers, in.Peer)
		}
	}
	if len(peers) > 0 {
		d.log.Info("sandboxes left running by an earlier daemon: stopped once idle", "peers", peers)
		d.host.Adopt(peers)
	}
}

// quitStop bounds how long quitting waits for the sandboxes to stop.
var quitStop = 5 * time.Second

// stopSandboxes stops the sandboxes that run (their sessions have ended:
// host.Close), together, within quitStop: the init's stop signal, killed
// after 3 s. One still stopping then is left to the next start, which
// adopts it. With none running it costs a look at the sandboxes' states.
func (d *Daemon) stopSandboxes() {
	d.mu.Lock()
	m := d.sandbox
	d.mu.Unlock()
	if m == nil {
		return
	}
	peers, err := m.Running()
	if err != nil {
		d.log.Warn("quitting: looking for running sandboxes", "err", err)
		return
	}
	if len(peers) == 0 {
		return
	}
	t0 := time.Now()
	d.log.Info("quitting: stopping the sandboxes", "peers", peers, "at_most", quitStop)
	ctx, cancel := context.WithTimeout(context.Background(), quitStop)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.StopWithin(ctx, p, quitStop); err != nil {
				d.log.Warn("quitting: stopping a sandbox", "peer", p, "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		d.log.Info("quitting: the sandboxes stopped", "peers", peers, "took", time.Since(t0).Round(time.Millisecond))
	case <-time.After(quitStop + time.Second):
		d.log.Warn("quitting: sandboxes still stopping: the next start stops them", "peers", peers, "after", time.Since(t0).Round(time.Millisecond))
	}
}

// endLaunches ends the outgoing launches and waits for them; later ones
// are refused.
func (d *Daemon) endLaunches() {
	d.mu.Lock()
	d.launches.ctx = nil
	for _, o := range d.outgoing {
		if o.endedHere == "" {
			o.endedHere = "eBrainPool is shutting down on this computer"
		}
		o.cancel()
	}
	d.mu.Unlock()
	d.launches.running.Wait()
}

// startDiscovery publishes this instance under name and browses, on ctx.
func (d *Daemon) startDiscovery(ctx context.Context, name string) error {
	dial := d.opts.SystemBus
	if dial == nil {
		dial = func(ctx context.Context) (*dbus.Conn, error) { return dbus.ConnectSystemBus(dbus.WithContext(ctx)) }
	}
	var svc *discovery.Service
	svc, err := discovery.New(discovery.Options{
		Dial: dial, Port: uint16(d.ControlAddr().Port), Logger: d.log, BrowseDomains: d.browseDomains(),
		Self: discovery.Announcement{Fingerprint: d.id.Fingerprint(), Name: name},
		OnStatus: func(st discovery.Status) {
			d.mu.Lock()
			current := d.disc.svc == svc
			d.mu.Unlock()
			if current {
				d.discoveryStatus(st)
			}
		},
		OnEvent: func(ev discovery.Event) {
			// A replaced service's last events (its peers going as it
			// stops) are not news: the new one finds them again.
			d.mu.Lock()
			current := d.disc.svc == svc
			d.mu.Unlock()
			if current {
				d.onDiscovery(ev)
			}
		},
	})
	if err != nil {
		return err
	}
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	d.mu.Lock()
	d.disc = discoveryState{svc: svc, ctx: ctx, stop: stop, done: done}
	d.mu.Unlock()
	go func() { defer close(done); svc.Run(dctx) }()
	return nil
}

// browseDomains are the unicast DNS domains discovery browses: the
// settings' and Options.BrowseDomains, each once.
func (d *Daemon) browseDomains() []string {
	var out []string
	seen := map[string]bool{}
	for _, dom := range append(append([]string{}, d.Settings().BrowseDomains...), d.opts.BrowseDomains...) {
		if k := strings.ToLower(strings.TrimSuffix(dom, ".")); !seen[k] {
			seen[k] = true
			out = append(out, dom)
		}
	}
	return out
}

// stopDiscovery stops the discovery service and waits for it.
func (d *Daemon) stopDiscovery() {
	d.mu.Lock()
	ds := d.disc
	d.disc = discoveryState{}
	d.mu.Unlock()
	if ds.stop != nil {
		ds.stop()
		<-ds.done
	}
}

// reannounce publishes this instance under a new display name: the
// discovery service is replaced by one announcing it. Peers the old one
// knew that the new one has not found again after reannounceSettle are
// announced gone then.
func (d *Daemon) reannounce(name string) error {
	d.mu.Lock()
	old := d.disc
	d.mu.Unlock()
	if old.svc == nil || old.ctx.Err() != nil {
		return nil // not running: Run announces the current name
	}
	before := old.svc.Peers()
	// The new service first: from then on the old one's last events
	// (its peers going as it stops) are ignored.
	if err := d.startDiscovery(old.ctx, name); err != nil {
		return fmt.Errorf("announcing the new name: %w", err)
	}
	d.mu.Lock()
	d.disc.previous, d.disc.settle = before, time.Now().Add(reannounceSettle)
	d.mu.Unlock()
	old.stop()
	<-old.done
	d.log.Info("announcing the new display name", "name", name)
	t := time.AfterFunc(reannounceSettle, func() {
		d.mu.Lock()
		svc := d.disc.svc
		d.mu.Unlock()
		if svc == nil || old.ctx.Err() != nil {
			return
		}
		for _, p := range before {
			if _, ok := svc.Peer(p.Fingerprint); !ok {
				d.publish(Event{Kind: EventPeerRemoved, Peer: dbusapi.Peer{Fingerprint: string(p.Fingerprint)}})
			}
		}
	})
	context.AfterFunc(old.ctx, func() { t.Stop() })
	return nil
}

// reannounceSettle is how long a new discovery service has to find the
// peers the one it replaced knew.
var reannounceSettle = 15 * time.Second

func (d *Daemon) onDiscovery(ev discovery.Event) {
	switch ev.Kind {
	case discovery.PeerRemoved:
		d.forgetApps(string(ev.Peer.Fingerprint))
		d.publish(Event{Kind: EventPeerRemoved, Peer: dbusapi.Peer{Fingerprint: string(ev.Peer.Fingerprint)}})
	default:
		d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(ev.Peer)})
	}
}

func (d *Daemon) forwardConsentEvents(ctx context.Context) {
	for ev := range d.consent.Watch(ctx) {
		switch ev.Kind {
		case consent.EventPrompt:
			d.publish(Event{Kind: EventRequestPending, Request: apiRequest(ev.Request)})
		case consent.EventResolved:
			d.publish(Event{Kind: EventRequestResolved, Request: apiRequest(ev.Request), Allowed: ev.Outcome.Allowed, Reason: string(ev.Outcome.Reason)})
		case consent.EventRulesChanged:
			d.publish(Event{Kind: EventRulesChanged})
		}
	}
}

func apiRequest(r consent.Request) dbusapi.Request {
	// Rounded up to whole seconds: a countdown to it never reaches zero
	// before the engine's timeout.
	deadline := r.Deadline.Unix()
	if r.Deadline.Nanosecond() > 0 {
		deadline++
	}
	var files []string
	for _, f := range r.Files {
		files = append(files, fileLabel(f.Name, f.Folder, f.ReadOnly))
	}
	return dbusapi.Request{ID: r.ID, Peer: r.Peer, PeerName: r.PeerName, From: r.From, App: r.App, FirstTime: r.FirstTime, Deadline: deadline, Files: files,
		Display: dbusapi.DisplayMode(r.Display)}
}

// sharedApps are the installed apps the user shares (rescanned every 10s
// at most).
func (d *Daemon) sharedApps() []catalog.App {
	sharing, err := catalog.LoadSharing(d.opts.Dirs.SharingFile())
	if err != nil {
		d.log.Warn("reading the shared apps", "err", err)
		return nil
	}
	d.mu.Lock()
	cache := d.apps
	d.mu.Unlock()
	if time.Since(cache.at) > 10*time.Second {
		// Scanned outside the lock: peers and events need not wait for disk.
		apps, errs := catalog.Scan(d.opts.AppDirs)
		for _, e := range errs {
			d.log.Debug("skipping desktop file", "err", e)
		}
		cache = appCache{at: time.Now(), apps: apps}
		d.mu.Lock()
		d.apps = cache
		d.mu.Unlock()
	}
	return sharing.Filter(cache.apps)
}

func (d *Daemon) icon(a catalog.App) []byte {
	b, err := catalog.IconPNG(a, d.opts.AppDirs, 48)
	if err != nil {
		return nil
	}
	return b
}

// AddPeer adds a peer by hand (when discovery is off or cannot see it).
func (d *Daemon) AddPeer(p discovery.Peer) {
	d.mu.Lock()
	d.manual[p.Fingerprint] = p
	d.mu.Unlock()
	d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)})
}

// peers is every known peer: discovered and added by hand.
func (d *Daemon) peers() []discovery.Peer {
	d.mu.Lock()
	disc := d.disc
	out := make([]discovery.Peer, 0, len(d.manual))
	manual := map[identity.Fingerprint]bool{}
	for fp, p := range d.manual {
		out = append(out, p)
		manual[fp] = true
	}
	addedPeers := d.addedPeersLocked()
	introduced := d.introducedPeersLocked()
	d.mu.Unlock()
	if disc.svc != nil {
		found := disc.svc.Peers()
		if time.Now().Before(disc.settle) {
			// Just replaced (a new name): the peers the old service knew
			// count until the new one found them or the settle time passed.
			for _, p := range disc.previous {
				if _, ok := disc.svc.Peer(p.Fingerprint); !ok {
					found = append(found, p)
				}
			}
		}
		for _, p := range found {
			if !manual[p.Fingerprint] {
				out = append(out, p)
				manual[p.Fingerprint] = true
			}
		}
	}
	// A peer both discovered (or given to AddPeer) and added by address
	// is one entry: the discovered one, fresher.
	for _, p := range addedPeers {
		if !manual[p.Fingerprint] {
			out = append(out, p)
			manual[p.Fingerprint] = true
		}
	}
	// Introduced peers last: only those known no other way.
	for _, p := range introduced {
		if !manual[p.Fingerprint] && p.Fingerprint != d.id.Fingerprint() {
			out = append(out, p)
			manual[p.Fingerprint] = true
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
	return out
}

// trust says how a peer relates to the pins.
func (d *Daemon) trust(p discovery.Peer) dbusapi.Trust {
	d.mu.Lock()
	changed := d.changed[p.Fingerprint]
	d.mu.Unlock()
	if changed {
		return dbusapi.TrustChanged
	}
	if pin, ok := d.pins.Lookup(p.Fingerprint); ok {
		if pin.NameClash {
			return dbusapi.TrustNameClash
		}
		return dbusapi.TrustVerified
	}
	for _, pin := range d.pins.Pins() {
		if pin.Name == p.Name {
			return dbusapi.TrustNameClash // a new key under a known peer's name
		}
	}
	return dbusapi.TrustNew
}

// pickAddr is the address to reach p on: IPv4 first, then a global IPv6
// address, then a link-local one with its zone (never one without: it
// says no interface).
func pickAddr(p discovery.Peer) (netip.Addr, bool) {
	var global, link netip.Addr
	for _, a := range p.Addresses {
		switch {
		case a.Is4() || a.Is4In6():
			return a.Unmap(), true
		case a.IsLinkLocalUnicast():
			if !link.IsValid() && a.Zone() != "" {
				link = a
			}
		case !global.IsValid():
			global = a
		}
	}
	if global.IsValid() {
		return global, true
	}
	return link, link.IsValid()
}

func (d *Daemon) describe(p discovery.Peer) dbusapi.Peer {
	addr, _ := pickAddr(p)
	a := ""
	if addr.IsValid() {
		a = addr.String()
	}
	intro, by := d.introduction(p.Fingerprint)
	return dbusapi.Peer{Fingerprint: string(p.Fingerprint), Short: p.Fingerprint.Short(), Name: p.Name, Host: p.Host, Address: a, Port: p.Port, Trust: d.trust(p),
		Introducer: intro, IntroducedBy: by}
}

// Resolve finds a peer by fingerprint (or a prefix of it, with or without
// "SHA256:", or its short form), display name or host name.
func (d *Daemon) Resolve(q string) (discovery.Peer, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return discovery.Peer{}, errors.New("no peer given")
	}
	var matches []discovery.Peer
	all := d.peers()
	for _, pass := range []func(discovery.Peer) bool{
		func(p discovery.Peer) bool {
			return string(p.Fingerprint) == q || p.Fingerprint.Short() == strings.ToUpper(q)
		},
		func(p discovery.Peer) bool { return strings.EqualFold(p.Name, q) },
		func(p discovery.Peer) bool {
			h := strings.TrimSuffix(strings.ToLower(p.Host), ".")
			return h == strings.ToLower(q) || strings.TrimSuffix(h, ".local") == strings.ToLower(q)
		},
		func(p discovery.Peer) bool {
			return len(q) >= 4 && (strings.HasPrefix(string(p.Fingerprint), q) || strings.HasPrefix(strings.TrimPrefix(string(p.Fingerprint), "SHA256:"), q) ||
				strings.HasPrefix(p.Fingerprint.Short(), strings.ToUpper(q)))
		},
	} {
		for _, p := range all {
			if pass(p) {
				matches = append(matches, p)
			}
		}
		if len(matches) > 0 {
			break
		}
	}
	switch len(matches) {
	case 0:
		return discovery.Peer{}, fmt.Errorf("no peer matches %q (see `ebrainpool peers`)", q)
	case 1:
		return matches[0], nil
	}
	var names []string
	for _, p := range matches {
		names = append(names, fmt.Sprintf("%q %s", p.Name, p.Fingerprint.Short()))
	}
	return discovery.Peer{}, fmt.Errorf("%q matches %d peers (%s): give a fingerprint prefix", q, len(matches), strings.Join(names, ", "))
}

// target is where to reach a peer's control server.
func (d *Daemon) target(p discovery.Peer) (session.Target, error) {
	if a := d.addedAddress(p.Fingerprint); a != "" && !d.discovered(p.Fingerprint) {
		// Added by address: the address as added (a host name is
		// resolved again at each connect).
		return session.Target{Addr: a, Fingerprint: p.Fingerprint}, nil
	}
	addr, ok := pickAddr(p)
	if !ok {
		return session.Target{}, fmt.Errorf("peer %q has no usable address", p.Name)
	}
	return session.Target{Addr: net.JoinHostPort(addr.String(), strconv.Itoa(int(p.Port))), Fingerprint: p.Fingerprint}, nil
}

// discovered reports whether discovery (or AddPeer) lists fp.
func (d *Daemon) discovered(fp identity.Fingerprint) bool {
	d.mu.Lock()
	_, manual := d.manual[fp]
	svc := d.disc.svc
	d.mu.Unlock()
	if manual {
		return true
	}
	if svc == nil {
		return false
	}
	_, ok := svc.Peer(fp)
	return ok
}

// verify is the pin check for a peer we connect to: a pinned peer must show
// its pinned key (a mismatch is refused loudly and remembered for the peer
// list); a new one is pinned.
func (d *Daemon) verify(p discovery.Peer) func(key ssh.PublicKey) error {
	return func(key ssh.PublicKey) error {
		if _, _, err := d.pins.Contact(p.Fingerprint, p.Name, key); err != nil {
			if errors.Is(err, identity.ErrKeyChanged) {
				d.mu.Lock()
				d.changed[p.Fingerprint] = true
				d.mu.Unlock()
				d.log.Error("REFUSED: a pinned peer presented a different key; someone may be impersonating it", "peer", p.Name, "fingerprint", p.Fingerprint, "err", err)
			}
			return err
		}
		return nil
	}
}
