package control

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Introductions: a peer that a user marked as introducer is asked for
// the peers it knows (TypePeers); it answers with their fingerprints,
// names and addresses (TypePeerList), never anything of its consent
// rules. The requester pins an introduced peer only once it connected to
// the announced key, as for a discovered one.

// Message types of introductions.
const (
	TypePeers    = "peers"     // request: the peers the host knows
	TypePeerList = "peer-list" // reply: PeerList
)

// MaxIntroduced bounds a peer list; MaxIntroducedAddrs each peer's
// addresses.
const (
	MaxIntroduced      = 256
	MaxIntroducedAddrs = 8
)

// PeerInfo is one peer an introducer knows.
type PeerInfo struct {
	Fingerprint identity.Fingerprint `json:"fingerprint"`
	Name        string               `json:"name"`
	Addresses   []string             `json:"addresses"` // IP addresses (no zones: they are the introducer's)
	Port        uint16               `json:"port"`
}

// PeersFunc lists the peers this host introduces to p (Server.Peers).
type PeersFunc func(ctx context.Context, p Peer) ([]PeerInfo, error)

// checkPeerList validates a peer list from the network: valid
// fingerprints, bounded names and counts, IP addresses without zones, a
// port.
func checkPeerList(list []PeerInfo) ([]PeerInfo, error) {
	if len(list) > MaxIntroduced {
		return nil, fmt.Errorf("the peer list has %d peers, at most %d", len(list), MaxIntroduced)
	}
	out := make([]PeerInfo, 0, len(list))
	for _, p := range list {
		if !p.Fingerprint.Valid() {
			return nil, fmt.Errorf("the peer list has an invalid fingerprint %q", p.Fingerprint)
		}
		if p.Port == 0 || len(p.Addresses) == 0 || len(p.Addresses) > MaxIntroducedAddrs {
			return nil, fmt.Errorf("peer %s in the list has no port or 0 or more than %d addresses", p.Fingerprint, MaxIntroducedAddrs)
		}
		for _, a := range p.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				return nil, fmt.Errorf("peer %s in the list has the address %q, not an IP address without a zone", p.Fingerprint, a)
			}
		}
		p.Name = boundName(p.Name)
		out = append(out, p)
	}
	return out, nil
}

// Peers asks the host for the peers it introduces.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	ch, done, err := c.call(ctx, &Msg{Type: TypePeers})
	if err != nil {
		return nil, err
	}
	defer done()
	m, err := c.reply(ctx, ch, TypePeerList, nil)
	if err != nil {
		return nil, err
	}
	return checkPeerList(m.Peers)
}
