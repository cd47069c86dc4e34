package ui

import (
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Screenshots of what issue 12 added: the peer browser with the user's
// identity and discovery off, Settings → Peers with the remembered
// decisions.
func TestScreenshotsOfWhoIsIn(t *testing.T) {
	t.Run("peers, discovery off", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		f.self = dbusapi.Self{Name: "me", Fingerprint: "SHA256:me", Short: "Q4TZ-7KDN-M2XP-9WHC", Addresses: []string{"192.168.1.20"}, Port: 42331}
		f.discovery = dbusapi.Discovery{State: dbusapi.DiscoveryNoAvahi}
		u.ShowPeers()
		u.peers.selectPeer("SHA256:alice")
		u.peers.sortAndFilter()
		shoot(t, u.peers.win, fyne.NewSize(820, 520), "peer-browser-discovery-off")
	})
	t.Run("settings, remembered decisions", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		f.pins = []identity.Pin{{Fingerprint: "SHA256:bob", Name: "bob", FirstSeen: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}}
		f.blocked["SHA256:mallory"] = "mallory"
		f.rules = []dbusapi.Rule{
			{Peer: "SHA256:bob", PeerName: "bob", App: "org.gimp.GIMP", AppName: "GIMP", Decision: dbusapi.DecisionAllow, Since: time.Date(2026, 11, 20, 14, 5, 0, 0, time.Local).Unix()},
			{Peer: "SHA256:Carol", PeerName: "Carol", App: "xterm", AppName: "XTerm", Decision: dbusapi.DecisionDeny, Since: time.Date(2026, 11, 21, 9, 40, 0, 0, time.Local).Unix()},
		}
		u.ShowSettings()
		tabs := first(u.settings.win.Content(), func(*container.AppTabs) bool { return true })
		if tabs == nil {
			t.Fatal("no tabs in Settings")
		}
		tabs.SelectIndex(len(tabs.Items) - 1)
		if tabs.Selected().Text != "Peers" {
			t.Fatalf("last tab %q, want Peers", tabs.Selected().Text)
		}
		shoot(t, u.settings.win, fyne.NewSize(640, 520), "settings-remembered-decisions")
	})
}
