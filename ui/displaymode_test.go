package ui

import (
	"errors"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// The fake's display modes, kept in its settings as the daemon keeps
// them (trusted_display, isolated_display).

func (f *fakeBackend) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	switch {
	case f.settings.Isolates(peer, app):
		return dbusapi.DisplayIsolated, nil
	case f.settings.Trusts(peer, app):
		return dbusapi.DisplayTrusted, nil
	case f.isolatedDefault:
		return dbusapi.DisplayIsolated, nil
	}
	return dbusapi.DisplayProtected, nil
}

func (f *fakeBackend) SetDisplayMode(peer, app string, mode dbusapi.DisplayMode) error {
	f.modeSets = append(f.modeSets, peer+"/"+app+"="+string(mode))
	if f.modeErr != nil {
		return f.modeErr
	}
	f.settings = f.settings.WithTrusted(peer, app, mode == dbusapi.DisplayTrusted).WithIsolated(peer, app, mode == dbusapi.DisplayIsolated)
	f.events <- daemon.Event{Kind: daemon.EventDisplayModesChanged} // as the daemon
	return nil
}

func (f *fakeBackend) DisplayModes() []dbusapi.DisplayChoice {
	var out []dbusapi.DisplayChoice
	add := func(keys []string, mode dbusapi.DisplayMode) {
		for _, k := range keys {
			fp, app, _ := strings.Cut(k, " ")
			name := fp
			for _, p := range f.pins {
				if string(p.Fingerprint) == fp {
					name = p.Name
				}
			}
			for _, p := range f.peers {
				if p.Fingerprint == fp {
					name = p.Name
				}
			}
			out = append(out, dbusapi.DisplayChoice{Peer: fp, PeerName: name, App: app, AppName: app, Mode: mode})
		}
	}
	add(f.settings.TrustedDisplay, dbusapi.DisplayTrusted)
	add(f.settings.IsolatedDisplay, dbusapi.DisplayIsolated)
	return out
}

// aliceFP is a fingerprint of the real form (its short form is shown).
const aliceFP = "SHA256:WeXpogacdCqvmaxuNZFUpT1Te6ZU/j7aPAocB0T2i8o"

// displayRig is the peer browser showing alice's GIMP, with xpra present
// or not (isolated: CheckIsolatedDisplay's answer).
func displayRig(t *testing.T, f *fakeBackend, isolated error) (*UI, dbusapi.Peer) {
	t.Helper()
	p := peer("alice", "alice-desk", dbusapi.TrustVerified)
	p.Fingerprint = aliceFP
	f.peers = []dbusapi.Peer{p}
	f.apps[p.Fingerprint] = []dbusapi.App{{ID: "org.gimp.GIMP", Name: "GIMP"}}
	u := newTestUI(t, f, nil)
	u.opts.IsolatedDisplay = func() error { return isolated }
	u.ShowPeers()
	u.peers.selectPeer(p.Fingerprint)
	return u, p
}

// control is the display control of the (only) app shown.
func (pb *peerBrowser) control(t *testing.T) *displayControl {
	t.Helper()
	if len(pb.rows) != 1 || pb.rows[0].display == nil {
		t.Fatalf("%d app rows shown, want 1 with a display control", len(pb.rows))
	}
	return pb.rows[0].display
}

// current is the mode whose button is marked (with a tick).
func (c *displayControl) current() dbusapi.DisplayMode {
	var cur dbusapi.DisplayMode
	for m, b := range c.buttons {
		if b.Icon != nil {
			if cur != "" {
				return "two marked"
			}
			cur = m
		}
	}
	return cur
}

// TestDisplayControlShowsTheDaemonsMode: each app's display control
// marks the mode the daemon says and says what it lets the app do,
// "isolated by default" where the display cannot protect.
func TestDisplayControlShowsTheDaemonsMode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func(f *fakeBackend, fp string)
		want      dbusapi.DisplayMode
		wantNote  string
		wantTrust bool // the note is a warning
	}{
		{"default", func(*fakeBackend, string) {}, dbusapi.DisplayProtected, "only its own windows", false},
		{"trusted", func(f *fakeBackend, fp string) { f.settings = f.settings.WithTrusted(fp, "org.gimp.GIMP", true) },
			dbusapi.DisplayTrusted, "read your whole screen and every window, and type into any window", true},
		{"isolated", func(f *fakeBackend, fp string) { f.settings = f.settings.WithIsolated(fp, "org.gimp.GIMP", true) },
			dbusapi.DisplayIsolated, "Isolated: the app draws on a display of its own", false},
		{"isolated by default", func(f *fakeBackend, _ string) { f.isolatedDefault = true },
			dbusapi.DisplayIsolated, "Isolated by default: your display cannot keep apps to their own windows", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			tc.set(f, aliceFP)
			u, _ := displayRig(t, f, nil)
			c := u.peers.control(t)
			if got := c.current(); got != tc.want {
				t.Errorf("marked %q, want %q", got, tc.want)
			}
			if !strings.Contains(c.note.Text, tc.wantNote) {
				t.Errorf("note %q, want %q", c.note.Text, tc.wantNote)
			}
			if (c.note.Importance == widget.WarningImportance) != tc.wantTrust {
				t.Errorf("note importance %v", c.note.Importance)
			}
			if !c.buttons[dbusapi.DisplayIsolated].Visible() || c.buttons[dbusapi.DisplayIsolated].Disabled() {
				t.Error("Isolated is not offered with xpra installed")
			}
			// The Launch button is still the row's.
			if b := u.peers.launchButton("GIMP"); b == nil || b.Text != "Launch" {
				t.Errorf("launch button %v", b)
			}
		})
	}
}

// dialogButton finds a button of the dialog on top of win, and the
// dialog's text.
func dialogButton(t *testing.T, win fyne.Window, text string) (*widget.Button, string) {
	t.Helper()
	top := win.Canvas().Overlays().Top()
	if top == nil {
		t.Fatal("no dialog")
	}
	var b *widget.Button
	var words []string
	deepWalk(top, func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *widget.Label:
			words = append(words, o.Text)
		case *widget.Button:
			if o.Text == text {
				b = o
			}
		}
	})
	if b == nil {
		t.Fatalf("no %q in the dialog (%q)", text, words)
	}
	return b, strings.Join(words, "\n")
}

// TestChoosingTrustedAsksFirst: Trusted… shows a warning saying what the
// app can then do, with keeping the mode focused; keeping it (or closing)
// leaves the app protected, only confirming trusts it; Protected takes it
// back. Isolated is set at once.
func TestChoosingTrustedAsksFirst(t *testing.T) {
	f := newFake()
	u, p := displayRig(t, f, nil)
	c := u.peers.control(t)
	win := u.peers.win

	test.Tap(c.buttons[dbusapi.DisplayTrusted])
	keep, text := dialogButton(t, win, "Keep it as it is")
	for _, want := range []string{"read your whole screen and every window", "type into any window", "GIMP from alice"} {
		if !strings.Contains(text, want) {
			t.Errorf("the warning does not say %q: %q", want, text)
		}
	}
	if win.Canvas().Focused() != keep {
		t.Error("the focused answer is not keeping the mode")
	}
	test.Tap(keep)
	if f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") || len(f.modeSets) != 0 || c.current() != dbusapi.DisplayProtected {
		t.Fatalf("after keeping: trusted %v, set %v, marked %q", f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP"), f.modeSets, c.current())
	}
	if win.Canvas().Overlays().Top() != nil {
		t.Fatal("the dialog stays open")
	}

	test.Tap(c.buttons[dbusapi.DisplayTrusted])
	trust, _ := dialogButton(t, win, "Trust it with my whole display")
	test.Tap(trust)
	f.drain(u) // the daemon's DisplayModesChanged
	if !f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") || c.current() != dbusapi.DisplayTrusted {
		t.Fatalf("after confirming: trusted %v, marked %q", f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP"), c.current())
	}
	if !strings.Contains(c.note.Text, "TRUSTED") {
		t.Errorf("note %q", c.note.Text)
	}

	test.Tap(c.buttons[dbusapi.DisplayIsolated])
	f.drain(u)
	if !f.settings.Isolates(p.Fingerprint, "org.gimp.GIMP") || f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") || c.current() != dbusapi.DisplayIsolated {
		t.Fatalf("after Isolated: settings %v %v, marked %q", f.settings.TrustedDisplay, f.settings.IsolatedDisplay, c.current())
	}
	test.Tap(c.buttons[dbusapi.DisplayProtected])
	f.drain(u)
	if len(f.settings.IsolatedDisplay)+len(f.settings.TrustedDisplay) != 0 || c.current() != dbusapi.DisplayProtected {
		t.Fatalf("after Protected: settings %v %v, marked %q", f.settings.TrustedDisplay, f.settings.IsolatedDisplay, c.current())
	}
	want := []string{p.Fingerprint + "/org.gimp.GIMP=trusted", p.Fingerprint + "/org.gimp.GIMP=isolated", p.Fingerprint + "/org.gimp.GIMP=protected"}
	if strings.Join(f.modeSets, " ") != strings.Join(want, " ") {
		t.Errorf("SetDisplayMode calls %v, want %v", f.modeSets, want)
	}
}

// TestIsolatedNeedsXpra: without xpra Isolated is disabled and the
// control says why; the others still work.
func TestIsolatedNeedsXpra(t *testing.T) {
	f := newFake()
	u, _ := displayRig(t, f, errors.New("the isolated display needs xpra on this computer"))
	c := u.peers.control(t)
	if !c.buttons[dbusapi.DisplayIsolated].Disabled() {
		t.Fatal("Isolated is enabled without xpra")
	}
	test.Tap(c.buttons[dbusapi.DisplayIsolated])
	if len(f.modeSets) != 0 {
		t.Fatalf("a disabled Isolated set %v", f.modeSets)
	}
	if !strings.Contains(c.note.Text, "Isolated needs xpra on this computer") {
		t.Errorf("the control does not say why: %q", c.note.Text)
	}
	if c.buttons[dbusapi.DisplayProtected].Disabled() || c.buttons[dbusapi.DisplayTrusted].Disabled() {
		t.Error("Protected or Trusted disabled")
	}
}

// TestDisplayModeErrorInWords: a failure of the daemon is said in the
// app's words, naming the app, and the mode shown stays.
func TestDisplayModeErrorInWords(t *testing.T) {
	f := newFake()
	u, _ := displayRig(t, f, nil)
	f.modeErr = errors.New("saving the display mode of org.gimp.GIMP: disk full")
	c := u.peers.control(t)
	test.Tap(c.buttons[dbusapi.DisplayIsolated])
	if want := "Could not change how GIMP uses your display: saving the display mode of org.gimp.GIMP: disk full."; c.note.Text != want {
		t.Errorf("note %q, want %q", c.note.Text, want)
	}
	if c.note.Importance != widget.DangerImportance || c.current() != dbusapi.DisplayProtected {
		t.Errorf("importance %v, marked %q", c.note.Importance, c.current())
	}
}

// TestSettingsListsChosenDisplayModes: Settings lists each mode chosen
// (peer, short fingerprint, app, mode), also one chosen in the peer
// browser while Settings is open; "Use default" sets it back to protected
// through the backend, and the peer browser shows that.
func TestSettingsListsChosenDisplayModes(t *testing.T) {
	f := newFake()
	u, p := displayRig(t, f, nil)
	u.ShowSettings()
	s := u.settings
	if got := joined(s.modes); !strings.Contains(got, "Every app runs in the default display mode") {
		t.Fatalf("with no choice: %q", got)
	}
	c := u.peers.control(t)
	test.Tap(c.buttons[dbusapi.DisplayTrusted])
	trust, _ := dialogButton(t, u.peers.win, "Trust it with my whole display")
	test.Tap(trust)
	f.drain(u) // the daemon's DisplayModesChanged

	short := identity.Fingerprint(p.Fingerprint).Short()
	if short == "" {
		t.Fatal("no short fingerprint")
	}
	want := "alice · " + short + " · org.gimp.GIMP · TRUSTED with your whole display"
	if got := joined(s.modes); !strings.Contains(got, want) {
		t.Fatalf("Settings lists %q, want %q", got, want)
	}
	reset := findButton(s.modes, "Use default")
	if reset == nil {
		t.Fatal("no Use default")
	}
	test.Tap(reset)
	f.drain(u)
	if f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP") || f.modeSets[len(f.modeSets)-1] != p.Fingerprint+"/org.gimp.GIMP=protected" {
		t.Fatalf("after Use default: trusted %v, calls %v", f.settings.Trusts(p.Fingerprint, "org.gimp.GIMP"), f.modeSets)
	}
	if got := joined(s.modes); strings.Contains(got, "TRUSTED") || !strings.Contains(got, "default display mode") {
		t.Errorf("Settings still lists %q", got)
	}
	if !strings.Contains(s.status.Text, "uses the default display mode again") {
		t.Errorf("status %q", s.status.Text)
	}
	if c.current() != dbusapi.DisplayProtected {
		t.Errorf("the peer browser marks %q", c.current())
	}
}

// TestDisplayModesFollowTheDaemon: a mode chosen elsewhere (`ebrainpool
// display PEER APP trusted`) shows in the open peer browser and Settings
// once the daemon says the modes changed.
func TestDisplayModesFollowTheDaemon(t *testing.T) {
	f := newFake()
	u, p := displayRig(t, f, nil)
	u.ShowSettings()
	c := u.peers.control(t)
	if c.current() != dbusapi.DisplayProtected {
		t.Fatalf("marked %q before, want protected", c.current())
	}
	f.settings = f.settings.WithTrusted(p.Fingerprint, "org.gimp.GIMP", true)
	f.events <- daemon.Event{Kind: daemon.EventDisplayModesChanged}
	f.drain(u)
	if c.current() != dbusapi.DisplayTrusted {
		t.Errorf("the peer browser marks %q after the change, want trusted", c.current())
	}
	if got := joined(u.settings.modes); !strings.Contains(got, "org.gimp.GIMP · TRUSTED with your whole display") {
		t.Errorf("Settings lists %q after the change", got)
	}
}

// TestDisplayModeInWindowProcess: in a window process the control asks
// and sets the mode through the desktop app, and its Settings lists it.
func TestDisplayModeInWindowProcess(t *testing.T) {
	f := newFake()
	alice := peer("alice", "alice-desk", dbusapi.TrustVerified)
	alice.Fingerprint = aliceFP
	f.peers = []dbusapi.Peer{alice}
	f.apps[alice.Fingerprint] = []dbusapi.App{{ID: "xterm", Name: "XTerm"}}
	f.settings = f.settings.WithTrusted(aliceFP, "xterm", true)
	app, children := newSplitUI(t, f, &fakeClock{t: time.Unix(1_800_000_000, 0)})
	app.showPeer(alice.Fingerprint)
	if len(*children) != 1 {
		t.Fatalf("%d window processes", len(*children))
	}
	w := (*children)[0]
	w.step(t)
	w.u.opts.IsolatedDisplay = func() error { return nil }
	c := w.u.peers.control(t)
	if c.current() != dbusapi.DisplayTrusted {
		t.Fatalf("the window process marks %q (note %q), want trusted", c.current(), c.note.Text)
	}
	test.Tap(c.buttons[dbusapi.DisplayIsolated])
	f.drain(app) // the daemon's DisplayModesChanged, passed on to the window process
	w.step(t)
	if !f.settings.Isolates(aliceFP, "xterm") || c.current() != dbusapi.DisplayIsolated {
		t.Fatalf("after Isolated: settings %v, marked %q (note %q)", f.settings.IsolatedDisplay, c.current(), c.note.Text)
	}
	w.u.ShowSettings()
	if got := joined(w.u.settings.modes); !strings.Contains(got, "alice · ") || !strings.Contains(got, "xterm · isolated") {
		t.Errorf("the window process's Settings lists %q", got)
	}
}
