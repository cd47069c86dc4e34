package ui

import (
	"fmt"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// The freedesktop notification service.
const (
	notifyName  = "org.freedesktop.Notifications"
	notifyPath  = "/org/freedesktop/Notifications"
	notifyIface = "org.freedesktop.Notifications"
)

// Notifier shows a request as a desktop notification with Allow and Deny
// actions, for when the popup cannot be shown (no window process could be
// started), and tells of sessions a remembered decision let in.
type Notifier struct {
	conn *dbus.Conn

	mu      sync.Mutex
	answers map[uint32]func(action string)
}

// NewNotifier watches the notification service on conn (the session bus).
func NewNotifier(conn *dbus.Conn) (*Notifier, error) {
	n := &Notifier{conn: conn, answers: map[uint32]func(string){}}
	for _, member := range []string{"ActionInvoked", "NotificationClosed"} {
		if err := conn.AddMatchSignal(dbus.WithMatchInterface(notifyIface), dbus.WithMatchMember(member)); err != nil {
			return nil, fmt.Errorf("watching desktop notifications: %w", err)
		}
	}
	ch := make(chan *dbus.Signal, 16)
	conn.Signal(ch)
	go n.watch(ch)
	return n, nil
}

func (n *Notifier) watch(ch <-chan *dbus.Signal) {
	for sig := range ch {
		if len(sig.Body) < 2 {
			continue
		}
		id, ok := sig.Body[0].(uint32)
		if !ok {
			continue
		}
		n.mu.Lock()
		answer := n.answers[id]
		delete(n.answers, id)
		n.mu.Unlock()
		if answer == nil {
			continue
		}
		switch sig.Name {
		case notifyIface + ".ActionInvoked":
			action, _ := sig.Body[1].(string)
			answer(action)
		case notifyIface + ".NotificationClosed":
			// dismissed: the popup (or the timeout) still decides
		}
	}
}

// Ask shows the request; answer runs (on the D-Bus goroutine) with the
// user's choice. The returned function withdraws the notification.
func (n *Notifier) Ask(r dbusapi.Request, name string, answer func(allow bool)) (func(), error) {
	summary := fmt.Sprintf("%s wants to run %s", name, r.App)
	body := fmt.Sprintf("From %s. It would run in a sandbox on this computer.", r.From)
	if r.FirstTime {
		body += " You have not met " + name + " before."
	}
	if len(r.Files) > 0 {
		body += " " + bringsText(name, r.Files)
	}
	return n.notify(summary, body, []string{"allow", "Allow", "deny", "Deny"}, 2, func(action string) { answer(action == "allow") })
}

// Session tells that a peer's app runs here without the user having been
// asked (a remembered decision let it in), with an End action; end runs
// (on the D-Bus goroutine) when it is clicked. The returned function
// withdraws the notification (the session ended).
func (n *Notifier) Session(s dbusapi.Session, end func()) (func(), error) {
	name := s.PeerName
	if name == "" {
		name = "A peer"
	}
	summary := fmt.Sprintf("%s is running %s here (allowed by your rule)", name, s.App)
	body := "It runs in a sandbox on this computer. End stops it; Settings → Peers lists your remembered decisions."
	return n.notify(summary, body, []string{"end", "End"}, 1, func(action string) {
		if action == "end" {
			end()
		}
	})
}

// notify shows a notification with actions (key, label pairs) at an
// urgency (0 low, 1 normal, 2 critical), kept until withdrawn; onAction
// gets the key of the action clicked.
func (n *Notifier) notify(summary, body string, actions []string, urgency byte, onAction func(string)) (func(), error) {
	hints := map[string]dbus.Variant{"urgency": dbus.MakeVariant(urgency), "resident": dbus.MakeVariant(true)}
	var id uint32
	err := n.conn.Object(notifyName, notifyPath).Call(notifyIface+".Notify", 0,
		"eBrainPool", uint32(0), AppID, summary, body,
		actions, hints, int32(0)).Store(&id)
	if err != nil {
		return nil, fmt.Errorf("showing a desktop notification: %w", err)
	}
	n.mu.Lock()
	n.answers[id] = onAction
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		_, open := n.answers[id]
		delete(n.answers, id)
		n.mu.Unlock()
		if open {
			n.conn.Object(notifyName, notifyPath).Call(notifyIface+".CloseNotification", 0, id)
		}
	}, nil
}
