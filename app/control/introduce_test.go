package control

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

// An introducer answers with the peers it knows, checked on arrival; a
// host without introductions refuses; a hostile list is refused whole.
func TestPeers(t *testing.T) {
	bob := identity.FingerprintOf(newSigner(t).PublicKey())
	tests := []struct {
		name string
		list []PeerInfo
		want string // error text; "" for success
	}{
		{"a list", []PeerInfo{{Fingerprint: bob, Name: "bob", Addresses: []string{"10.0.0.2", "2001:db8::2"}, Port: 42331}}, ""},
		{"empty", []PeerInfo{}, ""},
		{"a bad fingerprint", []PeerInfo{{Fingerprint: "SHA256:x", Name: "bob", Addresses: []string{"10.0.0.2"}, Port: 42331}}, "invalid fingerprint"},
		{"a zone", []PeerInfo{{Fingerprint: bob, Name: "bob", Addresses: []string{"fe80::1%eth0"}, Port: 42331}}, "without a zone"},
		{"a host name", []PeerInfo{{Fingerprint: bob, Name: "bob", Addresses: []string{"evil.example"}, Port: 42331}}, "not an IP address"},
		{"no port", []PeerInfo{{Fingerprint: bob, Name: "bob", Addresses: []string{"10.0.0.2"}}}, "no port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked Peer
			f := start(t, &handler{}, func(s *Server) {
				s.Peers = func(_ context.Context, p Peer) ([]PeerInfo, error) { asked = p; return tt.list, nil }
			})
			c := f.dial(t)
			got, err := c.Peers(context.Background())
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Peers = %v, %v; want error %q", got, err, tt.want)
				}
				return
			}
			if err != nil || len(got) != len(tt.list) {
				t.Fatalf("Peers = %v, %v", got, err)
			}
			if asked.Fingerprint != identity.FingerprintOf(f.clientID.PublicKey()) {
				t.Errorf("the host was asked for %s", asked.Fingerprint)
			}
		})
	}
	t.Run("a host that introduces no peers", func(t *testing.T) {
		c := start(t, &handler{}, nil).dial(t)
		if _, err := c.Peers(context.Background()); err == nil || !strings.Contains(err.Error(), "introduces no peers") {
			t.Fatalf("Peers = %v", err)
		}
	})
}

// FuzzPeerList: an introducer's reply is any JSON a peer sends: the
// check refuses it or returns a list within its bounds, never panics.
func FuzzPeerList(f *testing.F) {
	f.Add(`{"type":"peer-list","peers":[{"fingerprint":"SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA","name":"bob","addresses":["10.0.0.2"],"port":42331}]}`)
	f.Add(`{"type":"peer-list","peers":[{"fingerprint":"x","addresses":["fe80::1%eth0"],"port":1}]}`)
	f.Add(`{"type":"peer-list"}`)
	f.Fuzz(func(t *testing.T, js string) {
		var m Msg
		if json.Unmarshal([]byte(js), &m) != nil {
			return
		}
		list, err := checkPeerList(m.Peers)
		if err != nil {
			return
		}
		if len(list) > MaxIntroduced {
			t.Fatalf("%d peers accepted", len(list))
		}
		for _, p := range list {
			if !p.Fingerprint.Valid() || p.Port == 0 || len(p.Addresses) == 0 || len(p.Addresses) > MaxIntroducedAddrs || len(p.Name) > 63*4 {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}
