package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/godbus/dbus/v5"
)

// addedDaemon is a daemon (no discovery, no API) in dir, listening on
// listen, running until stop is called or the test ends.
func addedDaemon(t *testing.T, dir, listen string) (d *Daemon, stop func()) {
	t.Helper()
	d, err := New(Options{
		Dirs:   config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir},
		Listen: listen, NoDiscovery: true, NoAPI: true, AppDirs: []string{filepath.Join(dir, "share")},
		Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.sbErr = nil // sharing counts as available: nothing here reaches a sandbox
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}
	t.Cleanup(stop)
	return d, stop
}

// waitAdded waits until the added peer at addr has reach want.
func waitAdded(t *testing.T, d *Daemon, addr string, want dbusapi.Reach) dbusapi.AddedPeer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, p := range d.AddedPeers() {
			if p.Address == addr && p.Reach == want {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer at %s never became %s: %+v", addr, want, d.AddedPeers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A peer added by address: shown before it is pinned, pinned only with
// the key the user confirmed, one entry when also listed otherwise,
// still there after a restart, and refused as "key changed" when another
// key answers at its address.
func TestAddPeerByAddress(t *testing.T) {
	recheck, retry := addedRecheck, addedRetryMin
	t.Cleanup(func() { addedRecheck, addedRetryMin = recheck, retry }) // after the daemons stopped
	addedRecheck, addedRetryMin = 200*time.Millisecond, 50*time.Millisecond
	aDir, bDir := t.TempDir(), t.TempDir()
	a, stopA := addedDaemon(t, aDir, "127.0.0.1:0")
	b, stopB := addedDaemon(t, bDir, "127.0.0.1:0")
	bAddr := b.ControlAddr().String()
	bFP := b.Identity().Fingerprint()
	ctx := context.Background()

	probed, err := a.ProbePeer(ctx, bAddr)
	if err != nil {
		t.Fatalf("ProbePeer: %v", err)
	}
	if probed.Short != bFP.Short() || probed.Fingerprint != string(bFP) || probed.Name != b.Settings().DisplayName || probed.Known {
		t.Fatalf("ProbePeer = %+v, want B's key %s and name %q, not known", probed, bFP.Short(), b.Settings().DisplayName)
	}
	if _, ok := a.pins.Lookup(bFP); ok || len(a.Peers()) != 0 {
		t.Fatal("a probe pinned or listed the peer")
	}
	if _, err := a.AddPeerAddress(ctx, bAddr, fp(t).Short()); !errors.Is(err, identity.ErrFingerprintMismatch) && (err == nil || !strings.Contains(err.Error(), "not the")) {
		t.Fatalf("AddPeer with another key = %v, want a refusal", err)
	}
	if _, ok := a.pins.Lookup(bFP); ok {
		t.Fatal("a refused add pinned the peer")
	}
	got, err := a.AddPeerAddress(ctx, bAddr, strings.ToLower(bFP.Short()))
	if err != nil {
		t.Fatalf("AddPeer with the short form: %v", err)
	}
	if got.Fingerprint != string(bFP) || got.Reach != dbusapi.ReachReachable || got.LastSeen == 0 {
		t.Fatalf("AddPeer = %+v", got)
	}
	if _, ok := a.pins.Lookup(bFP); !ok {
		t.Fatal("the confirmed peer is not pinned")
	}
	// One entry, also when given by hand as well; apps asked by name.
	a.AddPeer(discovery.Peer{Fingerprint: bFP, Name: "bob", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: uint16(b.ControlAddr().Port)})
	if ps := a.Peers(); len(ps) != 1 || ps[0].Fingerprint != string(bFP) || ps[0].Trust != dbusapi.TrustVerified {
		t.Fatalf("Peers = %+v, want B once, verified", ps)
	}
	if _, err := a.Apps(ctx, bFP.Short()); err != nil {
		t.Fatalf("Apps of the added peer: %v", err)
	}

	// A restarts: B is still listed, and answers.
	stopA()
	a, stopA = addedDaemon(t, aDir, "127.0.0.1:0")
	if ps := a.Peers(); len(ps) != 1 || ps[0].Fingerprint != string(bFP) {
		t.Fatalf("after a restart Peers = %+v, want B", ps)
	}
	waitAdded(t, a, bAddr, dbusapi.ReachReachable)

	// Another key at B's address: refused as a key change.
	stopB()
	_, stopC := addedDaemon(t, t.TempDir(), bAddr)
	defer stopC()
	changed := waitAdded(t, a, bAddr, dbusapi.ReachKeyChanged)
	if !strings.Contains(changed.Error, "key changed") {
		t.Errorf("the added peer's error = %q, want it to say the key changed", changed.Error)
	}
	if _, err := a.ProbePeer(ctx, bAddr); err == nil || !strings.Contains(err.Error(), "key changed") {
		t.Errorf("ProbePeer of the address with another key = %v, want key changed", err)
	}
	if _, err := a.Apps(ctx, bFP.Short()); err == nil || !strings.Contains(err.Error(), "key changed") {
		t.Errorf("Apps = %v, want key changed", err)
	}
	if ps := a.Peers(); len(ps) != 1 || ps[0].Trust != dbusapi.TrustChanged {
		t.Errorf("Peers = %+v, want B marked changed", ps)
	}
	if _, err := a.AddPeerAddress(ctx, bAddr, "SHA256:"+strings.Repeat("A", 43)); !errors.Is(err, identity.ErrKeyChanged) {
		t.Errorf("re-adding the address with another key = %v, want ErrKeyChanged", err)
	}

	// Removed: gone, also after a restart.
	if err := a.RemovePeer(bAddr); err != nil {
		t.Fatal(err)
	}
	if len(a.Peers()) != 0 || len(a.AddedPeers()) != 0 {
		t.Fatalf("after remove: %+v %+v", a.Peers(), a.AddedPeers())
	}
	stopA()
	a, _ = addedDaemon(t, aDir, "127.0.0.1:0")
	if len(a.AddedPeers()) != 0 {
		t.Fatalf("a removed peer came back after a restart: %+v", a.AddedPeers())
	}
}

// --peer KEY@HOST:PORT with the short form: pinned once the peer with a
// matching key answers; a wrong short form never is.
func TestAddAddressShortForm(t *testing.T) {
	retry := addedRetryMin
	t.Cleanup(func() { addedRetryMin = retry }) // after the daemons stopped
	addedRetryMin = 50 * time.Millisecond
	b, _ := addedDaemon(t, t.TempDir(), "127.0.0.1:0")
	bFP := b.Identity().Fingerprint()
	for _, tt := range []struct {
		name string
		ref  string
		want dbusapi.Reach
	}{
		{"its short form", bFP.Short(), dbusapi.ReachReachable},
		{"another key's short form", fp(t).Short(), dbusapi.ReachKeyChanged},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := New(Options{Dirs: config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir},
				Listen: "127.0.0.1:0", NoDiscovery: true, NoAPI: true, AppDirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}}})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := identity.ParseKeyRef(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.AddAddress(ref, "localhost:"+strconv.Itoa(b.ControlAddr().Port), "bob"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); <-done }()
			waitAdded(t, a, "localhost:"+strconv.Itoa(b.ControlAddr().Port), tt.want)
			_, pinned := a.pins.Lookup(bFP)
			if pinned != (tt.want == dbusapi.ReachReachable) {
				t.Fatalf("pinned = %v", pinned)
			}
		})
	}
}

// The control port is the fixed default; when it is taken, the daemon
// says so and falls back to a port the system chooses, kept across
// restarts (peers who added it by address keep reaching it).
func TestControlPortTaken(t *testing.T) {
	defer func(h string) { controlHost = h }(controlHost)
	controlHost = "127.0.0.1"
	dir := t.TempDir()
	opts := Options{Dirs: config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir},
		NoDiscovery: true, NoAPI: true, AppDirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}}}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if d.ControlAddr().Port != config.DefaultControlPort || d.PortNote() != "" {
		t.Fatalf("port %d (note %q), want the default %d", d.ControlAddr().Port, d.PortNote(), config.DefaultControlPort)
	}
	// d keeps the default port taken for the next one.
	defer d.ln.Close()
	defer d.consent.Close()
	dir2 := t.TempDir()
	opts.Dirs = config.Dirs{Config: filepath.Join(dir2, "config"), State: filepath.Join(dir2, "state"), Home: dir2}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("with the default port taken: %v", err)
	}
	got := e.ControlAddr().Port
	if got == config.DefaultControlPort || !strings.Contains(e.PortNote(), "42331 is taken") || !strings.Contains(e.PortNote(), strconv.Itoa(got)) {
		t.Fatalf("fallback: port %d, note %q", got, e.PortNote())
	}
	e.ln.Close()
	e.consent.Close()
	again, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer again.ln.Close()
	defer again.consent.Close()
	if again.ControlAddr().Port != got || again.PortNote() != "" {
		t.Fatalf("after a restart: port %d (note %q), want the kept %d", again.ControlAddr().Port, again.PortNote(), got)
	}
	// --listen that is taken is an error, not a fallback.
	opts.Listen = d.ControlAddr().String()
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "listening for peers") {
		t.Fatalf("a taken --listen: %v", err)
	}
}

// A peer added by address that does not answer is tried again with
// backoff, and is reachable once it answers.
func TestAddedPeerRetried(t *testing.T) {
	retry := addedRetryMin
	t.Cleanup(func() { addedRetryMin = retry }) // after the daemons stopped
	addedRetryMin = 50 * time.Millisecond
	// B's identity, and a loopback port nobody listens on yet.
	bDir := t.TempDir()
	b, stopB := addedDaemon(t, bDir, "127.0.0.1:0")
	bFP := b.Identity().Fingerprint()
	addr := b.ControlAddr().String()
	stopB()
	a, _ := addedDaemon(t, t.TempDir(), "127.0.0.1:0")
	if err := a.AddAddress(identity.RefOf(bFP), addr, "bob"); err != nil {
		t.Fatal(err)
	}
	down := waitAdded(t, a, addr, dbusapi.ReachUnreachable)
	if down.Error == "" || down.LastSeen != 0 {
		t.Fatalf("an unreachable added peer: %+v", down)
	}
	addedDaemon(t, bDir, addr) // B comes up where it was added
	up := waitAdded(t, a, addr, dbusapi.ReachReachable)
	if up.Error != "" || up.LastSeen == 0 || up.Fingerprint != string(bFP) {
		t.Fatalf("after B came up: %+v", up)
	}
}

// Run returns when it fails after the watchers started, its context
// still alive (the watchers end with it, they do not hold it): here
// discovery refuses to start (a name it cannot announce).
func TestRunEndsWithWatchers(t *testing.T) {
	d := newTestDaemon(t, Options{})
	d.opts.NoDiscovery = false
	d.opts.SystemBus = func(context.Context) (*dbus.Conn, error) { return nil, errors.New("no system bus here") }
	d.settings.DisplayName = "" // not announceable: discovery.New fails
	if err := d.AddAddress(identity.RefOf(fp(t)), "127.0.0.1:1", "nobody"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after discovery failed to start")
	}
}
