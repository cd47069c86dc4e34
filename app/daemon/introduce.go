package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Introducers (off by default): a peer the user marks as introducer is
// asked, every introduceEvery and at once when marked, for the peers it
// knows first-hand (discovered or added by address there, never what it
// was introduced to, never anything of its consent rules). They are
// listed as "introduced by NAME" when known no other way, and pinned on
// the first successful connect to the announced key, as discovered peers
// are.

var _ dbusapi.IntroducerBackend = (*Daemon)(nil)

// introduceEvery is how often introducers are asked (a variable for
// tests).
var introduceEvery = 30 * time.Second

// introState is the introductions (guarded by Daemon.mu).
type introState struct {
	introducers map[identity.Fingerprint]config.Introducer
	// introduced are the peers each introducer told of.
	introduced map[identity.Fingerprint][]control.PeerInfo
	wake       chan struct{}
}

// loadIntroducers reads the introducers (New).
func (d *Daemon) loadIntroducers() error {
	list, err := config.LoadIntroducers(d.opts.Dirs.IntroducersFile())
	if err != nil {
		return err
	}
	is := &d.addedRun.intro
	is.introducers = map[identity.Fingerprint]config.Introducer{}
	is.introduced = map[identity.Fingerprint][]control.PeerInfo{}
	is.wake = make(chan struct{}, 1)
	for _, in := range list {
		is.introducers[identity.Fingerprint(in.Fingerprint)] = in
	}
	return nil
}

// SetIntroducer marks (on) or unmarks a listed peer as introducer.
func (d *Daemon) SetIntroducer(peer string, on bool) error {
	p, err := d.Resolve(peer)
	if err != nil {
		return err
	}
	if by := d.introducedBy(p.Fingerprint); by != "" && on {
		return fmt.Errorf("%s was introduced by %s: only a peer you reach yourself (discovered or added by address) can be an introducer", p.Name, by)
	}
	d.mu.Lock()
	is := &d.addedRun.intro
	if on {
		is.introducers[p.Fingerprint] = config.Introducer{Fingerprint: string(p.Fingerprint), Name: p.Name, Since: time.Now().UTC().Truncate(time.Second)}
	} else {
		delete(is.introducers, p.Fingerprint)
	}
	gone := is.introduced[p.Fingerprint]
	if !on {
		delete(is.introduced, p.Fingerprint)
	}
	list := make([]config.Introducer, 0, len(is.introducers))
	for _, in := range is.introducers {
		list = append(list, in)
	}
	d.mu.Unlock()
	slices.SortFunc(list, func(a, b config.Introducer) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	if err := config.SaveIntroducers(d.opts.Dirs.IntroducersFile(), list); err != nil {
		return err
	}
	d.log.Info("introducer", "peer", p.Name, "fingerprint", p.Fingerprint, "on", on)
	d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)})
	if on {
		select {
		case is.wake <- struct{}{}:
		default:
		}
	} else {
		d.publishIntroChanges(gone, nil)
	}
	return nil
}

// watchIntroducers asks every introducer for its peers, now and then
// every introduceEvery, and when one is marked.
func (d *Daemon) watchIntroducers(ctx context.Context) {
	d.mu.Lock()
	wake := d.addedRun.intro.wake
	d.mu.Unlock()
	for {
		d.askIntroducers(ctx)
		t := time.NewTimer(introduceEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// askIntroducers asks each introducer once.
func (d *Daemon) askIntroducers(ctx context.Context) {
	d.mu.Lock()
	var fps []identity.Fingerprint
	for fp := range d.addedRun.intro.introducers {
		fps = append(fps, fp)
	}
	d.mu.Unlock()
	for _, fp := range fps {
		if ctx.Err() != nil {
			return
		}
		list, err := d.askIntroducer(ctx, fp)
		if err != nil {
			d.log.Info("asking an introducer for its peers", "fingerprint", fp, "err", err)
			continue
		}
		d.mu.Lock()
		is := &d.addedRun.intro
		if _, still := is.introducers[fp]; !still {
			d.mu.Unlock()
			continue
		}
		old := is.introduced[fp]
		is.introduced[fp] = list
		d.mu.Unlock()
		d.publishIntroChanges(old, list)
	}
}

// askIntroducer connects to the introducer fp (as listed) and asks.
func (d *Daemon) askIntroducer(ctx context.Context, fp identity.Fingerprint) ([]control.PeerInfo, error) {
	p, ok := d.peerByFingerprint(fp)
	if !ok {
		return nil, errors.New("not reachable now (not listed)")
	}
	if d.introducedBy(fp) != "" {
		return nil, errors.New("itself only introduced")
	}
	t, err := d.target(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, addedTimeout)
	defer cancel()
	c, err := control.Dial(ctx, t.Addr, control.ClientConfig{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Expect: t.Fingerprint, Verify: d.verify(p), Timeout: addedTimeout})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	list, err := c.Peers(ctx)
	if err != nil {
		return nil, err
	}
	var out []control.PeerInfo
	for _, pi := range list {
		if pi.Fingerprint != d.id.Fingerprint() && pi.Fingerprint != fp {
			out = append(out, pi)
		}
	}
	return out, nil
}

// publishIntroChanges announces the peers an introduction added or took
// away (those listed no other way).
func (d *Daemon) publishIntroChanges(old, now []control.PeerInfo) {
	has := func(list []control.PeerInfo, fp identity.Fingerprint) bool {
		return slices.ContainsFunc(list, func(p control.PeerInfo) bool { return p.Fingerprint == fp })
	}
	for _, pi := range now {
		if p, ok := d.peerByFingerprint(pi.Fingerprint); ok && !has(old, pi.Fingerprint) {
			d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)})
		}
	}
	for _, pi := range old {
		if has(now, pi.Fingerprint) {
			continue
		}
		if p, ok := d.peerByFingerprint(pi.Fingerprint); ok {
			d.publish(Event{Kind: EventPeerAdded, Peer: d.describe(p)})
		} else {
			d.publish(Event{Kind: EventPeerRemoved, Peer: dbusapi.Peer{Fingerprint: string(pi.Fingerprint)}})
		}
	}
}

// introducePeers is what this host tells a peer that asks (Server.Peers):
// the peers it knows first-hand, with their addresses (link-local ones
// left out: their zones are this host's), not the asker itself; a
// blocked peer is refused.
func (d *Daemon) introducePeers(_ context.Context, asker control.Peer) ([]control.PeerInfo, error) {
	if _, blocked := d.consent.Rules().Blocked[string(asker.Fingerprint)]; blocked {
		return nil, control.Refuse(control.CodeBlocked, "you are blocked on this host")
	}
	var out []control.PeerInfo
	for _, p := range d.peers() {
		if p.Fingerprint == asker.Fingerprint || d.introducedBy(p.Fingerprint) != "" || p.Port == 0 {
			continue
		}
		pi := control.PeerInfo{Fingerprint: p.Fingerprint, Name: p.Name, Port: p.Port}
		for _, a := range p.Addresses {
			if !a.IsLinkLocalUnicast() && len(pi.Addresses) < control.MaxIntroducedAddrs {
				pi.Addresses = append(pi.Addresses, a.WithZone("").String())
			}
		}
		if len(pi.Addresses) > 0 {
			out = append(out, pi)
		}
		if len(out) == control.MaxIntroduced {
			break
		}
	}
	return out, nil
}

// introducedPeersLocked are the introduced peers as peers (d.mu held),
// the first introducer's word for each.
func (d *Daemon) introducedPeersLocked() []discovery.Peer {
	var out []discovery.Peer
	seen := map[identity.Fingerprint]bool{}
	is := &d.addedRun.intro
	fps := make([]identity.Fingerprint, 0, len(is.introduced))
	for fp := range is.introduced {
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	for _, by := range fps {
		for _, pi := range is.introduced[by] {
			if seen[pi.Fingerprint] {
				continue
			}
			seen[pi.Fingerprint] = true
			p := discovery.Peer{Fingerprint: pi.Fingerprint, Name: pi.Name, Port: pi.Port}
			for _, a := range pi.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					p.Addresses = append(p.Addresses, ip)
				}
			}
			if len(p.Addresses) > 0 {
				p.Host = p.Addresses[0].String()
			}
			out = append(out, p)
		}
	}
	return out
}

// introducedBy is the name of the introducer fp is listed through, or ""
// when it is listed another way (discovered, added) or not at all.
func (d *Daemon) introducedBy(fp identity.Fingerprint) string {
	if d.discovered(fp) || d.addedAddress(fp) != "" {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	is := &d.addedRun.intro
	var bys []identity.Fingerprint
	for by, list := range is.introduced {
		if slices.ContainsFunc(list, func(p control.PeerInfo) bool { return p.Fingerprint == fp }) {
			bys = append(bys, by)
		}
	}
	if len(bys) == 0 {
		return ""
	}
	slices.Sort(bys)
	return is.introducers[bys[0]].Name
}

// introduction says whether fp is an introducer and who introduced it.
func (d *Daemon) introduction(fp identity.Fingerprint) (introducer bool, by string) {
	d.mu.Lock()
	_, introducer = d.addedRun.intro.introducers[fp]
	d.mu.Unlock()
	return introducer, d.introducedBy(fp)
}
