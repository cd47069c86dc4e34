package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// TestPromptShowsDisplayMode: the consent popup says how the requester
// shows the app: protected, trusted, or not said by an older requester.
func TestPromptShowsDisplayMode(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		mode dbusapi.DisplayMode
		want string
	}{
		{dbusapi.DisplayProtected, "Protected: the app sees only its own windows"},
		{dbusapi.DisplayTrusted, "TRUSTED: the app can see and control bob's whole screen"},
		{dbusapi.DisplayIsolated, "Isolated: the app draws on a display of its own here (xpra)"},
		{"", "Not said (an older eBrainPool)"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			f := newFake()
			f.peers = []dbusapi.Peer{peer("bob", "bob-laptop", "verified")}
			u := newTestUI(t, f, &fakeClock{start})
			r := request(false, start.Add(30*time.Second))
			r.Display = tc.mode
			f.events <- daemon.Event{Kind: daemon.EventRequestPending, Request: r}
			f.drain(u)
			p := u.prompts["req-1"]
			if p == nil {
				t.Fatal("no popup for the request")
			}
			if got := joined(p.win.Content()); !strings.Contains(got, tc.want) {
				t.Errorf("popup lacks %q; has:\n%s", tc.want, got)
			}
		})
	}
}

// TestLaunchSaysDisplayMode: a launch from the peer browser says whether
// the app gets a protected or the whole (trusted) display, as the user's
// settings have it for that app of that peer.
func TestLaunchSaysDisplayMode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		trusted  []string
		isolated []string
		want     string
	}{
		{"protected (default)", nil, nil, "Your display: protected: the app sees and controls only its own windows."},
		{"trusted", []string{"SHA256:bob xlogo"}, nil, "Your display: TRUSTED: the app can see your whole screen"},
		{"another app trusted", []string{"SHA256:bob xeyes"}, nil, "Your display: protected"},
		{"isolated", nil, []string{"SHA256:bob xlogo"}, "Your display: isolated: the app draws on a display of its own on the peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			bob := peer("bob", "bob-laptop", "verified")
			f.peers = []dbusapi.Peer{bob}
			f.settings.TrustedDisplay, f.settings.IsolatedDisplay = tc.trusted, tc.isolated
			u := newTestUI(t, f, nil)
			u.ShowPeers()
			u.peers.selectPeer(bob.Fingerprint)
			u.launch(bob, dbusapi.App{ID: "xlogo", Name: "X Logo"})
			if got := launchText(t, u); !strings.Contains(got, tc.want) {
				t.Errorf("launch progress %q, want %q", got, tc.want)
			}
		})
	}
}
