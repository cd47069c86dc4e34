package daemon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// SetTrustedDisplay remembers in the settings whether app from peer (as
// for Resolve) runs with trusted access to this user's display; launches
// after it use it. By default an app is confined to its own windows.
func (d *Daemon) SetTrustedDisplay(peer, app string, trusted bool) error {
	if app == "" || len(app) > 255 {
		return errors.New("an app id of 1 to 255 bytes is needed")
	}
	fp, name, err := d.displayPeer(peer)
	if err != nil {
		return err
	}
	s := d.Settings()
	if s.Trusts(fp, app) == trusted {
		return nil
	}
	if err := d.SaveSettings(s.WithTrusted(fp, app, trusted)); err != nil {
		return fmt.Errorf("saving the display mode of %s: %w", app, err)
	}
	d.log.Info("display mode", "peer", name, "app", app, "trusted", trusted)
	d.publish(Event{Kind: EventDisplayModesChanged})
	return nil
}

// TrustedDisplay says whether app from peer runs with trusted display
// access.
func (d *Daemon) TrustedDisplay(peer, app string) (bool, error) {
	fp, _, err := d.displayPeer(peer)
	if err != nil {
		return false, err
	}
	return d.Settings().Trusts(fp, app), nil
}

// SetDisplayMode remembers the display mode of app from peer (as for
// Resolve): protected (the default), trusted or isolated.
func (d *Daemon) SetDisplayMode(peer, app string, mode dbusapi.DisplayMode) error {
	if app == "" || len(app) > 255 {
		return errors.New("an app id of 1 to 255 bytes is needed")
	}
	switch mode {
	case dbusapi.DisplayProtected, dbusapi.DisplayTrusted, dbusapi.DisplayIsolated:
	default:
		return fmt.Errorf("unknown display mode %q (protected, trusted or isolated)", mode)
	}
	fp, name, err := d.displayPeer(peer)
	if err != nil {
		return err
	}
	s := d.Settings()
	if displayModeOf(s.Trusts(fp, app), s.Isolates(fp, app)) == mode {
		return nil
	}
	s = s.WithTrusted(fp, app, mode == dbusapi.DisplayTrusted).WithIsolated(fp, app, mode == dbusapi.DisplayIsolated)
	if err := d.SaveSettings(s); err != nil {
		return fmt.Errorf("saving the display mode of %s: %w", app, err)
	}
	d.log.Info("display mode", "peer", name, "app", app, "mode", mode)
	d.publish(Event{Kind: EventDisplayModesChanged})
	return nil
}

// displayPeer is the fingerprint and name of peer (as for Resolve: a peer
// on the network), else of a peer with a display mode chosen (matched as
// ForgetRule matches: fingerprint, short fingerprint or prefix, name), so
// that a choice can be seen and taken back while its peer is away.
func (d *Daemon) displayPeer(peer string) (fp, name string, err error) {
	p, err := d.Resolve(peer)
	if err == nil {
		return string(p.Fingerprint), p.Name, nil
	}
	chosen := map[string]string{}
	for _, c := range d.DisplayModes() {
		chosen[c.Peer] = c.PeerName
	}
	if len(chosen) == 0 {
		return "", "", err
	}
	fp, err2 := matchPeer(peer, chosen, "%q")
	if err2 != nil {
		return "", "", err // the peer is neither on the network nor has a choice: say so as Resolve does
	}
	return fp, chosen[fp], nil
}

var _ dbusapi.DisplayListBackend = (*Daemon)(nil)

// DisplayModes lists the display modes chosen for apps of peers (in the
// settings' trusted_display and isolated_display), by peer name, then
// app name. A peer is named as discovered or pinned, else by its short
// fingerprint; an app by the name its peer's last catalog gave, else its
// desktop ID.
func (d *Daemon) DisplayModes() []dbusapi.DisplayChoice {
	s := d.Settings()
	names := map[string]string{}
	for _, p := range d.pins.Pins() {
		names[string(p.Fingerprint)] = p.Name
	}
	for _, p := range d.peers() {
		names[string(p.Fingerprint)] = p.Name
	}
	var out []dbusapi.DisplayChoice
	add := func(keys []string, mode dbusapi.DisplayMode) {
		for _, k := range keys {
			fp, app, ok := strings.Cut(k, " ")
			if !ok || fp == "" || app == "" {
				continue
			}
			c := dbusapi.DisplayChoice{Peer: fp, PeerName: names[fp], App: app, AppName: d.cats.appName(fp, app), Mode: mode}
			if c.PeerName == "" {
				c.PeerName = identity.Fingerprint(fp).Short()
			}
			out = append(out, c)
		}
	}
	add(s.TrustedDisplay, dbusapi.DisplayTrusted)
	add(s.IsolatedDisplay, dbusapi.DisplayIsolated)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return peerAppLess(a.PeerName, a.Peer, a.AppName, b.PeerName, b.Peer, b.AppName)
	})
	return out
}

// appName is the name of app in the last catalog fp gave (however old),
// else app itself.
func (c *catalogs) appName(fp, app string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.full[fp].apps {
		if a.ID == app && a.Name != "" {
			return a.Name
		}
	}
	return app
}

// DisplayMode is the display mode app from peer runs in: the one chosen
// for it, else protected, or isolated where this display cannot protect
// (effectiveDisplayMode).
func (d *Daemon) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	fp, _, err := d.displayPeer(peer)
	if err != nil {
		return "", err
	}
	return d.effectiveDisplayMode(fp, app), nil
}

// effectiveDisplayMode is the display mode app from the peer with
// fingerprint fp runs in: trusted or isolated if chosen for it; else
// protected, unless this display has no SECURITY extension (Debian 12's
// Xwayland: GNOME and KDE on Wayland), where protected cannot run and the
// app runs isolated if xpra is installed (docs/display.md: the isolated
// display costs seconds per launch, so it is not the default where the
// protected mode works).
func (d *Daemon) effectiveDisplayMode(fp, app string) dbusapi.DisplayMode {
	s := d.Settings()
	m := displayModeOf(s.Trusts(fp, app), s.Isolates(fp, app))
	if m != dbusapi.DisplayProtected || tunnel.CheckIsolatedDisplay() != nil {
		return m
	}
	if d.displayUnprotectable() {
		return dbusapi.DisplayIsolated
	}
	return m
}

// displayUnprotectable reports whether the daemon's display has no
// SECURITY extension. The display is the session's, so the first answer
// either way is kept (the peer browser asks for every app it shows, again
// at each DisplayModesChanged); a check that could not reach the display
// is asked again next time.
func (d *Daemon) displayUnprotectable() bool {
	d.mu.Lock()
	known, missing := d.security.known, d.security.missing
	d.mu.Unlock()
	if known {
		return missing
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := tunnel.CheckProtectedDisplay(ctx, d.opts.Display, d.opts.XAuthority)
	missing = errors.Is(err, tunnel.ErrNoSecurityExtension)
	if err == nil || missing {
		d.mu.Lock()
		d.security.known, d.security.missing = true, missing
		d.mu.Unlock()
	}
	if missing {
		d.log.Info("this display has no SECURITY extension: apps without a display mode of their own run on an isolated display")
	}
	return missing
}

func displayModeOf(trusted, isolated bool) dbusapi.DisplayMode {
	switch {
	case isolated:
		return dbusapi.DisplayIsolated
	case trusted:
		return dbusapi.DisplayTrusted
	}
	return dbusapi.DisplayProtected
}
