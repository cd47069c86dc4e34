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
		{dbusapi.DisplayProtected, "Protected: the app sees and controls only its own windows on bob's screen"},
		{dbusapi.DisplayTrusted, "Trusted: bob lets the app see their whole screen"},
		{"", "bob's eBrainPool does not say"},
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
