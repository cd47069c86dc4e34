package ui

import (
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// A request's desktop notification comes only when no popup can show it:
// not while window processes show the popup, also after crashes that
// start new ones, but once they crashed past their restarts.
func TestNotificationOnlyWhenNoPopupCanShow(t *testing.T) {
	srv := &fakeNotifications{}
	n, _ := notificationServer(t, srv)
	f := newFake()
	clock := &fakeClock{time.Unix(1_800_000_000, 0)}
	app, children := newSplitUI(t, f, clock)
	app.opts.Notifier = n
	app.Start(t.Context())
	req := dbusapi.Request{ID: "r1", Peer: "SHA256:bob", PeerName: "bob", App: "XTerm", Deadline: clock.t.Add(time.Minute).Unix()}
	f.pending = []dbusapi.Request{req}
	app.handle(daemon.Event{Kind: daemon.EventRequestPending, Request: req})
	shown := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.shown)
	}
	count := func() int {
		app.win.mu.Lock()
		defer app.win.mu.Unlock()
		return len(*children)
	}
	waitFor(t, "a window process for the popup", func() bool { return count() == 1 })
	for crash := 1; crash <= maxRestarts; crash++ {
		if shown() != 0 {
			t.Fatalf("a notification beside the popup (crash %d): %q", crash, srv.shown)
		}
		(*children)[crash-1].end()
		waitFor(t, "a window process started again for the request", func() bool { return count() == crash+1 })
	}
	// Past its restarts: the notification instead.
	(*children)[maxRestarts].end()
	waitFor(t, "the request's notification", func() bool { return shown() == 1 })
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.shown[0] != "bob wants to run XTerm" {
		t.Errorf("notification %q", srv.shown[0])
	}
}
