package discovery

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Peer is another instance found on the LAN. Peers are identified by
// fingerprint; the name is only what the peer announces.
type Peer struct {
	Fingerprint identity.Fingerprint
	Name        string
	Version     int
	Instance    string // DNS-SD service instance name
	Host        string // mDNS host name, e.g. "host2.local"
	Addresses   []netip.Addr
	Port        uint16
}

func (p Peer) String() string {
	return fmt.Sprintf("%q %s at %s:%d %v", p.Name, p.Fingerprint.Short(), p.Host, p.Port, p.Addresses)
}

func (p Peer) equal(q Peer) bool {
	return p.Fingerprint == q.Fingerprint && p.Name == q.Name && p.Version == q.Version &&
		p.Instance == q.Instance && p.Host == q.Host && p.Port == q.Port && slices.Equal(p.Addresses, q.Addresses)
}

// EventKind says what happened to a peer.
type EventKind int

const (
	PeerAdded EventKind = iota + 1
	PeerUpdated
	PeerRemoved
)

func (k EventKind) String() string {
	switch k {
	case PeerAdded:
		return "added"
	case PeerUpdated:
		return "updated"
	case PeerRemoved:
		return "removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change to the peer list. For PeerRemoved, Peer is the
// last known state.
type Event struct {
	Kind EventKind
	Peer Peer
}

// itemKey identifies one browse result: a service instance seen on one
// interface over one protocol.
type itemKey struct {
	iface, proto int32
	name, domain string
}

// resolution is what resolving one browse result gave.
type resolution struct {
	ann  Announcement
	host string
	addr netip.Addr
	port uint16
}

// table aggregates resolved browse results into peers by fingerprint.
// It is not safe for concurrent use.
type table struct {
	items map[itemKey]resolution
	peers map[identity.Fingerprint]Peer
}

func newTable() *table {
	return &table{items: map[itemKey]resolution{}, peers: map[identity.Fingerprint]Peer{}}
}

// set records a resolved item and returns the resulting events.
func (t *table) set(k itemKey, r resolution) []Event {
	var evs []Event
	if old, ok := t.items[k]; ok && old.ann.Fingerprint != r.ann.Fingerprint {
		delete(t.items, k)
		evs = append(evs, t.recompute(old.ann.Fingerprint)...)
	}
	t.items[k] = r
	return append(evs, t.recompute(r.ann.Fingerprint)...)
}

// remove forgets an item and returns the resulting events.
func (t *table) remove(k itemKey) []Event {
	old, ok := t.items[k]
	if !ok {
		return nil
	}
	delete(t.items, k)
	return t.recompute(old.ann.Fingerprint)
}

// clear forgets everything, reporting every peer as removed.
func (t *table) clear() []Event {
	var evs []Event
	for _, p := range t.list() {
		evs = append(evs, Event{Kind: PeerRemoved, Peer: p})
	}
	clear(t.items)
	clear(t.peers)
	return evs
}

// list returns the peers sorted by name, then fingerprint.
func (t *table) list() []Peer {
	out := make([]Peer, 0, len(t.peers))
	for _, p := range t.peers {
		p.Addresses = slices.Clone(p.Addresses)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	return out
}

// recompute rebuilds the peer fp from its items and reports the change.
func (t *table) recompute(fp identity.Fingerprint) []Event {
	var keys []itemKey
	for k, r := range t.items {
		if r.ann.Fingerprint == fp {
			keys = append(keys, k)
		}
	}
	old, had := t.peers[fp]
	if len(keys) == 0 {
		if !had {
			return nil
		}
		delete(t.peers, fp)
		return []Event{{Kind: PeerRemoved, Peer: old}}
	}
	slices.SortFunc(keys, func(a, b itemKey) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.iface, b.iface),
			cmp.Compare(a.name, b.name), cmp.Compare(a.domain, b.domain))
	})
	first := t.items[keys[0]]
	p := Peer{
		Fingerprint: fp,
		Name:        first.ann.Name,
		Version:     first.ann.Version,
		Instance:    keys[0].name,
		Host:        first.host,
		Port:        first.port,
	}
	for _, k := range keys {
		if a := t.items[k].addr; a.IsValid() && !slices.Contains(p.Addresses, a) {
			p.Addresses = append(p.Addresses, a)
		}
	}
	slices.SortFunc(p.Addresses, netip.Addr.Compare) // IPv4 first, then IPv6
	t.peers[fp] = p
	switch {
	case !had:
		return []Event{{Kind: PeerAdded, Peer: p}}
	case !old.equal(p):
		return []Event{{Kind: PeerUpdated, Peer: p}}
	}
	return nil
}
