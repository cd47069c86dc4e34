package ui

import (
	"fmt"

	"fyne.io/fyne/v2"
)

// Show opens a window by name: peers, sessions or settings (anything else
// opens nothing).
func (u *UI) Show(name string) {
	switch name {
	case "peers":
		u.ShowPeers()
	case "sessions":
		u.ShowSessions()
	case "settings":
		u.ShowSettings()
	}
}

// ShowPeers opens the peer browser.
func (u *UI) ShowPeers() {
	if u.win != nil {
		u.win.send(Message{Window: "peers"})
		return
	}
	if u.peers == nil {
		u.peers = newPeerBrowser(u)
	}
	u.showWindow(u.peers.win)
}

// ShowSessions opens the sessions window.
func (u *UI) ShowSessions() {
	if u.win != nil {
		u.win.send(Message{Window: "sessions"})
		return
	}
	if u.sessions == nil {
		u.sessions = newSessionsView(u)
	} else {
		u.sessions.refresh()
	}
	u.sessions.visible = true
	u.showWindow(u.sessions.win)
}

// ShowSettings opens the settings window.
func (u *UI) ShowSettings() {
	if u.win != nil {
		u.win.send(Message{Window: "settings"})
		return
	}
	if u.settings == nil {
		u.settings = newSettingsView(u)
	} else {
		u.settings.load()
	}
	u.showWindow(u.settings.win)
}

// sharingChanged follows the daemon's sharing becoming available (or its
// cause changing): the tray and Settings read it again.
func (u *UI) sharingChanged() {
	if u.settings != nil {
		u.settings.refreshSharing()
	}
	u.tray.update()
}

// showPeer opens the peer browser on one peer (the tray's "Show in peer
// browser").
func (u *UI) showPeer(fp string) {
	if u.win != nil {
		u.win.send(Message{Window: "peers", Peer: fp})
		return
	}
	u.ShowPeers()
	u.peers.selectPeer(fp)
	u.peers.sortAndFilter()
}

// setUpSharing runs the one-time setup from the tray: in Settings, which
// shows its progress and outcome.
func (u *UI) setUpSharing() {
	if u.win != nil {
		u.win.send(Message{SetUp: true})
		return
	}
	u.ShowSettings()
	u.settings.setUp()
}

// settingUp reports whether the one-time setup runs (from Settings, here
// or in the window process).
func (u *UI) settingUp() bool {
	if u.win != nil {
		return u.win.settingUp.Load() > 0
	}
	return u.settings != nil && u.settings.settingUp
}

// setSharing turns sharing on or off (tray menu).
func (u *UI) setSharing(on bool) {
	s := u.b.Settings()
	s.Sharing = on
	if err := u.b.SaveSettings(s); err != nil {
		u.notifyError(fmt.Errorf("turning sharing %s: %w", onOff(on), err))
	}
	if u.settings != nil {
		u.settings.sharing.SetChecked(u.b.Settings().Sharing)
	}
	if u.win != nil {
		u.win.tell(Message{SharingSet: true})
	}
	u.tray.update()
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// notifyError tells the user about an error outside any window.
func (u *UI) notifyError(err error) {
	u.log.Warn("ui", "err", err)
	u.app.SendNotification(fyne.NewNotification("eBrainPool", sentence(err.Error())))
}
