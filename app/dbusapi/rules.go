package dbusapi

import (
	"context"
	"errors"

	"github.com/godbus/dbus/v5"
)

// Decision is what a remembered rule decides for a peer and an app.
type Decision string

const (
	// DecisionAllow: the app runs without asking.
	DecisionAllow Decision = "allow"
	// DecisionDeny: the request is refused without asking.
	DecisionDeny Decision = "deny"
)

// Rule is one remembered decision: a peer, an app of this host, allow or
// deny, and since when.
type Rule struct {
	Peer     string // fingerprint
	PeerName string // as the peer was called when the rule was made
	App      string // desktop ID ("" for a deny kept from rules version 1: AppName then)
	AppName  string
	Decision Decision
	Since    int64 // unix seconds; 0: unknown (a rule older than the record)
}

// Blocked is a peer on the block list.
type Blocked struct {
	Peer     string // fingerprint
	PeerName string
}

// RulesBackend is a Backend that lists and revokes remembered decisions
// and blocks.
type RulesBackend interface {
	Backend
	Rules() []Rule
	// ForgetRule drops the rule for the peer (a fingerprint, name or
	// host) and the app (desktop ID or name); app "" drops the peer's
	// every rule.
	ForgetRule(peer, app string) error
	BlockedPeers() []Blocked
	// UnblockPeer takes the peer (fingerprint, prefix, or the name it was
	// blocked under) off the block list.
	UnblockPeer(peer string) error
}

var errNoRules = errors.New("this eBrainPool does not list remembered decisions")

// Rules lists the remembered decisions, by peer and app.
func (o object) Rules() ([]Rule, *dbus.Error) {
	rb, ok := o.b.(RulesBackend)
	if !ok {
		return nil, dbusErr(errNoRules)
	}
	return rb.Rules(), nil
}

// ForgetRule revokes a remembered decision (app "": all of the peer's).
func (o object) ForgetRule(peer, app string) *dbus.Error {
	rb, ok := o.b.(RulesBackend)
	if !ok {
		return dbusErr(errNoRules)
	}
	return dbusErr(rb.ForgetRule(peer, app))
}

// ListBlocked lists the blocked peers.
func (o object) ListBlocked() ([]Blocked, *dbus.Error) {
	rb, ok := o.b.(RulesBackend)
	if !ok {
		return nil, dbusErr(errNoRules)
	}
	return rb.BlockedPeers(), nil
}

// Unblock takes a peer off the block list.
func (o object) Unblock(peer string) *dbus.Error {
	rb, ok := o.b.(RulesBackend)
	if !ok {
		return dbusErr(errNoRules)
	}
	return dbusErr(rb.UnblockPeer(peer))
}

// Rules lists the remembered decisions.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var r []Rule
	return r, c.call(ctx, "Rules", &r)
}

// ForgetRule revokes a remembered decision (app "": all of the peer's).
func (c *Client) ForgetRule(ctx context.Context, peer, app string) error {
	return c.call(ctx, "ForgetRule", nil, peer, app)
}

// Blocked lists the blocked peers.
func (c *Client) Blocked(ctx context.Context) ([]Blocked, error) {
	var b []Blocked
	return b, c.call(ctx, "ListBlocked", &b)
}

// Unblock takes a peer off the block list.
func (c *Client) Unblock(ctx context.Context, peer string) error {
	return c.call(ctx, "Unblock", nil, peer)
}
