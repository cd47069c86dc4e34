package ui

import (
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// The host always knows who is in: the tray and the sessions window follow
// the daemon's session events, and a session a remembered decision let in
// (nobody was asked) is shown as a notification with an End action for as
// long as it runs.

// sessionEvent follows a peer's session starting or ending here (on the
// Fyne thread).
func (u *UI) sessionEvent(ev daemon.Event) {
	u.refreshSessions()
	if u.child != nil {
		return // the notifications are the app's
	}
	id := ev.Session.ID
	switch {
	case ev.Kind == daemon.EventSessionStarted && ev.ByRule:
		n := u.opts.Notifier
		if n == nil {
			u.log.Info("a remembered decision let a peer in; no desktop notification service to say so",
				"peer", ev.Session.PeerName, "app", ev.Session.App)
			return
		}
		withdraw, err := n.Session(ev.Session, func() {
			go func() {
				if err := u.b.EndSession(id); err != nil {
					u.log.Info("ending a session from its notification", "id", id, "err", err)
				}
			}()
		})
		if err != nil {
			u.log.Info("no desktop notification for the session", "err", err)
			return
		}
		u.told[id] = withdraw
	case ev.Kind == daemon.EventSessionEnded:
		if withdraw, ok := u.told[id]; ok {
			delete(u.told, id)
			withdraw()
		}
	}
}

// rulesChanged follows a change of the remembered decisions or the block
// list (answered with Remember, `ebrainpool block`, `forget`, ...).
func (u *UI) rulesChanged() {
	if u.settings != nil {
		u.settings.loadPeers()
	}
}

// Rules are the app's remembered decisions (the window process asks
// through the app).
func (s *AppService) Rules(_ int, reply *[]dbusapi.Rule) error {
	*reply = s.b().Rules()
	return nil
}

// ForgetRuleArgs revokes a remembered decision (ForgetRule).
type ForgetRuleArgs struct{ Peer, App string }

// ForgetRule revokes a remembered decision.
func (s *AppService) ForgetRule(a ForgetRuleArgs, _ *bool) error {
	return s.b().ForgetRule(a.Peer, a.App)
}

func (r *remoteBackend) Rules() []dbusapi.Rule {
	var out []dbusapi.Rule
	r.get("Rules", &out)
	return out
}

func (r *remoteBackend) ForgetRule(peer, app string) error {
	return r.call("ForgetRule", ForgetRuleArgs{Peer: peer, App: app}, new(bool))
}
