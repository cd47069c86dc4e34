package ui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// addressFake is the fake backend that also adds peers by address: bob
// answers at bob.example.org; AddPeerAddress records what it was given.
type addressFake struct {
	*fakeBackend
	mu    sync.Mutex
	added []string // "ADDRESS FINGERPRINT"
}

const bobFP = "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"

func (f *addressFake) ProbePeer(_ context.Context, address string) (dbusapi.Probed, error) {
	if address != "bob.example.org:42331" {
		return dbusapi.Probed{}, errors.New("could not reach " + address + ": connection refused")
	}
	return dbusapi.Probed{Address: address, Fingerprint: bobFP, Short: "UTQV-QOGX-SEXU-5R65", Name: "bob", Apps: 2}, nil
}

func (f *addressFake) AddPeerAddress(_ context.Context, address, fingerprint string) (dbusapi.AddedPeer, error) {
	f.mu.Lock()
	f.added = append(f.added, address+" "+fingerprint)
	f.mu.Unlock()
	return dbusapi.AddedPeer{Address: address, Fingerprint: fingerprint, Name: "bob", Reach: dbusapi.ReachReachable}, nil
}

func (f *addressFake) adds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.added...)
}

// "Add peer by address…": the dialog shows the name and short fingerprint
// of the peer at the address; Add pins that key, Cancel adds nothing, an
// address nobody answers on says so.
func TestAddPeerDialog(t *testing.T) {
	f := &addressFake{fakeBackend: newFake()}
	a := test.NewTempApp(t)
	u := New(Options{App: a, Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
	t.Cleanup(u.cancel)
	u.ShowPeers()
	pb := u.peers
	open := func(t *testing.T) *addPeerDialog {
		t.Helper()
		btn := pb.addBtn
		if btn == nil || btn.Disabled() || btn.Text != "Add peer by address…" {
			t.Fatal("no enabled Add peer by address… button in the peer browser")
		}
		test.Tap(btn)
		if pb.adding == nil {
			t.Fatal("the dialog did not open")
		}
		return pb.adding
	}

	t.Run("cancel adds nothing", func(t *testing.T) {
		d := open(t)
		test.Type(d.address, "bob.example.org")
		test.Tap(d.connect)
		waitFor(t, "the key shown", func() bool { return d.probed != nil })
		if !d.key.Visible() || d.key.Text != "UTQV-QOGX-SEXU-5R65" || !strings.Contains(d.status.Text, `"bob"`) {
			t.Fatalf("dialog shows %q / %q (visible %v)", d.status.Text, d.key.Text, d.key.Visible())
		}
		test.Tap(d.cancel)
		if pb.adding != nil || len(f.adds()) != 0 {
			t.Fatalf("after Cancel: open %v, added %v", pb.adding != nil, f.adds())
		}
	})

	t.Run("an address nobody answers on", func(t *testing.T) {
		d := open(t)
		test.Type(d.address, "10.9.9.9:7000")
		test.Tap(d.connect)
		waitFor(t, "the error", func() bool { return strings.Contains(d.status.Text, "Could not reach 10.9.9.9:7000") })
		if !d.add.Disabled() || d.key.Visible() {
			t.Fatal("Add is possible without a key shown")
		}
		test.Tap(d.cancel)
	})

	t.Run("a bad address is refused before connecting", func(t *testing.T) {
		d := open(t)
		test.Type(d.address, "not a host")
		test.Tap(d.connect)
		if !strings.Contains(d.status.Text, "neither an IP address nor a host name") || !d.add.Disabled() {
			t.Fatalf("status %q", d.status.Text)
		}
		test.Tap(d.cancel)
	})

	t.Run("confirming pins the key shown", func(t *testing.T) {
		d := open(t)
		test.Type(d.address, "bob.example.org")
		test.Tap(d.connect)
		waitFor(t, "the key shown", func() bool { return !d.add.Disabled() })
		test.Tap(d.add)
		waitFor(t, "the add", func() bool { return len(f.adds()) == 1 })
		if got := f.adds()[0]; got != "bob.example.org:42331 "+bobFP {
			t.Fatalf("added %q", got)
		}
		waitFor(t, "the dialog closed", func() bool { return pb.adding == nil })
	})

	t.Run("another address typed after the probe needs a new one", func(t *testing.T) {
		d := open(t)
		test.Type(d.address, "bob.example.org")
		test.Tap(d.connect)
		waitFor(t, "the key shown", func() bool { return !d.add.Disabled() })
		test.Type(d.address, "x")
		if !d.add.Disabled() || d.probed != nil {
			t.Fatal("Add stays possible for another address than the one probed")
		}
		test.Tap(d.cancel)
	})
}

// Without a backend that adds peers by address the button is disabled.
func TestAddPeerButtonDisabled(t *testing.T) {
	u := newTestUI(t, newFake(), nil)
	u.ShowPeers()
	if btn := u.peers.addBtn; btn == nil || !btn.Disabled() {
		t.Fatal("the button is enabled without a backend that can add peers")
	}
}

// An introduced peer says by whom, in the list and in its details.
func TestIntroducedPeerShown(t *testing.T) {
	f := newFake()
	bob := peer("bob", "10.30.0.4", dbusapi.TrustNew)
	bob.IntroducedBy = "carol"
	carol := peer("carol", "carol-pc", dbusapi.TrustVerified)
	carol.Introducer = true
	f.peers = []dbusapi.Peer{bob, carol}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(bob.Fingerprint)
	if !strings.Contains(u.peers.detail.Text, "introduced by carol") {
		t.Errorf("bob's details: %q", u.peers.detail.Text)
	}
	u.peers.selectPeer(carol.Fingerprint)
	if !strings.Contains(u.peers.detail.Text, "introducer") {
		t.Errorf("carol's details: %q", u.peers.detail.Text)
	}
}

// The window process reaches ProbePeer and AddPeerAddress through the
// app (net/rpc over a socket pair, as in the desktop app).
func TestAddPeerThroughTheApp(t *testing.T) {
	f := &addressFake{fakeBackend: newFake()}
	u := New(Options{App: test.NewTempApp(t), Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
	t.Cleanup(u.cancel)
	srv := rpc.NewServer()
	if err := srv.RegisterName(serviceName, &AppService{wp: &windowProc{u: u}}); err != nil {
		t.Fatal(err)
	}
	app, child := net.Pipe()
	go srv.ServeConn(app)
	rb := &remoteBackend{c: rpc.NewClient(child)}
	defer rb.c.Close()
	var ab AddressBackend = rb
	p, err := ab.ProbePeer(context.Background(), "bob.example.org:42331")
	if err != nil || p.Short != "UTQV-QOGX-SEXU-5R65" || p.Name != "bob" {
		t.Fatalf("ProbePeer through the app = %+v, %v", p, err)
	}
	if _, err := ab.ProbePeer(context.Background(), "10.9.9.9:7000"); err == nil || !strings.Contains(err.Error(), "could not reach") {
		t.Fatalf("ProbePeer of an address nobody answers on: %v", err)
	}
	if _, err := ab.AddPeerAddress(context.Background(), p.Address, p.Fingerprint); err != nil || len(f.adds()) != 1 {
		t.Fatalf("AddPeerAddress through the app: %v (added %v)", err, f.adds())
	}
}

// introFake records SetIntroducer and reflects it in Peers.
type introFake struct {
	*fakeBackend
	set []string
}

func (f *introFake) SetIntroducer(peer string, on bool) error {
	f.set = append(f.set, fmt.Sprintf("%s %v", peer, on))
	for i := range f.peers {
		if f.peers[i].Fingerprint == peer {
			f.peers[i].Introducer = on
		}
	}
	return nil
}

// Settings → known peers: each has an Introducer box (off by default);
// ticking it marks the peer, unticking unmarks it.
func TestSettingsIntroducer(t *testing.T) {
	f := &introFake{fakeBackend: newFake()}
	carol := peer("carol", "carol-pc", dbusapi.TrustVerified)
	f.peers = []dbusapi.Peer{carol}
	f.pins = []identity.Pin{{Fingerprint: identity.Fingerprint(carol.Fingerprint), Name: "carol"}}
	u := New(Options{App: test.NewTempApp(t), Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
	t.Cleanup(u.cancel)
	u.ShowSettings()
	box := first(u.settings.known, func(c *widget.Check) bool { return c.Text == "Introducer" })
	if box == nil || box.Checked || box.Disabled() {
		t.Fatalf("carol's Introducer box: %+v", box)
	}
	box.SetChecked(true) // a tap, where the row is laid out
	if len(f.set) != 1 || f.set[0] != carol.Fingerprint+" true" || !strings.Contains(u.settings.status.Text, "carol is an introducer") {
		t.Fatalf("after ticking: %v, status %q", f.set, u.settings.status.Text)
	}
	u.settings.loadPeers()
	box = first(u.settings.known, func(c *widget.Check) bool { return c.Text == "Introducer" })
	if !box.Checked {
		t.Fatal("the box is not ticked for an introducer")
	}
	box.SetChecked(false)
	if len(f.set) != 2 || f.set[1] != carol.Fingerprint+" false" {
		t.Fatalf("after unticking: %v", f.set)
	}
	// Without the backend the box is there, disabled.
	u2 := newTestUI(t, newFake(), nil)
	u2.b.(*fakeBackend).pins = f.pins
	u2.ShowSettings()
	if b := first(u2.settings.known, func(c *widget.Check) bool { return c.Text == "Introducer" }); b == nil || !b.Disabled() {
		t.Fatalf("the box without a backend: %+v", b)
	}
}

// portFake's control port was taken.
type portFake struct{ *fakeBackend }

func (portFake) PortNote() string {
	return "the control port 42331 is taken on this computer: peers reach you on port 40123 instead"
}

// Settings says when the control port was taken, under its field.
func TestSettingsPortTaken(t *testing.T) {
	u := New(Options{App: test.NewTempApp(t), Backend: portFake{newFake()}, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
	t.Cleanup(u.cancel)
	u.ShowSettings()
	hint := u.settings.portItem().HintText
	if !strings.Contains(hint, "40123 instead") {
		t.Fatalf("the port's hint is %q", hint)
	}
}

// addedFake also lists the peers added by address.
type addedFake struct {
	*fakeBackend
	added []dbusapi.AddedPeer
}

func (f *addedFake) AddedPeers() []dbusapi.AddedPeer { return f.added }

// A peer added by address shows in the peer browser where it was added
// and how it answers: reachable, unreachable with why, and when it was
// last seen.
func TestPeerBrowserShowsAddedPeersReach(t *testing.T) {
	seen := time.Date(2026, 12, 1, 10, 32, 0, 0, time.Local)
	for _, tc := range []struct {
		name  string
		added dbusapi.AddedPeer
		want  string
	}{
		{"reachable", dbusapi.AddedPeer{Address: "bob.example.org:42331", Reach: dbusapi.ReachReachable, LastSeen: seen.Unix()},
			"Added by address: bob.example.org:42331, reachable (last seen Dec 1 10:32)"},
		{"unreachable", dbusapi.AddedPeer{Address: "[fe80::2%eth0]:42331", Reach: dbusapi.ReachUnreachable, LastSeen: seen.Unix(), Error: "connection refused"},
			"Added by address: [fe80::2%eth0]:42331, unreachable (last seen Dec 1 10:32: connection refused)"},
		{"never answered", dbusapi.AddedPeer{Address: "10.0.0.7:42331", Reach: dbusapi.ReachUnreachable, Error: "no route to host"},
			"Added by address: 10.0.0.7:42331, unreachable (never seen: no route to host)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &addedFake{fakeBackend: newFake()}
			p := peer("bob", "bob-pc", "verified")
			f.peers = []dbusapi.Peer{p}
			tc.added.Fingerprint = p.Fingerprint
			f.added = []dbusapi.AddedPeer{tc.added}
			a := test.NewTempApp(t)
			u := New(Options{App: a, Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
			t.Cleanup(u.cancel)
			u.ShowPeers()
			u.peers.selectPeer(p.Fingerprint)
			if got := u.peers.detail.Text; !strings.Contains(got, tc.want) {
				t.Errorf("details:\n%s\nwant %q", got, tc.want)
			}
		})
	}
	t.Run("a discovered peer", func(t *testing.T) {
		f := &addedFake{fakeBackend: newFake()}
		p := peer("carol", "carol-pc", "verified")
		f.peers = []dbusapi.Peer{p}
		a := test.NewTempApp(t)
		u := New(Options{App: a, Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}})
		t.Cleanup(u.cancel)
		u.ShowPeers()
		u.peers.selectPeer(p.Fingerprint)
		if got := u.peers.detail.Text; strings.Contains(got, "Added by address") {
			t.Errorf("details of a discovered peer:\n%s", got)
		}
	})
}
