package dbusapi

import (
	"context"
	"errors"

	"github.com/godbus/dbus/v5"
)

// DisplayBackend is a Backend that remembers, per peer and app, whether
// the requester gives the app trusted access to its display (by default
// an app is confined to its own windows).
type DisplayBackend interface {
	Backend
	SetTrustedDisplay(peer, app string, trusted bool) error
	TrustedDisplay(peer, app string) (bool, error)
}

var errNoDisplayModes = errors.New("this eBrainPool has no display modes")

// SetTrustedDisplay remembers whether app from peer (as for Launch) runs
// with trusted access to this user's display: it can then read the screen
// and every window and send input anywhere. Launches after it use it.
func (o object) SetTrustedDisplay(peer, app string, trusted bool) *dbus.Error {
	db, ok := o.b.(DisplayBackend)
	if !ok {
		return dbusErr(errNoDisplayModes)
	}
	return dbusErr(db.SetTrustedDisplay(peer, app, trusted))
}

// TrustedDisplay says whether app from peer runs with trusted display
// access (false: protected, the default).
func (o object) TrustedDisplay(peer, app string) (bool, *dbus.Error) {
	db, ok := o.b.(DisplayBackend)
	if !ok {
		return false, nil
	}
	t, err := db.TrustedDisplay(peer, app)
	return t, dbusErr(err)
}

// SetTrustedDisplay asks the daemon to remember the display mode of app
// from peer.
func (c *Client) SetTrustedDisplay(ctx context.Context, peer, app string, trusted bool) error {
	return c.call(ctx, "SetTrustedDisplay", nil, peer, app, trusted)
}

// TrustedDisplay asks the daemon whether app from peer runs with trusted
// display access.
func (c *Client) TrustedDisplay(ctx context.Context, peer, app string) (bool, error) {
	var t bool
	err := c.call(ctx, "TrustedDisplay", &t, peer, app)
	return t, err
}
