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
	// Listen is the control address (default ":PORT" from the settings,
	// port 0 meaning chosen by the system).
	Listen string
	// SystemBus dials the system bus for discovery (default: the system
	// bus); NoDiscovery turns discovery off (peers then come from AddPeer).
	SystemBus   discovery.DialFunc
	NoDiscovery bool
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
	Logger        *slog.Logger
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
	ln       net.Listener
	disc     *discovery.Service
	api      *dbusapi.Server

	mu       sync.Mutex
	manual   map[identity.Fingerprint]discovery.Peer // peers added by hand
	changed  map[identity.Fingerprint]bool           // pinned key mismatch seen
	outgoing map[string]*outgoing
	apps     appCache
	subs     map[chan Event]struct{}
}

type outgoing struct {
	id, peer, peerName, app string
	since                   time.Time
	state                   dbusapi.Stage
	cancel                  context.CancelFunc
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
		changed: map[identity.Fingerprint]bool{}, outgoing: map[string]*outgoing{}, subs: map[chan Event]struct{}{}}
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
	d.consent, err = consent.New(consent.Config{Timeout: time.Duration(d.settings.ConsentTimeout), Store: consent.FileStore{Path: opts.Dirs.ConsentFile()}})
	if err != nil {
		return nil, err
	}
	sbCfg := opts.Sandbox
	if d.settings.MemoryMB > 0 || d.settings.CPUs > 0 || d.settings.Pids > 0 {
		lim := sandbox.DefaultLimits()
		if d.settings.MemoryMB > 0 {
			lim.MemoryBytes = int64(d.settings.MemoryMB) << 20
		}
		if d.settings.CPUs > 0 {
			lim.CPUs = d.settings.CPUs
		}
		if d.settings.Pids > 0 {
			lim.Pids = d.settings.Pids
		}
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
	idle := time.Duration(d.settings.IdleStop)
	if idle == 0 {
		idle = -1
	}
	d.host = session.NewHost(session.HostConfig{
		Sandboxes: sbx, Consent: d.consent, Apps: d.sharedApps, Icon: d.icon,
		NotSharing: d.notSharing,
		KnownPeer:  func(fp string) bool { _, ok := d.pins.Lookup(identity.Fingerprint(fp)); return ok },
		IdleStop:   idle, Logger: d.log,
	})
	listen := opts.Listen
	if listen == "" {
		listen = ":" + strconv.Itoa(d.settings.ControlPort)
	}
	d.ln, err = net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listening for peers on %s: %w", listen, err)
	}
	return d, nil
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

// Run serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Whatever the return, the goroutines are told to stop before they are
	// waited for (waiting first hung Run on an early error).
	defer func() { cancel(); wg.Wait() }()
	// The sandbox manager current when Run ends (RetrySharing may have
	// swapped one in) is closed after the host: its sessions' teardown and
	// idle stops still use it.
	defer d.closeSandboxes()
	defer d.host.Close()
	defer d.consent.Close()
	if !d.opts.NoAPI {
		conn := d.opts.SessionBus
		if conn == nil {
			var err error
			conn, err = dbus.ConnectSessionBus()
			if err != nil {
				return fmt.Errorf("connecting to the session bus (run inside a desktop session, or start one with dbus-run-session): %w", err)
			}
			defer conn.Close()
		}
		api, err := dbusapi.Export(conn, d)
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.api = api
		d.mu.Unlock()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.forwardConsentEvents(ctx) }()
	srv := &control.Server{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Handler: observer{d}, Logger: d.log}
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ctx, d.ln) }()
	// The first request should not wait for what starting a sandbox
	// needs (on systemd hosts: the helper in its delegated scope).
	d.warmSandboxes(ctx)
	if !d.opts.NoDiscovery {
		dial := d.opts.SystemBus
		if dial == nil {
			dial = func(ctx context.Context) (*dbus.Conn, error) { return dbus.ConnectSystemBus(dbus.WithContext(ctx)) }
		}
		port := d.ControlAddr().Port
		disc, err := discovery.New(discovery.Options{
			Dial: dial, Port: uint16(port), Logger: d.log,
			Self:    discovery.Announcement{Fingerprint: d.id.Fingerprint(), Name: d.Settings().DisplayName},
			OnEvent: d.onDiscovery,
		})
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.disc = disc
		d.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); disc.Run(ctx) }()
	}
	d.log.Info("eBrainPool running", "name", d.Settings().DisplayName, "fingerprint", d.id.Fingerprint(), "control", d.ControlAddr())
	<-ctx.Done()
	d.mu.Lock()
	for _, o := range d.outgoing {
		o.cancel()
	}
	d.mu.Unlock()
	return nil
}

// observer pins every peer that talks to us (first contact) before the
// request is handled.
type observer struct{ d *Daemon }

func (o observer) observe(p control.Peer) {
	if _, _, err := o.d.pins.Observe(p.Name, p.Key); err != nil {
		o.d.log.Warn("pinning peer", "peer", p.Fingerprint, "err", err)
	}
}
func (o observer) Catalog(ctx context.Context, p control.Peer) ([]control.AppInfo, error) {
	defer o.observe(p)
	return o.d.host.Catalog(ctx, p)
}
func (o observer) Launch(ctx context.Context, p control.Peer, app string, progress func(string)) (*control.Grant, error) {
	defer o.observe(p)
	return o.d.host.Launch(ctx, p, app, progress)
}
func (o observer) End(ctx context.Context, p control.Peer, s string) error {
	return o.d.host.End(ctx, p, s)
}

func (d *Daemon) onDiscovery(ev discovery.Event) {
	switch ev.Kind {
	case discovery.PeerRemoved:
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
		}
	}
}

func apiRequest(r consent.Request) dbusapi.Request {
	return dbusapi.Request{ID: r.ID, Peer: r.Peer, PeerName: r.PeerName, From: r.From, App: r.App, FirstTime: r.FirstTime, Deadline: r.Deadline.Unix()}
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
	d.mu.Unlock()
	if disc != nil {
		for _, p := range disc.Peers() {
			if !manual[p.Fingerprint] {
				out = append(out, p)
			}
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

func pickAddr(p discovery.Peer) (netip.Addr, bool) {
	var best netip.Addr
	for _, a := range p.Addresses {
		switch {
		case a.Is4():
			return a, true
		case !best.IsValid() && !a.IsLinkLocalUnicast():
			best = a
		}
	}
	return best, best.IsValid()
}

func (d *Daemon) describe(p discovery.Peer) dbusapi.Peer {
	addr, _ := pickAddr(p)
	a := ""
	if addr.IsValid() {
		a = addr.String()
	}
	return dbusapi.Peer{Fingerprint: string(p.Fingerprint), Short: p.Fingerprint.Short(), Name: p.Name, Host: p.Host, Address: a, Port: p.Port, Trust: d.trust(p)}
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
	addr, ok := pickAddr(p)
	if !ok {
		return session.Target{}, fmt.Errorf("peer %q has no usable address", p.Name)
	}
	return session.Target{Addr: net.JoinHostPort(addr.String(), strconv.Itoa(int(p.Port))), Fingerprint: p.Fingerprint}, nil
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
