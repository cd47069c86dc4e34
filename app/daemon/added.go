package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

// Peers added by address (`ebrainpool peer add`, "Add peer by address…",
// --peer): for peers mDNS does not reach (another subnet, a VPN). Each is
// kept in the state directory with the key the user confirmed for it,
// connected to again and again (a check every addedRecheck while it
// answers, with backoff from addedRetryMin to addedRetryMax while it does
// not), and refused as "key changed" when something else answers there.

var _ dbusapi.AddressBackend = (*Daemon)(nil)

// How often an added peer is connected to (variables for tests).
var (
	addedRecheck  = 60 * time.Second
	addedRetryMin = 2 * time.Second
	addedRetryMax = 5 * time.Minute
	// addedTimeout bounds one connect (resolving, TCP, SSH, the catalog).
	addedTimeout = 10 * time.Second
)

// ErrAddressKeyChanged is the error for an added peer's address where a
// key other than the confirmed one answers.
var ErrAddressKeyChanged = fmt.Errorf("another key answers at this address: %w", identity.ErrKeyChanged)

// added is one peer added by address (guarded by Daemon.mu).
type added struct {
	cfg config.AddedPeer // as saved; Fingerprint "" until a --peer given by its short form first answered
	ref identity.KeyRef  // the key the user gave
	// reach and why it failed; addr is the IP the last connect reached.
	reach dbusapi.Reach
	err   string
	addr  netip.Addr
	// wake asks its watcher for a connect now; stop ends the watcher.
	wake chan struct{}
	stop context.CancelFunc
}

// addedState is the watchers' context while Run serves (guarded by
// Daemon.mu), and the watchers Run waits for; intro the introductions
// (introduce.go), guarded by Daemon.mu too.
type addedState struct {
	ctx       context.Context
	stopIntro context.CancelFunc // ends watchIntroducers
	running   sync.WaitGroup
	intro     introState
}

// loadAdded reads the saved added peers (New).
func (d *Daemon) loadAdded() error {
	saved, err := config.LoadPeers(d.opts.Dirs.PeersFile())
	if err != nil {
		return err
	}
	if err := d.loadIntroducers(); err != nil {
		return err
	}
	for _, p := range saved {
		ref, err := identity.ParseKeyRef(p.Fingerprint)
		if err != nil {
			return fmt.Errorf("%s: peer %s: %w", d.opts.Dirs.PeersFile(), p.Address, err)
		}
		d.added[p.Address] = &added{cfg: p, ref: ref, reach: dbusapi.ReachUnknown, wake: make(chan struct{}, 1)}
	}
	return nil
}

// saveAddedLocked writes the added peers (d.mu held).
func (d *Daemon) saveAddedLocked() error {
	var out []config.AddedPeer
	for _, a := range d.added {
		if a.cfg.Fingerprint != "" || !a.ref.IsZero() {
			c := a.cfg
			if c.Fingerprint == "" {
				c.Fingerprint = a.ref.String()
			}
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b config.AddedPeer) int { return strings.Compare(a.Address, b.Address) })
	return config.SavePeers(d.opts.Dirs.PeersFile(), out)
}

// startAdded starts a watcher for every added peer, on ctx (Run).
func (d *Daemon) startAdded(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addedRun.ctx = ctx
	for _, a := range d.added {
		d.watchLocked(a)
	}
	ictx, stop := context.WithCancel(ctx)
	d.addedRun.stopIntro = stop
	d.addedRun.running.Add(1)
	go func() {
		defer d.addedRun.running.Done()
		d.watchIntroducers(ictx)
	}()
}

// stopAdded ends the watchers and waits for them (Run's end).
func (d *Daemon) stopAdded() {
	d.mu.Lock()
	d.addedRun.ctx = nil
	if d.addedRun.stopIntro != nil {
		d.addedRun.stopIntro()
	}
	for _, a := range d.added {
		if a.stop != nil {
			a.stop()
			a.stop = nil
		}
	}
	d.mu.Unlock()
	d.addedRun.running.Wait()
}

// watchLocked starts a's watcher if Run serves and it has none (d.mu held).
func (d *Daemon) watchLocked(a *added) {
	if d.addedRun.ctx == nil || a.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(d.addedRun.ctx)
	a.stop = stop
	d.addedRun.running.Add(1)
	go func() {
		defer d.addedRun.running.Done()
		d.watch(ctx, a)
	}()
}

// watch connects to a at once, then again after addedRecheck while it
// answers and with doubling delays while it does not.
func (d *Daemon) watch(ctx context.Context, a *added) {
	retry := addedRetryMin
	var delay time.Duration
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.wake:
			t.Stop()
		case <-t.C:
		}
		if d.checkAdded(ctx, a) {
			retry, delay = addedRetryMin, addedRecheck
		} else {
			delay, retry = retry, min(2*retry, addedRetryMax)
		}
	}
}

// checkAdded connects to a, records the outcome and reports success.
func (d *Daemon) checkAdded(ctx context.Context, a *added) bool {
	d.mu.Lock()
	cfg, ref := a.cfg, a.ref
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, addedTimeout)
	defer cancel()
	c, _, err := d.connectAdded(ctx, cfg, ref)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return false // stopping
	}
	d.mu.Lock()
	if d.added[cfg.Address] != a {
		d.mu.Unlock()
		if c != nil {
			c.Close()
		}
		return false // removed meanwhile
	}
	before := a.reach
	if err != nil {
		a.reach, a.err = dbusapi.ReachUnreachable, explain(cfg.Address, err).Error()
		if errors.Is(err, identity.ErrKeyChanged) || errors.Is(err, identity.ErrFingerprintMismatch) {
			a.reach = dbusapi.ReachKeyChanged
			if cfg.Fingerprint != "" {
				d.changed[identity.Fingerprint(cfg.Fingerprint)] = true
			}
		}
		d.mu.Unlock()
		if before != a.reach {
			d.log.Warn("a peer added by address does not answer", "address", cfg.Address, "err", err)
			d.publishAdded(cfg.Address)
		}
		return false
	}
	defer c.Close()
	fp := identity.FingerprintOf(c.HostKey)
	first := a.cfg.Fingerprint == ""
	a.cfg.Fingerprint, a.cfg.Name, a.cfg.LastSeen = string(fp), c.Name, time.Now().UTC().Truncate(time.Second)
	a.reach, a.err = dbusapi.ReachReachable, ""
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a.addr, _ = netip.AddrFromSlice(tcp.IP)
		a.addr = a.addr.Unmap().WithZone(tcp.Zone)
	}
	if first {
		a.ref = identity.RefOf(fp)
	}
	err = d.saveAddedLocked()
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("saving the peers added by address", "err", err)
	}
	if first {
		// A --peer given by its short form: the key that matches it is
		// the one the user meant; pinned now.
		if _, _, err := d.pins.Observe(c.Name, c.HostKey); err != nil {
			d.log.Warn("pinning a peer added by address", "address", cfg.Address, "err", err)
		}
	}
	if before != dbusapi.ReachReachable || first {
		d.log.Info("a peer added by address answers", "address", cfg.Address, "name", c.Name, "fingerprint", fp)
		d.publishAdded(cfg.Address)
	}
	return true
}

// connectAdded dials an added peer: with its confirmed key when it has
// one (a pinned peer showing another key is a key change), else as a
// probe accepting only a key that matches ref (any key for the zero ref:
// ProbePeer of a new address). It returns the client
// (its catalog asked, so its name is known) and the number of apps.
func (d *Daemon) connectAdded(ctx context.Context, cfg config.AddedPeer, ref identity.KeyRef) (*control.Client, int, error) {
	cc := control.ClientConfig{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Timeout: addedTimeout}
	if cfg.Fingerprint != "" {
		fp := identity.Fingerprint(cfg.Fingerprint)
		cc.Expect = fp
		verify := d.verify(discovery.Peer{Fingerprint: fp, Name: cfg.Name})
		cc.Verify = func(key ssh.PublicKey) error {
			if got := identity.FingerprintOf(key); got != fp {
				return fmt.Errorf("%s was added with the key %s, now %s answers there: %w", cfg.Address, fp.Short(), got.Short(), ErrAddressKeyChanged)
			}
			return verify(key)
		}
	} else {
		cc.Probe = true
		cc.Verify = func(key ssh.PublicKey) error {
			if got := identity.FingerprintOf(key); !ref.IsZero() && !ref.Matches(got) {
				return fmt.Errorf("the peer at %s shows the key %s, not the %s given: %w", cfg.Address, got.Short(), ref, identity.ErrFingerprintMismatch)
			}
			return nil
		}
	}
	c, err := control.Dial(ctx, cfg.Address, cc)
	if err != nil {
		return nil, 0, err
	}
	apps, err := c.Catalog(ctx)
	var refused *control.RefusedError
	if errors.As(err, &refused) {
		// It answered with its verified key (and its name), and shares
		// nothing now: reachable.
		return c, 0, nil
	}
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, len(apps), nil
}

// ProbePeer connects to the peer at address and shows its name and key
// without pinning it. At an address added before, another key than the
// confirmed one is refused as a key change.
func (d *Daemon) ProbePeer(ctx context.Context, address string) (dbusapi.Probed, error) {
	addr, err := config.NormalizePeerAddress(address)
	if err != nil {
		return dbusapi.Probed{}, err
	}
	d.mu.Lock()
	var cfg config.AddedPeer
	var ref identity.KeyRef
	if a := d.added[addr]; a != nil {
		cfg, ref = a.cfg, a.ref
	}
	d.mu.Unlock()
	cfg.Address = addr
	ctx, cancel := context.WithTimeout(ctx, addedTimeout)
	defer cancel()
	var c *control.Client
	var n int
	if cfg.Fingerprint != "" || !ref.IsZero() {
		c, n, err = d.connectAdded(ctx, cfg, ref)
	} else {
		c, n, err = d.connectAdded(ctx, cfg, identity.KeyRef{})
	}
	if err != nil {
		return dbusapi.Probed{}, explain(addr, err)
	}
	defer c.Close()
	fp := identity.FingerprintOf(c.HostKey)
	_, known := d.pins.Lookup(fp)
	return dbusapi.Probed{Address: addr, Fingerprint: string(fp), Short: fp.Short(), Name: c.Name, Apps: int32(n), Known: known}, nil
}

// AddPeerAddress adds the peer at address, whose key must be the one the user
// confirmed (fingerprint: the full fingerprint or its short form): it is
// pinned, saved, listed and connected to from now on. An address added
// before with another key is refused (remove it first).
func (d *Daemon) AddPeerAddress(ctx context.Context, address, fingerprint string) (dbusapi.AddedPeer, error) {
	addr, err := config.NormalizePeerAddress(address)
	if err != nil {
		return dbusapi.AddedPeer{}, err
	}
	ref, err := identity.ParseKeyRef(fingerprint)
	if err != nil {
		return dbusapi.AddedPeer{}, fmt.Errorf("the confirmed key: %w", err)
	}
	d.mu.Lock()
	if a := d.added[addr]; a != nil && a.cfg.Fingerprint != "" && !ref.Matches(identity.Fingerprint(a.cfg.Fingerprint)) {
		d.mu.Unlock()
		return dbusapi.AddedPeer{}, fmt.Errorf("%s was added with the key %s, not %s (if its key really changed, `ebrainpool peer remove %s` first): %w",
			addr, identity.Fingerprint(a.cfg.Fingerprint).Short(), ref.Short(), addr, ErrAddressKeyChanged)
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, addedTimeout)
	defer cancel()
	c, _, err := d.connectAdded(ctx, config.AddedPeer{Address: addr}, ref)
	if err != nil {
		return dbusapi.AddedPeer{}, explain(addr, err)
	}
	defer c.Close()
	if _, _, err := d.pins.Observe(c.Name, c.HostKey); err != nil {
		return dbusapi.AddedPeer{}, err
	}
	fp := identity.FingerprintOf(c.HostKey)
	now := time.Now().UTC().Truncate(time.Second)
	a := &added{cfg: config.AddedPeer{Address: addr, Fingerprint: string(fp), Name: c.Name, Added: now, LastSeen: now},
		ref: identity.RefOf(fp), reach: dbusapi.ReachReachable, wake: make(chan struct{}, 1)}
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a.addr, _ = netip.AddrFromSlice(tcp.IP)
		a.addr = a.addr.Unmap().WithZone(tcp.Zone)
	}
	d.mu.Lock()
	if old := d.added[addr]; old != nil {
		a.cfg.Added = old.cfg.Added
		if old.stop != nil {
			old.stop()
		}
	}
	d.added[addr] = a
	delete(d.changed, fp)
	err = d.saveAddedLocked()
	d.watchLocked(a)
	view := d.addedViewLocked(a)
	d.mu.Unlock()
	if err != nil {
		return dbusapi.AddedPeer{}, err
	}
	d.log.Info("added a peer by address", "address", addr, "name", c.Name, "fingerprint", fp)
	d.publishAdded(addr)
	return view, nil
}

// AddAddress adds a peer given at start-up (--peer KEY@HOST[:PORT]=NAME):
// the key given is the confirmation; a key given by its short form is
// pinned once the peer showing a matching key first answers. Run connects
// to it.
func (d *Daemon) AddAddress(ref identity.KeyRef, address, name string) error {
	addr, err := config.NormalizePeerAddress(address)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a := d.added[addr]; a != nil {
		if a.cfg.Fingerprint != "" && ref.Matches(identity.Fingerprint(a.cfg.Fingerprint)) {
			if name != "" && a.cfg.Name == "" {
				a.cfg.Name = name
			}
			return nil // known already
		}
		if a.stop != nil {
			a.stop()
		}
		d.log.Warn("--peer gives another key for an address added before: using the one given", "address", addr, "was", a.cfg.Fingerprint, "now", ref)
	}
	now := time.Now().UTC().Truncate(time.Second)
	a := &added{cfg: config.AddedPeer{Address: addr, Fingerprint: string(ref.Full()), Name: name, Added: now}, ref: ref, reach: dbusapi.ReachUnknown, wake: make(chan struct{}, 1)}
	if host, _, err := config.SplitPeerAddress(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			a.addr = ip
		}
	}
	d.added[addr] = a
	d.watchLocked(a)
	return d.saveAddedLocked()
}

// RemovePeer forgets a peer added by address, given by its address (as
// added), name or fingerprint. Its pin stays (remove that in Settings).
func (d *Daemon) RemovePeer(peer string) error {
	d.mu.Lock()
	var found []*added
	if addr, err := config.NormalizePeerAddress(peer); err == nil && d.added[addr] != nil {
		found = append(found, d.added[addr])
	} else {
		q := strings.TrimSpace(peer)
		for _, a := range d.added {
			fp := identity.Fingerprint(a.cfg.Fingerprint)
			if strings.EqualFold(a.cfg.Name, q) || (fp != "" && (string(fp) == q || strings.EqualFold(fp.Short(), q))) ||
				(a.ref.Short() != "" && strings.EqualFold(a.ref.Short(), q)) {
				found = append(found, a)
			}
		}
	}
	switch len(found) {
	case 0:
		d.mu.Unlock()
		return fmt.Errorf("no peer added by address matches %q (see `ebrainpool peers`)", peer)
	case 1:
	default:
		d.mu.Unlock()
		return fmt.Errorf("%q matches %d peers added by address: give the address", peer, len(found))
	}
	a := found[0]
	delete(d.added, a.cfg.Address)
	if a.stop != nil {
		a.stop()
	}
	err := d.saveAddedLocked()
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.log.Info("removed a peer added by address", "address", a.cfg.Address, "name", a.cfg.Name)
	if fp := identity.Fingerprint(a.cfg.Fingerprint); fp != "" {
		if p, ok := d.peerByFingerprint(fp); ok {
			d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)}) // still discovered
		} else {
			d.publish(Event{Kind: EventPeerRemoved, Peer: dbusapi.Peer{Fingerprint: string(fp)}})
		}
	}
	return nil
}

// AddedPeers lists the peers added by address, by name then address.
func (d *Daemon) AddedPeers() []dbusapi.AddedPeer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]dbusapi.AddedPeer, 0, len(d.added))
	for _, a := range d.added {
		out = append(out, d.addedViewLocked(a))
	}
	slices.SortFunc(out, func(a, b dbusapi.AddedPeer) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Address, b.Address)
	})
	return out
}

func (d *Daemon) addedViewLocked(a *added) dbusapi.AddedPeer {
	v := dbusapi.AddedPeer{Address: a.cfg.Address, Fingerprint: a.cfg.Fingerprint, Short: a.ref.Short(), Name: a.cfg.Name, Reach: a.reach, Error: a.err}
	if !a.cfg.LastSeen.IsZero() {
		v.LastSeen = a.cfg.LastSeen.Unix()
	}
	return v
}

// publishAdded announces an added peer's new state as a peer update.
func (d *Daemon) publishAdded(addr string) {
	d.mu.Lock()
	a := d.added[addr]
	var fp identity.Fingerprint
	if a != nil {
		fp = identity.Fingerprint(a.cfg.Fingerprint)
	}
	d.mu.Unlock()
	if fp == "" {
		return
	}
	if p, ok := d.peerByFingerprint(fp); ok {
		d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)})
	}
}

// peerByFingerprint is the listed peer with fingerprint fp.
func (d *Daemon) peerByFingerprint(fp identity.Fingerprint) (discovery.Peer, bool) {
	for _, p := range d.peers() {
		if p.Fingerprint == fp {
			return p, true
		}
	}
	return discovery.Peer{}, false
}

// addedPeersLocked are the added peers with a known key as peers, for
// the peer list (d.mu held).
func (d *Daemon) addedPeersLocked() []discovery.Peer {
	var out []discovery.Peer
	for _, a := range d.added {
		if a.cfg.Fingerprint == "" {
			continue
		}
		host, port, _ := config.SplitPeerAddress(a.cfg.Address)
		p := discovery.Peer{Fingerprint: identity.Fingerprint(a.cfg.Fingerprint), Name: a.cfg.Name, Host: host, Port: uint16(port)}
		if a.addr.IsValid() {
			p.Addresses = []netip.Addr{a.addr}
		}
		if p.Name == "" {
			p.Name = host
		}
		out = append(out, p)
	}
	return out
}

// addedAddress is the address an added peer with fingerprint fp was added
// with, or "".
func (d *Daemon) addedAddress(fp identity.Fingerprint) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.added {
		if identity.Fingerprint(a.cfg.Fingerprint) == fp {
			return a.cfg.Address
		}
	}
	return ""
}
