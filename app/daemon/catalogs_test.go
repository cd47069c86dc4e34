package daemon

import (
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
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

// A peer's catalog is used again for catalogFresh after it came, then
// asked for again; a failed fetch or the peer going away drops it.
func TestKeptCatalogs(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	apps := []control.AppInfo{{ID: "xterm", Name: "XTerm", MimeTypes: []string{"text/plain"}}}
	for _, tc := range []struct {
		name  string
		after time.Duration
		drop  bool
		want  bool
	}{
		{"at once", 0, false, true},
		{"a second later", time.Second, false, true},
		{"just before it is stale", catalogFresh - time.Millisecond, false, true},
		{"stale", catalogFresh, false, false},
		{"the clock went back", -time.Second, false, false},
		{"dropped", time.Second, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c catalogs
			c.keep("SHA256:bob", apps, at)
			if tc.drop {
				c.drop("SHA256:bob")
			}
			got, ok := c.fresh("SHA256:bob", at.Add(tc.after))
			if ok != tc.want || (ok && !reflect.DeepEqual(got, apps)) {
				t.Errorf("fresh = %v, %t; want %t", got, ok, tc.want)
			}
			if _, ok := c.fresh("SHA256:carol", at); ok {
				t.Error("a catalog for a peer that never gave one")
			}
		})
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d.cats.keep("SHA256:bob", apps, time.Now())
	d.forgetApps("SHA256:bob")
	if _, ok := d.cats.fresh("SHA256:bob", time.Now()); ok {
		t.Error("a peer gone away still has its catalog kept")
	}
}
