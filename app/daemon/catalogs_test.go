package daemon

import (
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// A peer's app list differing from the one it gave before is an
// EventPeerAppsChanged with the new list; the first list and the same
// list again are not news.
func TestPeerAppsChangedEvents(t *testing.T) {
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), subs: map[chan Event]struct{}{}}
	events := d.Events(t.Context())
	xterm := dbusapi.App{ID: "xterm", Name: "XTerm"}
	uxterm := dbusapi.App{ID: "uxterm", Name: "UXTerm"}
	for _, tc := range []struct {
		name string
		apps []dbusapi.App
		news bool
	}{
		{"first list", nil, false},
		{"XTerm shared", []dbusapi.App{xterm, uxterm}, true},
		{"the same again", []dbusapi.App{xterm, uxterm}, false},
		{"UXTerm unshared", []dbusapi.App{xterm}, true},
		{"XTerm renamed", []dbusapi.App{{ID: "xterm", Name: "Terminal"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.noteApps("SHA256:bob", tc.apps)
			select {
			case ev := <-events:
				if !tc.news {
					t.Fatalf("event %+v, want none", ev)
				}
				if ev.Kind != EventPeerAppsChanged || ev.Peer.Fingerprint != "SHA256:bob" || !reflect.DeepEqual(ev.Apps, tc.apps) {
					t.Errorf("event %+v", ev)
				}
			case <-time.After(100 * time.Millisecond):
				if tc.news {
					t.Fatal("no peer-apps-changed event")
				}
			}
		})
	}
	// A peer gone: its next list is a first one again.
	d.forgetApps("SHA256:bob")
	d.noteApps("SHA256:bob", nil)
	select {
	case ev := <-events:
		t.Errorf("event %+v after the peer was forgotten", ev)
	case <-time.After(100 * time.Millisecond):
	}
}
