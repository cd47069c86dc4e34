package ui

import (
	"errors"
	"fmt"
	"fyne.io/fyne/v2"
	"reflect"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

func TestPeerBrowserFollowsPeersComingAndGoing(t *testing.T) {
	f := newFake()
	f.peers = []dbusapi.Peer{peer("carol", "carol-pc", "verified")}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	if got := u.peers.names(); !reflect.DeepEqual(got, []string{"carol"}) {
		t.Fatalf("initial peers = %v", got)
	}

	f.addPeer(peer("bob", "bob-laptop", "new"))
	f.addPeer(peer("alice", "alice-desk", "verified"))
	f.drain(u)
	if got, want := u.peers.names(), []string{"alice", "bob", "carol"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after two peers came: %v, want %v", got, want)
	}
	if u.peers.list.Length() != 3 {
		t.Errorf("list length = %d, want 3", u.peers.list.Length())
	}

	u.peers.selectPeer("SHA256:bob")
	f.removePeer("SHA256:bob")
	f.drain(u)
	if got, want := u.peers.names(), []string{"alice", "carol"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after bob left: %v, want %v", got, want)
	}
	if !strings.Contains(u.peers.detail.Text, "bob has left") {
		t.Errorf("detail after the selected peer left = %q", u.peers.detail.Text)
	}

	f.removePeer("SHA256:alice")
	f.removePeer("SHA256:carol")
	f.drain(u)
	if len(u.peers.names()) != 0 || !u.peers.empty.Visible() {
		t.Errorf("no peers: names %v, empty note visible %v", u.peers.names(), u.peers.empty.Visible())
	}
}

func TestPeerBrowserSearch(t *testing.T) {
	f := newFake()
	f.peers = []dbusapi.Peer{
		peer("alice", "alice-desk", "verified"),
		peer("bob", "lab-2", "new"),
		peer("Carol", "LAB-1", "verified"),
	}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"alice", "bob", "Carol"}},
		{"ali", []string{"alice"}},
		{"CAROL", []string{"Carol"}},
		{"lab", []string{"bob", "Carol"}},
		{"  desk ", []string{"alice"}},
		{"nobody", []string{}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			u.peers.search.SetText("")
			test.Type(u.peers.search, tc.query)
			got := u.peers.names()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("search %q shows %v, want %v", tc.query, got, tc.want)
			}
			if len(tc.want) == 0 && !strings.Contains(u.peers.empty.Text, "No peer matches") {
				t.Errorf("no match note = %q", u.peers.empty.Text)
			}
		})
	}
}

func TestPeerBrowserTrust(t *testing.T) {
	for _, tc := range []struct {
		trust      dbusapi.Trust
		warning    string // in the banner; "" means no banner
		launchable bool
	}{
		{dbusapi.TrustVerified, "", true},
		{dbusapi.TrustNew, "", true},
		{dbusapi.TrustChanged, "WARNING: the key of mallory has changed", false},
		{dbusapi.TrustNameClash, "already uses the name mallory", true},
	} {
		t.Run(string(tc.trust), func(t *testing.T) {
			f := newFake()
			p := peer("mallory", "m-pc", tc.trust)
			f.peers = []dbusapi.Peer{p}
			f.apps[p.Fingerprint] = []dbusapi.App{{ID: "gimp", Name: "GIMP"}}
			u := newTestUI(t, f, nil)
			u.ShowPeers()
			u.peers.selectPeer(p.Fingerprint)
			banner := joined(u.peers.warning)
			if tc.warning == "" && banner != "" || !strings.Contains(banner, tc.warning) {
				t.Errorf("banner = %q, want %q", banner, tc.warning)
			}
			btn := u.peers.launchButton("GIMP")
			if btn == nil {
				t.Fatal("no Launch button for GIMP")
			}
			if btn.Disabled() == tc.launchable {
				t.Errorf("Launch disabled = %v, want %v", btn.Disabled(), !tc.launchable)
			}
			if text, warn := trustText(tc.trust); warn != (tc.trust == dbusapi.TrustChanged || tc.trust == dbusapi.TrustNameClash) || text == "" {
				t.Errorf("trustText(%q) = %q, %v", tc.trust, text, warn)
			}
		})
	}
}

func TestPeerBrowserAppsError(t *testing.T) {
	f := newFake()
	p := peer("dave", "dave-pc", "verified")
	f.peers = []dbusapi.Peer{p}
	f.appsErr[p.Fingerprint] = errors.New("connection refused")
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(p.Fingerprint)
	if got := u.peers.appsNote.Text; !strings.Contains(got, "Could not get the apps of dave: connection refused.") {
		t.Errorf("note = %q", got)
	}
	if u.peers.appsNote.Importance != widget.DangerImportance {
		t.Errorf("error note not shown as danger")
	}
}

func TestLaunchProgressAndErrors(t *testing.T) {
	f := newFake()
	p := peer("alice", "alice-desk", "verified")
	f.peers = []dbusapi.Peer{p}
	f.apps[p.Fingerprint] = []dbusapi.App{{ID: "org.gimp.GIMP", Name: "GIMP", Comment: "Image editor"}}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(p.Fingerprint)
	test.Tap(u.peers.launchButton("GIMP"))
	if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/org.gimp.GIMP"}) {
		t.Fatalf("launched = %v", f.launched)
	}
	for _, stage := range dbusapi.Stages[1:] {
		t.Run(string(stage), func(t *testing.T) {
			f.events <- daemon.Event{Kind: daemon.EventLaunchProgress, Launch: "launch-1", Stage: stage}
			f.drain(u)
			got := joined(u.peers.launchBox)
			if !strings.Contains(got, "GIMP on alice") || !strings.Contains(got, string(stage)) {
				t.Errorf("launch area = %q, want the stage %q", got, stage)
			}
			if u.tray.iconState() != trayActive {
				t.Errorf("tray icon %s while launching, want active", u.tray.iconState())
			}
		})
	}

	for _, tc := range []struct {
		name    string
		exit    int
		err     string
		outcome dbusapi.Outcome
		running bool // the app ran before the end
		want    string
		danger  bool
	}{
		// Each outcome in its own words.
		{"closed", 0, "", dbusapi.OutcomeExited, true, "GIMP on alice has closed.", false},
		{"status", 3, "", dbusapi.OutcomeExited, true, "GIMP on alice ended with status 3.", false},
		{"denied", -1, "alice: the host denied the request", dbusapi.OutcomeDenied, false, "alice denied your request to run GIMP.", true},
		{"nobody answered", -1, "alice: the host's user did not answer in time", dbusapi.OutcomeNoAnswer, false, "Nobody on alice answered your request to run GIMP in time.", true},
		{"blocked", -1, "alice: the host has blocked you", dbusapi.OutcomeBlocked, false, "alice does not accept your requests: you are blocked there.", true},
		{"not shared", -1, `alice: this host does not share "org.gimp.GIMP"`, dbusapi.OutcomeNotShared, false, "alice does not share GIMP (any more).", true},
		{"ended here", -1, "the session was ended here", dbusapi.OutcomeEnded, true, "You ended GIMP on alice.", false},
		{"ended by the host", -1, "alice: the host ended the session", dbusapi.OutcomeEndedByHost, true, "alice ended GIMP: the session was ended on that computer.", false},
		{"setup missing", -1, "alice: this host cannot share apps yet: its one-time setup has not been done", dbusapi.OutcomeSetupMissing, false,
			"GIMP on alice did not start: alice: this host cannot share apps yet: its one-time setup has not been done.", true},
		{"lost while running", -1, "could not reach alice: connection reset", dbusapi.OutcomeFailed, true, "GIMP on alice stopped: could not reach alice: connection reset.", true},
		// A daemon that does not say the outcome: its sentence.
		{"older daemon, refused", -1, "alice: denied", "", false, "GIMP on alice did not start: alice: denied.", true},
		{"older daemon, status", 3, "", "", true, "ended with status 3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := f.Launch(p.Fingerprint, "org.gimp.GIMP")
			if err != nil {
				t.Fatal(err)
			}
			u.launches.started(id, p, dbusapi.App{ID: "org.gimp.GIMP", Name: "GIMP"}, nil, nil)
			if tc.running {
				f.events <- daemon.Event{Kind: daemon.EventLaunchProgress, Launch: id, Stage: dbusapi.StageRunning}
			}
			f.events <- daemon.Event{Kind: daemon.EventLaunchFinished, Launch: id, Exit: tc.exit, Err: tc.err, Outcome: tc.outcome}
			f.drain(u)
			l := u.launches.byID[id]
			if !strings.Contains(l.text(), tc.want) {
				t.Errorf("text = %q, want %q", l.text(), tc.want)
			}
			if l.failed() != tc.danger {
				t.Errorf("failed = %v", l.failed())
			}
			if got := joined(u.peers.launchBox); !strings.Contains(got, tc.want) {
				t.Errorf("launch area = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("Launch refused at once", func(t *testing.T) {
		f.launchErr = errors.New(`alice does not share "org.gimp.GIMP"`)
		test.Tap(u.peers.launchButton("GIMP"))
		if got := joined(u.peers.launchBox); !strings.Contains(got, `GIMP on alice did not start: alice does not share "org.gimp.GIMP".`) {
			t.Errorf("launch area = %q", got)
		}
	})
}

func TestLaunchesStartedElsewhereIgnored(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	f.events <- daemon.Event{Kind: daemon.EventLaunchProgress, Launch: "other", Stage: "asking"}
	f.events <- daemon.Event{Kind: daemon.EventLaunchFinished, Launch: "other", Exit: 0}
	f.drain(u)
	if n := len(u.launches.list()); n != 0 {
		t.Errorf("%d launches tracked, want none", n)
	}
	if got := joined(u.peers.launchBox); !strings.Contains(got, "Apps you launch show their progress here.") {
		t.Errorf("launch area = %q", got)
	}
}

// A peer browser opened at start-up (--show peers) catches up with peers
// found before the interface subscribed to events.
func TestPeerBrowserOpenedBeforeStart(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	f.mu.Lock()
	f.peers = []dbusapi.Peer{peer("alice", "alice-desk", "verified")} // no event
	f.mu.Unlock()
	u.Start(t.Context())
	if got := u.peers.names(); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Fatalf("peer browser lists %q, want [alice]", got)
	}
}

// A launch this display could not confine (no SECURITY extension, as
// Xwayland on Debian 12) offers trusted access, asked with a warning:
// Cancel changes nothing; "Trust and launch" remembers it for that app of
// that peer and launches again.
func TestLaunchOnUnprotectedDisplayOffersTrust(t *testing.T) {
	f := newFake()
	p := peer("alice", "alice-desk", "verified")
	f.peers = []dbusapi.Peer{p}
	f.apps[p.Fingerprint] = []dbusapi.App{{ID: "org.gimp.GIMP", Name: "GIMP"}}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(p.Fingerprint)
	fail := func() {
		t.Helper()
		test.Tap(u.peers.launchButton("GIMP"))
		id := fmt.Sprintf("launch-%d", len(f.launched))
		f.events <- daemon.Event{Kind: daemon.EventLaunchFinished, Launch: id, Exit: -1, Outcome: dbusapi.OutcomeUnprotectedDisplay,
			Err: "the X server of display :0 has no SECURITY extension"}
		f.drain(u)
	}
	answer := func(button string) {
		t.Helper()
		trust := findButton(u.peers.launchBox, "Trust it with my whole display…")
		if trust == nil {
			t.Fatalf("no offer of trusted access in %q", joined(u.peers.launchBox))
		}
		test.Tap(trust)
		b, text := dialogButton(t, u.peers.win, button)
		if !strings.Contains(text, "can see everything on your screen") {
			t.Errorf("the question does not say what the app can then do: %q", text)
		}
		test.Tap(b)
	}

	fail()
	answer("Cancel")
	if f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") || len(f.launched) != 1 {
		t.Fatalf("after Cancel: trusted %v, launched %v", f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP"), f.launched)
	}
	answer("Trust and launch")
	if !f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") {
		t.Error("the app is not trusted after Trust and launch")
	}
	if len(f.launched) != 2 || f.launched[1] != "SHA256:alice/org.gimp.GIMP" {
		t.Errorf("launched %v, want GIMP again", f.launched)
	}
	if got := joined(u.peers.launchBox); strings.Contains(got, "SECURITY") {
		t.Errorf("the refused launch is still shown: %q", got)
	}
}

// deepWalk is walk into widgets' renderers too (a dialog's content).
func deepWalk(o fyne.CanvasObject, f func(fyne.CanvasObject)) {
	f(o)
	switch o := o.(type) {
	case *fyne.Container:
		for _, c := range o.Objects {
			deepWalk(c, f)
		}
	case *widget.Label, *widget.Button:
	case fyne.Widget:
		for _, c := range test.WidgetRenderer(o).Objects() {
			deepWalk(c, f)
		}
	}
}
