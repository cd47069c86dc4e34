package dbusapi

import (
	"context"
	"errors"

	"github.com/godbus/dbus/v5"
)

// Reach says whether a peer added by address answered its last connect.
type Reach string

const (
	// ReachUnknown: not tried yet since it was added or the daemon started.
	ReachUnknown Reach = "unknown"
	// ReachReachable: the last connect succeeded, with the pinned key.
	ReachReachable Reach = "reachable"
	// ReachUnreachable: the last connect failed (retried with backoff).
	ReachUnreachable Reach = "unreachable"
	// ReachKeyChanged: something answered at the address with another
	// key than the one confirmed for it: refused.
	ReachKeyChanged Reach = "key-changed"
)

// Probed is what a peer at an address showed before the user confirmed
// its key (ProbePeer): its name and the fingerprint of its key.
type Probed struct {
	Address     string // HOST:PORT, as the daemon normalized it
	Fingerprint string
	Short       string
	Name        string
	Apps        int32 // how many apps it shares
	// Known is true when this key is already pinned (met before).
	Known bool
}

// AddedPeer is a peer added by address and how it answers.
type AddedPeer struct {
	Address     string
	Fingerprint string
	Short       string
	Name        string
	Reach       Reach
	LastSeen    int64  // unix seconds of the last successful connect, 0 never
	Error       string // why the last connect failed ("" when it did not)
}

// AddressBackend is a Backend that adds peers by address: ProbePeer
// connects and shows the peer's key, AddPeer pins the key the user
// confirmed (a fingerprint or its short form; it must be what the peer at
// address shows) and keeps the peer across restarts, RemovePeer forgets
// it again (by address, name or fingerprint).
type AddressBackend interface {
	Backend
	ProbePeer(ctx context.Context, address string) (Probed, error)
	AddPeerAddress(ctx context.Context, address, fingerprint string) (AddedPeer, error)
	RemovePeer(peer string) error
	AddedPeers() []AddedPeer
}

var errNoAddress = errors.New("this eBrainPool cannot add peers by address")

func (o object) addr() (AddressBackend, *dbus.Error) {
	ab, ok := o.b.(AddressBackend)
	if !ok {
		return nil, dbusErr(errNoAddress)
	}
	return ab, nil
}

// ProbePeer connects to address (HOST[:PORT]; the default control port
// without one) and returns the name and key fingerprint the peer there
// shows, without pinning it.
func (o object) ProbePeer(address string) (Probed, *dbus.Error) {
	ab, derr := o.addr()
	if derr != nil {
		return Probed{}, derr
	}
	p, err := ab.ProbePeer(context.Background(), address)
	return p, dbusErr(err)
}

// AddPeer adds the peer at address, pinning its key, which must be the
// one given (as the user confirmed it: a fingerprint or its short form).
func (o object) AddPeer(address, fingerprint string) (AddedPeer, *dbus.Error) {
	ab, derr := o.addr()
	if derr != nil {
		return AddedPeer{}, derr
	}
	p, err := ab.AddPeerAddress(context.Background(), address, fingerprint)
	return p, dbusErr(err)
}

// RemovePeer forgets a peer added by address.
func (o object) RemovePeer(peer string) *dbus.Error {
	ab, derr := o.addr()
	if derr != nil {
		return derr
	}
	return dbusErr(ab.RemovePeer(peer))
}

// AddedPeers lists the peers added by address.
func (o object) AddedPeers() ([]AddedPeer, *dbus.Error) {
	ab, derr := o.addr()
	if derr != nil {
		return nil, derr
	}
	return ab.AddedPeers(), nil
}

// ProbePeer asks the daemon what the peer at address shows.
func (c *Client) ProbePeer(ctx context.Context, address string) (Probed, error) {
	var p Probed
	return p, c.call(ctx, "ProbePeer", &p, address)
}

// AddPeer asks the daemon to add the peer at address with the confirmed
// fingerprint.
func (c *Client) AddPeer(ctx context.Context, address, fingerprint string) (AddedPeer, error) {
	var p AddedPeer
	return p, c.call(ctx, "AddPeer", &p, address, fingerprint)
}

// RemovePeer asks the daemon to forget a peer added by address.
func (c *Client) RemovePeer(ctx context.Context, peer string) error {
	return c.call(ctx, "RemovePeer", nil, peer)
}

// AddedPeers lists the peers added by address.
func (c *Client) AddedPeers(ctx context.Context) ([]AddedPeer, error) {
	var p []AddedPeer
	return p, c.call(ctx, "AddedPeers", &p)
}

// IntroducerBackend is a Backend whose user can mark peers as
// introducers: such a peer is asked for the peers it knows, listed as
// introduced by it (and pinned on first contact, as discovered ones).
type IntroducerBackend interface {
	Backend
	SetIntroducer(peer string, on bool) error
}

// SetIntroducer marks (or unmarks) a peer as introducer.
func (o object) SetIntroducer(peer string, on bool) *dbus.Error {
	ib, ok := o.b.(IntroducerBackend)
	if !ok {
		return dbusErr(errors.New("this eBrainPool has no introducers"))
	}
	return dbusErr(ib.SetIntroducer(peer, on))
}

// SetIntroducer asks the daemon to mark (or unmark) a peer as introducer.
func (c *Client) SetIntroducer(ctx context.Context, peer string, on bool) error {
	return c.call(ctx, "SetIntroducer", nil, peer, on)
}
