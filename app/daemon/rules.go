package daemon

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/app/session"
)

var _ dbusapi.RulesBackend = (*Daemon)(nil)

// sessionEvent publishes an incoming session's start or end (the host's
// OnSession).
func (d *Daemon) sessionEvent(s session.HostSession, started bool) {
	kind := EventSessionEnded
	if started {
		kind = EventSessionStarted
	}
	d.publish(Event{Kind: kind, Session: incomingSession(s), ByRule: s.ByRule})
}

// incomingSession is a peer's session here as the API shows it.
func incomingSession(s session.HostSession) dbusapi.Session {
	state := dbusapi.StageGranted
	if s.Connected {
		state = dbusapi.StageRunning
	}
	return dbusapi.Session{ID: s.ID, Direction: dbusapi.DirectionIncoming, Peer: s.Peer, PeerName: s.PeerName, App: s.AppName,
		Since: s.Since.Unix(), State: state, Session: s.ID, Files: s.Files}
}

// Rules lists the remembered decisions, by peer name, then app.
func (d *Daemon) Rules() []dbusapi.Rule {
	r := d.consent.Rules()
	names := d.ruleNames(r)
	var out []dbusapi.Rule
	add := func(m map[string][]consent.AppRule, dec dbusapi.Decision) {
		for peer, list := range m {
			for _, a := range list {
				ru := dbusapi.Rule{Peer: peer, PeerName: names[peer], App: a.ID, AppName: a.Name, Decision: dec}
				if ru.AppName == "" {
					ru.AppName = a.ID
				}
				if !a.Since.IsZero() {
					ru.Since = a.Since.Unix()
				}
				out = append(out, ru)
			}
		}
	}
	add(r.Allowed, dbusapi.DecisionAllow)
	add(r.Denied, dbusapi.DecisionDeny)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return peerAppLess(a.PeerName, a.Peer, a.AppName, b.PeerName, b.Peer, b.AppName)
	})
	return out
}

// peerAppLess orders lists by peer and app: the peer's name (in any
// case), its fingerprint (two peers of one name), then the app's name.
func peerAppLess(aName, aPeer, aApp, bName, bPeer, bApp string) bool {
	if x, y := strings.ToLower(aName), strings.ToLower(bName); x != y {
		return x < y
	}
	if aPeer != bPeer {
		return aPeer < bPeer
	}
	return strings.ToLower(aApp) < strings.ToLower(bApp)
}

// ruleNames names the peers of the rules: as pinned (the name they were
// met under), else as blocked, else their short fingerprint.
func (d *Daemon) ruleNames(r consent.Rules) map[string]string {
	names := map[string]string{}
	for _, m := range []map[string][]consent.AppRule{r.Allowed, r.Denied} {
		for peer := range m {
			names[peer] = identity.Fingerprint(peer).Short()
			if names[peer] == "" {
				names[peer] = peer
			}
		}
	}
	for peer, name := range r.Blocked {
		if name != "" {
			names[peer] = name
		}
	}
	for _, p := range d.pins.Pins() {
		if _, ok := names[string(p.Fingerprint)]; ok && p.Name != "" {
			names[string(p.Fingerprint)] = p.Name
		}
	}
	return names
}

// ForgetRule revokes the remembered decision for a peer and an app (its
// desktop ID or name; "" every app of the peer). The peer is matched
// among the rules' peers: fingerprint, short fingerprint or prefix, or
// name.
func (d *Daemon) ForgetRule(peer, app string) error {
	rules := d.Rules()
	fps := map[string]string{}
	for _, r := range rules {
		fps[r.Peer] = r.PeerName
	}
	fp, err := matchPeer(peer, fps, "no remembered decision for %q (see `ebrainpool rules`)")
	if err != nil {
		return err
	}
	if app == "" {
		return d.consent.Forget(fp, "")
	}
	for _, r := range rules {
		if r.Peer == fp && (r.App == app || strings.EqualFold(r.AppName, app)) {
			if r.App == "" {
				return errors.New("a decision from an older version, by app name: revoke all of the peer's decisions (no app)")
			}
			return d.consent.Forget(fp, r.App)
		}
	}
	return fmt.Errorf("no remembered decision for %s and %q (see `ebrainpool rules`)", fps[fp], app)
}

// BlockedPeers lists the blocked peers, by name.
func (d *Daemon) BlockedPeers() []dbusapi.Blocked {
	var out []dbusapi.Blocked
	for fp, name := range d.consent.Rules().Blocked {
		out = append(out, dbusapi.Blocked{Peer: fp, PeerName: name})
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].PeerName) < strings.ToLower(out[j].PeerName) })
	return out
}

// UnblockPeer takes a peer off the block list, matched among the blocked
// peers (fingerprint, short fingerprint or prefix, or the name it was
// blocked under).
func (d *Daemon) UnblockPeer(peer string) error {
	fp, err := matchPeer(peer, d.consent.Rules().Blocked, "%q is not blocked (see `ebrainpool rules`)")
	if err != nil {
		return err
	}
	return d.consent.Unblock(fp)
}

// matchPeer finds q among peers (fingerprint -> name): the fingerprint or
// its short form, the name, then a prefix of either fingerprint of at
// least 4 characters; notFound is the error's format for q.
func matchPeer(q string, peers map[string]string, notFound string) (string, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return "", errors.New("no peer given")
	}
	for _, pass := range []func(fp, name string) bool{
		func(fp, _ string) bool {
			return fp == q || identity.Fingerprint(fp).Short() == strings.ToUpper(q)
		},
		func(_, name string) bool { return strings.EqualFold(name, q) },
		func(fp, _ string) bool {
			return len(q) >= 4 && (strings.HasPrefix(fp, q) || strings.HasPrefix(strings.TrimPrefix(fp, "SHA256:"), q) ||
				strings.HasPrefix(identity.Fingerprint(fp).Short(), strings.ToUpper(q)))
		},
	} {
		var matches []string
		for fp, name := range peers {
			if pass(fp, name) {
				matches = append(matches, fp)
			}
		}
		sort.Strings(matches)
		switch len(matches) {
		case 0:
			continue
		case 1:
			return matches[0], nil
		}
		var names []string
		for _, fp := range matches {
			names = append(names, fmt.Sprintf("%q %s", peers[fp], identity.Fingerprint(fp).Short()))
		}
		return "", fmt.Errorf("%q matches %d peers (%s): give a fingerprint prefix", q, len(matches), strings.Join(names, ", "))
	}
	return "", fmt.Errorf(notFound, q)
}
