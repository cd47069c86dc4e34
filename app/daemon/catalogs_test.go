package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
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

// Picking the app for files uses the catalog a peer gave within
// catalogFresh, asks again when the kept one has no app for them (the
// peer may have shared one since), and asks when none is kept.
func TestAppsForFilesKeptCatalogs(t *testing.T) {
	host := runTestDaemon(t, nil)
	dir := filepath.Join(host.opts.AppDirs[0], "applications")
	share := func(id, mime string, on bool) {
		t.Helper()
		entry := fmt.Sprintf("[Desktop Entry]\nType=Application\nName=%s\nExec=/bin/true %%f\nMimeType=%s;\n", id, mime)
		if err := os.WriteFile(filepath.Join(dir, id+".desktop"), []byte(entry), 0o644); err != nil {
			t.Fatal(err)
		}
		host.mu.Lock()
		host.apps = appCache{} // rescan now
		host.mu.Unlock()
		if err := host.SetShared(id, on); err != nil {
			t.Fatal(err)
		}
	}
	req := newTestDaemon(t, Options{})
	ctx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- req.Run(ctx) }()
	t.Cleanup(func() { stop(); <-ran })
	waitServing(t, req)
	req.AddPeer(discovery.Peer{Fingerprint: host.Identity().Fingerprint(), Name: "bob",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: uint16(host.ControlAddr().Port)})
	files := t.TempDir()
	notes, doc := filepath.Join(files, "notes.txt"), filepath.Join(files, "doc.pdf")
	os.WriteFile(notes, []byte("notes\n"), 0o644)
	os.WriteFile(doc, []byte("%PDF-1.4\n"), 0o644)
	apps := func(file string) []string {
		t.Helper()
		cands, err := req.AppsForFiles(t.Context(), "", []string{file})
		var le *dbusapi.LaunchError
		if err != nil && !(errors.As(err, &le) && le.Outcome == dbusapi.OutcomeNotShared) {
			t.Fatalf("AppsForFiles(%s): %v", filepath.Base(file), err)
		}
		var ids []string
		for _, c := range cands {
			ids = append(ids, c.App)
		}
		return ids
	}
	share("viewer", "text/plain", true)
	for _, step := range []struct {
		name string
		do   func()
		file string
		want []string
	}{
		{"first asked", func() {}, notes, []string{"viewer"}},
		{"a type the kept catalog has no app for: asked again", func() { share("pdfs", "application/pdf", true) }, doc, []string{"pdfs"}},
		{"unshared since, still kept", func() { share("viewer", "text/plain", false) }, notes, []string{"viewer"}},
		{"dropped: asked", func() { req.cats.drop(string(host.Identity().Fingerprint())) }, notes, nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.do()
			if got := apps(step.file); !reflect.DeepEqual(got, step.want) {
				t.Errorf("apps for %s = %q, want %q", filepath.Base(step.file), got, step.want)
			}
		})
	}
}
