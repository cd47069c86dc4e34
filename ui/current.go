package ui

import "github.com/ebrainpool/ebrainpool/app/daemon"

// peerAppsChanged shows a peer's new app list in the tray's submenu and,
// when it is the peer shown, in the peer browser (on the Fyne thread).
func (u *UI) peerAppsChanged(ev daemon.Event) {
	fp := ev.Peer.Fingerprint
	if !u.tray.off {
		u.tray.setApps(fp, ev.Apps, nil)
	}
	pb := u.peers
	if pb == nil {
		return
	}
	pb.appsFor[fp] = ev.Apps
	if p, ok := pb.selected(); ok && p.Fingerprint == fp {
		pb.showApps(p, ev.Apps, nil)
	}
}
