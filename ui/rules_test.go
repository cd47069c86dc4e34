package ui

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

func (f *fakeBackend) Rules() []dbusapi.Rule { return f.rules }

func (f *fakeBackend) ForgetRule(peer, app string) error {
	for i, r := range f.rules {
		if r.Peer == peer && r.App == app {
			f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			f.events <- daemon.Event{Kind: daemon.EventRulesChanged}
			return nil
		}
	}
	return nil
}

// The tray's icon and Sessions entry follow a peer's session here
// starting and ending (the daemon's events), nothing else happening.
func TestTrayFollowsIncomingSessions(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.tray.install()
	if u.tray.state != traySharing {
		t.Fatalf("icon %q before any session, want %q", u.tray.state, traySharing)
	}
	s := dbusapi.Session{ID: "s1", Direction: dbusapi.DirectionIncoming, Peer: "SHA256:bob", PeerName: "bob", App: "GIMP", State: dbusapi.StageGranted}
	for _, tc := range []struct {
		kind     daemon.EventKind
		sessions []dbusapi.Session
		icon     string
		entry    string
	}{
		{daemon.EventSessionStarted, []dbusapi.Session{s}, trayActive, "Sessions (1 running)"},
		{daemon.EventSessionEnded, nil, traySharing, "Sessions"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			f.sessions = tc.sessions
			f.events <- daemon.Event{Kind: tc.kind, Session: s}
			f.drain(u)
			if u.tray.state != tc.icon {
				t.Errorf("icon %q, want %q", u.tray.state, tc.icon)
			}
			var labels []string
			for _, i := range u.tray.menu().Items {
				labels = append(labels, i.Label)
			}
			if !strings.Contains(strings.Join(labels, "\n"), tc.entry) {
				t.Errorf("tray menu %q lacks %q", labels, tc.entry)
			}
		})
	}
}

// notificationsWithActions is fakeNotifications keeping the actions too.
type notificationsWithActions struct {
	fakeNotifications
	actions [][]string
}

func (f *notificationsWithActions) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	id, err := f.fakeNotifications.Notify(app, replaces, icon, summary, body, actions, hints, timeout)
	f.mu.Lock()
	f.actions = append(f.actions, actions)
	f.mu.Unlock()
	return id, err
}

// A session a remembered decision let in is told by a notification each
// time, whose End ends it; it is withdrawn when the session ends. A
// session the user allowed in the popup gets none.
func TestRuleSessionNotification(t *testing.T) {
	srv := &notificationsWithActions{}
	n, srvConn := notificationServer(t, srv)
	f := newFake()
	u := newTestUI(t, f, nil)
	u.b = endLocked{f} // End is clicked on the D-Bus goroutine
	u.opts.Notifier = n
	asked := dbusapi.Session{ID: "s0", Direction: dbusapi.DirectionIncoming, PeerName: "bob", App: "GIMP"}
	f.events <- daemon.Event{Kind: daemon.EventSessionStarted, Session: asked}
	f.drain(u)
	srv.mu.Lock()
	if len(srv.shown) != 0 {
		t.Fatalf("notification for a session the user allowed: %q", srv.shown)
	}
	srv.mu.Unlock()
	for round := 1; round <= 2; round++ {
		s := dbusapi.Session{ID: "s" + string(rune('0'+round)), Direction: dbusapi.DirectionIncoming, Peer: "SHA256:bob", PeerName: "bob", App: "GIMP"}
		f.mu.Lock()
		f.sessions = []dbusapi.Session{s}
		f.mu.Unlock()
		f.events <- daemon.Event{Kind: daemon.EventSessionStarted, Session: s, ByRule: true}
		f.drain(u)
		srv.mu.Lock()
		if len(srv.shown) != round || srv.shown[round-1] != "bob is running GIMP here (allowed by your rule)" {
			t.Fatalf("round %d: notifications %q", round, srv.shown)
		}
		if got := srv.actions[round-1]; !reflect.DeepEqual(got, []string{"end", "End"}) {
			t.Errorf("actions %q, want End", got)
		}
		srv.mu.Unlock()
		if round == 1 {
			// End, clicked in the notification, ends the session.
			if err := srvConn.Emit(notifyPath, notifyIface+".ActionInvoked", uint32(round), "end"); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				f.mu.Lock()
				done := len(f.ended) > 0
				f.mu.Unlock()
				if done {
					break
				}
			}
			f.mu.Lock()
			ended := append([]string(nil), f.ended...)
			f.mu.Unlock()
			if !reflect.DeepEqual(ended, []string{s.ID}) {
				t.Fatalf("ended %q after End, want %q", ended, s.ID)
			}
		} else {
			// Ended elsewhere: the notification is withdrawn.
			f.events <- daemon.Event{Kind: daemon.EventSessionEnded, Session: s}
			f.drain(u)
			srv.mu.Lock()
			closed := append([]uint32(nil), srv.closed...)
			srv.mu.Unlock()
			if !reflect.DeepEqual(closed, []uint32{2}) {
				t.Errorf("withdrawn %v, want [2]", closed)
			}
		}
	}
}

// Settings → Peers lists the remembered decisions and the blocked peers as
// they change (a CLI block, a decision remembered or revoked), without
// being reopened; Revoke revokes.
func TestSettingsFollowRulesAndBlocks(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.ShowSettings()
	s := u.settings
	if got := joined(s.blocked); !strings.Contains(got, "Nobody is blocked") {
		t.Fatalf("blocked list %q", got)
	}
	if got := joined(s.rules); !strings.Contains(got, "No remembered decisions") {
		t.Fatalf("rules list %q", got)
	}
	since := time.Date(2026, 12, 1, 11, 30, 0, 0, time.Local)
	f.blocked["SHA256:mallory"] = "mallory"
	f.rules = []dbusapi.Rule{
		{Peer: "SHA256:bob", PeerName: "bob", App: "gimp", AppName: "GIMP", Decision: dbusapi.DecisionAllow, Since: since.Unix()},
		{Peer: "SHA256:carol", PeerName: "carol", App: "xterm", AppName: "XTerm", Decision: dbusapi.DecisionDeny},
	}
	f.events <- daemon.Event{Kind: daemon.EventRulesChanged}
	f.drain(u)
	if got := joined(s.blocked); !strings.Contains(got, "mallory") {
		t.Errorf("blocked list %q lacks mallory after the block", got)
	}
	got := joined(s.rules)
	for _, want := range []string{"bob · GIMP · always allowed · since 2026-12-01 11:30", "carol · XTerm · always denied"} {
		if !strings.Contains(got, want) {
			t.Errorf("rules list lacks %q:\n%s", want, got)
		}
	}
	test.Tap(findButton(s.rules, "Revoke"))
	f.drain(u)
	got = joined(s.rules)
	if strings.Contains(got, "bob") || !strings.Contains(got, "carol") {
		t.Errorf("after revoking bob's rule: %q", got)
	}
	if !strings.Contains(s.status.Text, "bob will be asked again before running GIMP") {
		t.Errorf("status %q", s.status.Text)
	}
}

// endLocked is the fake whose EndSession takes its lock (it runs on
// another goroutine than the test's).
type endLocked struct{ *fakeBackend }

func (e endLocked) EndSession(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fakeBackend.EndSession(id)
}
