package ui

import (
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

func (f *fakeBackend) Discovery() dbusapi.Discovery { return f.discovery }
func (f *fakeBackend) Self() dbusapi.Self           { return f.self }

// The peer browser shows who the user is (name, address, short
// fingerprint) and, while peers on the network cannot be found, that
// discovery is off and why, following the daemon's discovery events.
func TestPeerBrowserShowsSelfAndDiscovery(t *testing.T) {
	f := newFake()
	f.self = dbusapi.Self{Name: "alice", Fingerprint: "SHA256:alice", Short: "AX7K-2M9Q-ALIC-E000", Addresses: []string{"192.168.1.21", "fd00::21"}, Port: 7400}
	f.discovery = dbusapi.Discovery{State: dbusapi.DiscoveryNoAvahi, Err: "org.freedesktop.DBus.Error.NameHasNoOwner"}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	v := u.peers.self
	if got, want := v.you.Text, "You: alice · 192.168.1.21:7400, [fd00::21]:7400 · fingerprint AX7K-2M9Q-ALIC-E000"; got != want {
		t.Errorf("identity %q, want %q", got, want)
	}
	for _, tc := range []struct {
		state dbusapi.DiscoveryState
		want  string // "" : nothing shown
	}{
		{dbusapi.DiscoveryNoAvahi, "avahi-daemon is not running: install/start it, or add a peer by address"},
		{dbusapi.DiscoveryRunning, ""},
		{dbusapi.DiscoveryNoSystemBus, "there is no system bus"},
		{dbusapi.DiscoveryDisabled, "--no-discovery"},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			f.discovery = dbusapi.Discovery{State: tc.state}
			f.events <- daemon.Event{Kind: daemon.EventDiscoveryChanged, Discovery: f.discovery}
			f.drain(u)
			if tc.want == "" {
				if v.discovery.Visible() {
					t.Errorf("shows %q while discovery works", v.discovery.Text)
				}
				return
			}
			if !v.discovery.Visible() || !strings.Contains(v.discovery.Text, tc.want) || !strings.HasPrefix(v.discovery.Text, "Discovery is off") {
				t.Errorf("shows %q (visible %v), want %q", v.discovery.Text, v.discovery.Visible(), tc.want)
			}
		})
	}
}
