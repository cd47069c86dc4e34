package ui

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// A peer's app list changing (the daemon's peer-apps-changed) shows at
// once in the tray's submenu and in the peer browser showing that peer:
// an app shared appears, an app unshared goes.
func TestListsFollowPeerAppsChanged(t *testing.T) {
	f := newFake()
	bob := peer("bob", "bob-laptop", "verified")
	f.peers = []dbusapi.Peer{bob}
	f.apps[bob.Fingerprint] = nil
	u := newTestUI(t, f, nil)
	u.tray.install()
	u.ShowPeers()
	u.peers.selectPeer(bob.Fingerprint)
	submenu := func() []string {
		var out []string
		for _, i := range u.tray.menu().Items[0].ChildMenu.Items {
			out = append(out, i.Label)
		}
		return out
	}
	if got := submenu(); !reflect.DeepEqual(got, []string{"Shares no apps", "", "Show in peer browser"}) {
		t.Fatalf("bob's submenu before: %q", got)
	}
	for _, tc := range []struct {
		name    string
		apps    []dbusapi.App
		menu    []string
		browser string
	}{
		{"XTerm shared", []dbusapi.App{{ID: "xterm", Name: "XTerm"}, {ID: "uxterm", Name: "UXTerm"}}, []string{"XTerm", "UXTerm", "", "Show in peer browser"}, "UXTerm"},
		{"UXTerm unshared", []dbusapi.App{{ID: "xterm", Name: "XTerm"}}, []string{"XTerm", "", "Show in peer browser"}, "XTerm"},
		{"nothing shared", nil, []string{"Shares no apps", "", "Show in peer browser"}, "does not share any apps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.events <- daemon.Event{Kind: daemon.EventPeerAppsChanged, Peer: dbusapi.Peer{Fingerprint: bob.Fingerprint}, Apps: tc.apps}
			f.drain(u)
			if got := submenu(); !reflect.DeepEqual(got, tc.menu) {
				t.Errorf("bob's submenu %q, want %q", got, tc.menu)
			}
			got := joined(u.peers.apps) + "\n" + u.peers.appsNote.Text
			if !strings.Contains(got, tc.browser) {
				t.Errorf("peer browser shows %q, want %q", got, tc.browser)
			}
			if tc.name == "UXTerm unshared" && strings.Contains(got, "UXTerm") {
				t.Errorf("peer browser still lists UXTerm: %q", got)
			}
		})
	}
}
