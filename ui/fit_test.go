package ui

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// Every window fits a 1024x768 screen with long messages in it (a setup
// fix with its newline, long names, many apps).
func TestWindowsFit1024x768(t *testing.T) {
	f := newFake()
	long := strings.Repeat("verylongname", 6)[:63] // a display name is at most 63 bytes
	f.sbErr = errors.New("eBrainPool's one-time setup has not been done for this user: no range of 65536 ids for " + long + " in /etc/subuid\n  fix: run `sudo ebrainpool setup --user " + long + "` once (it is the only step that needs root)")
	f.canSetUp = true
	bob := peer("bob", long+".local", "verified")
	f.peers = []dbusapi.Peer{bob}
	for i := 0; i < 30; i++ {
		f.apps[bob.Fingerprint] = append(f.apps[bob.Fingerprint], dbusapi.App{ID: "app" + itoaTest(i), Name: "App " + long, Comment: strings.Repeat("does things ", 20)})
		f.local = append(f.local, catalog.App{ID: "local" + itoaTest(i), Name: "Local " + long, Exec: []string{"/usr/bin/" + long}})
	}
	f.sessions = []dbusapi.Session{{ID: "s1", Direction: dbusapi.DirectionIncoming, Peer: bob.Fingerprint, PeerName: long, App: "App " + long, Since: time.Now().Unix(), State: dbusapi.StageRunning}}
	f.rules = []dbusapi.Rule{{Peer: bob.Fingerprint, PeerName: long, App: "x", AppName: "App " + long, Decision: dbusapi.DecisionAllow}}
	f.self = dbusapi.Self{Name: long, Short: "AAAA-BBBB-CCCC-DDDD", Addresses: []string{"192.168.100.100", "fd00:1234:5678:9abc:def0:1234:5678:9abc"}, Port: 7400}
	f.discovery = dbusapi.Discovery{State: dbusapi.DiscoveryNoAvahi}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(bob.Fingerprint)
	u.ShowSessions()
	u.ShowSettings()
	u.showPrompt(dbusapi.Request{ID: "r", Peer: bob.Fingerprint, PeerName: long, From: "192.168.1.2", App: "App " + long, FirstTime: true, Deadline: time.Now().Add(time.Minute).Unix()})
	// And what they say has no control characters but newlines (a
	// launch's error with a tab and an escape, a setup fix's newline).
	f.launchErr = errors.New("bob: the host said\tno\x1b[31m (red)\r\nreally")
	u.launch(bob, f.apps[bob.Fingerprint][0])
	for name, o := range map[string]fyne.CanvasObject{"peers": u.peers.win.Content(), "sessions": u.sessions.win.Content(),
		"settings": u.settings.win.Content(), "popup": u.prompts["r"].win.Content()} {
		for _, text := range allTexts(o) {
			for _, r := range text {
				if (r < 0x20 && r != '\n') || r == 0x7f || r == utf8.RuneError {
					t.Errorf("%s shows %q, with the control character %U", name, text, r)
					break
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		min  func() (float32, float32)
	}{
		{"peers", func() (float32, float32) { s := u.peers.win.Content().MinSize(); return s.Width, s.Height }},
		{"sessions", func() (float32, float32) { s := u.sessions.win.Content().MinSize(); return s.Width, s.Height }},
		{"settings", func() (float32, float32) { s := u.settings.win.Content().MinSize(); return s.Width, s.Height }},
		{"popup", func() (float32, float32) { s := u.prompts["r"].win.Content().MinSize(); return s.Width, s.Height }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, h := tc.min()
			t.Logf("%s needs %.0fx%.0f", tc.name, w, h)
			if w > 1024 || h > 768 {
				t.Errorf("%s needs %.0fx%.0f, more than a 1024x768 screen", tc.name, w, h)
			}
		})
	}
}

func itoaTest(i int) string { return string(rune('a'+i/26)) + string(rune('a'+i%26)) }

// allTexts is texts(o) also inside splits, scrolls and tabs.
func allTexts(o fyne.CanvasObject) []string {
	var out []string
	var visit func(fyne.CanvasObject)
	visit = func(o fyne.CanvasObject) {
		out = append(out, texts(o)...)
		walk(o, func(o fyne.CanvasObject) {
			switch o := o.(type) {
			case *container.Split:
				visit(o.Leading)
				visit(o.Trailing)
			case *container.Scroll:
				visit(o.Content)
			case *container.AppTabs:
				for _, it := range o.Items {
					visit(it.Content)
				}
			}
		})
	}
	visit(o)
	return out
}
