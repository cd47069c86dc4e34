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

// DisplayModeBackend is a DisplayBackend that also knows the isolated
// display: the mode of an app is protected (the default), trusted or
// isolated.
type DisplayModeBackend interface {
	DisplayBackend
	SetDisplayMode(peer, app string, mode DisplayMode) error
	DisplayMode(peer, app string) (DisplayMode, error)
}

// SetDisplayMode remembers the display mode of app from peer (as for
// Launch): "protected", "trusted" or "isolated".
func (o object) SetDisplayMode(peer, app, mode string) *dbus.Error {
	db, ok := o.b.(DisplayModeBackend)
	if !ok {
		return dbusErr(errNoDisplayModes)
	}
	return dbusErr(db.SetDisplayMode(peer, app, DisplayMode(mode)))
}

// DisplayMode says the display mode of app from peer.
func (o object) DisplayMode(peer, app string) (string, *dbus.Error) {
	db, ok := o.b.(DisplayModeBackend)
	if !ok {
		return string(DisplayProtected), nil
	}
	m, err := db.DisplayMode(peer, app)
	return string(m), dbusErr(err)
}

// SetDisplayMode asks the daemon to remember the display mode of app from
// peer.
func (c *Client) SetDisplayMode(ctx context.Context, peer, app string, mode DisplayMode) error {
	return c.call(ctx, "SetDisplayMode", nil, peer, app, string(mode))
}

// DisplayMode asks the daemon for the display mode of app from peer.
func (c *Client) DisplayMode(ctx context.Context, peer, app string) (DisplayMode, error) {
	var m string
	err := c.call(ctx, "DisplayMode", &m, peer, app)
	return DisplayMode(m), err
}

// DisplayChoice is a display mode the user chose for an app of a peer
// (one that is not the default): the peer's fingerprint and its name (as
// it is known: discovered or pinned, else its short fingerprint), the
// app's desktop ID and its name (as the peer's catalog last said it,
// else the ID), and the mode (trusted or isolated).
type DisplayChoice struct {
	Peer     string
	PeerName string
	App      string
	AppName  string
	Mode     DisplayMode
}

// DisplayListBackend is a DisplayModeBackend that lists the modes chosen.
type DisplayListBackend interface {
	DisplayModeBackend
	DisplayModes() []DisplayChoice
}

// DisplayModes lists the display modes chosen for apps of peers (the apps
// not listed run in the default mode), by peer name, then app.
// SetDisplayMode with "protected" takes one back, also for a peer not on
// the network now.
func (o object) DisplayModes() ([]DisplayChoice, *dbus.Error) {
	db, ok := o.b.(DisplayListBackend)
	if !ok {
		return nil, dbusErr(errNoDisplayModes)
	}
	return db.DisplayModes(), nil
}

// DisplayModes asks the daemon for the display modes chosen for apps of
// peers.
func (c *Client) DisplayModes(ctx context.Context) ([]DisplayChoice, error) {
	var out []DisplayChoice
	return out, c.call(ctx, "DisplayModes", &out)
}
