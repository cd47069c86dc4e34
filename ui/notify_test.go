package ui

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// fakeNotifications is a notification server on a private bus.
type fakeNotifications struct {
	mu     sync.Mutex
	shown  []string // summaries
	bodies []string
	closed []uint32
}

func (f *fakeNotifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shown = append(f.shown, summary)
	f.bodies = append(f.bodies, body)
	return uint32(len(f.shown)), nil
}

func (f *fakeNotifications) CloseNotification(id uint32) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, id)
	return nil
}

// privateBus starts a dbus-daemon for the test and returns two
// connections to it.
func privateBus(t *testing.T) (server, client *dbus.Conn) {
	t.Helper()
	bus := testenv.PrivateBus(t)
	dial := func() *dbus.Conn {
		c, err := dbus.Connect(bus.Addr)
		if err != nil {
			t.Fatalf("connecting to the private bus: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return dial(), dial()
}

// notificationServer exports srv as the notification service on a private
// bus and returns a Notifier using it, and the server's connection (to
// emit its signals).
func notificationServer(t *testing.T, srv any) (*Notifier, *dbus.Conn) {
	t.Helper()
	srvConn, cliConn := privateBus(t)
	if err := srvConn.Export(srv, notifyPath, notifyIface); err != nil {
		t.Fatal(err)
	}
	if _, err := srvConn.RequestName(notifyName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	n, err := NewNotifier(cliConn)
	if err != nil {
		t.Fatal(err)
	}
	return n, srvConn
}

// A request is a desktop notification only when no popup can show it
// (here: the window process cannot be started); its Allow and Deny answer
// it, and it is withdrawn when the request is resolved elsewhere. A
// popup on screen gets no notification beside it.
func TestNotifierAnswersThePrompt(t *testing.T) {
	srv := &fakeNotifications{}
	n, srvConn := notificationServer(t, srv)
	start := time.Unix(1_800_000_000, 0)
	req := dbusapi.Request{ID: "req-1", Peer: "SHA256:bob", PeerName: "bob", From: "10.0.0.2", App: "GIMP", Deadline: start.Add(30 * time.Second).Unix()}
	t.Run("popup shown", func(t *testing.T) {
		u := newTestUI(t, newFake(), &fakeClock{start})
		u.opts.Notifier = n
		u.showPrompt(req)
		if u.prompts["req-1"] == nil {
			t.Fatal("no popup")
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.shown) != 0 {
			t.Errorf("a notification beside the popup: %q", srv.shown)
		}
	})
	for _, tc := range []struct {
		name   string
		action string
		want   []answer
	}{
		{"allow", "allow", []answer{{"req-1", true, false, false}}},
		{"deny", "deny", []answer{{"req-1", false, false, false}}},
		{"resolved elsewhere", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			u := newTestUI(t, f, &fakeClock{start})
			u.opts.Notifier = n
			u.win = newWindowProc(u, []string{"/nonexistent/ebrainpool", "gui-windows"})
			u.showPrompt(req)
			srv.mu.Lock()
			id := uint32(len(srv.shown))
			summary := ""
			if id > 0 {
				summary = srv.shown[id-1]
			}
			srv.mu.Unlock()
			if summary != "bob wants to run GIMP" {
				t.Fatalf("notification summary %q", summary)
			}
			if tc.action == "" {
				f.events <- daemon.Event{Kind: daemon.EventRequestResolved, Request: dbusapi.Request{ID: "req-1"}}
				f.drain(u)
				srv.mu.Lock()
				closed := append([]uint32(nil), srv.closed...)
				srv.mu.Unlock()
				if len(closed) == 0 || closed[len(closed)-1] != id {
					t.Errorf("notification %d not withdrawn (closed %v)", id, closed)
				}
				return
			}
			if err := srvConn.Emit(notifyPath, notifyIface+".ActionInvoked", id, tc.action); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				f.mu.Lock()
				n := len(f.answers)
				f.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !reflect.DeepEqual(f.answers, tc.want) {
				t.Errorf("answers %+v, want %+v", f.answers, tc.want)
			}
		})
	}
}
