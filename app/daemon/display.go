package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// SetTrustedDisplay remembers in the settings whether app from peer (as
// for Resolve) runs with trusted access to this user's display; launches
// after it use it. By default an app is confined to its own windows.
func (d *Daemon) SetTrustedDisplay(peer, app string, trusted bool) error {
	if app == "" || len(app) > 255 {
		return errors.New("an app id of 1 to 255 bytes is needed")
	}
	p, err := d.Resolve(peer)
	if err != nil {
		return err
	}
	s := d.Settings()
	if s.Trusts(string(p.Fingerprint), app) == trusted {
		return nil
	}
	if err := d.SaveSettings(s.WithTrusted(string(p.Fingerprint), app, trusted)); err != nil {
		return fmt.Errorf("saving the display mode of %s: %w", app, err)
	}
	d.log.Info("display mode", "peer", p.Name, "app", app, "trusted", trusted)
	return nil
}

// TrustedDisplay says whether app from peer runs with trusted display
// access.
func (d *Daemon) TrustedDisplay(peer, app string) (bool, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return false, err
	}
	return d.Settings().Trusts(string(p.Fingerprint), app), nil
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
	p, err := d.Resolve(peer)
	if err != nil {
		return err
	}
	s := d.Settings()
	fp := string(p.Fingerprint)
	if displayModeOf(s.Trusts(fp, app), s.Isolates(fp, app)) == mode {
		return nil
	}
	s = s.WithTrusted(fp, app, mode == dbusapi.DisplayTrusted).WithIsolated(fp, app, mode == dbusapi.DisplayIsolated)
	if err := d.SaveSettings(s); err != nil {
		return fmt.Errorf("saving the display mode of %s: %w", app, err)
	}
	d.log.Info("display mode", "peer", p.Name, "app", app, "mode", mode)
	return nil
}

// DisplayMode is the display mode app from peer runs in: the one chosen
// for it, else protected, or isolated where this display cannot protect
// (effectiveDisplayMode).
func (d *Daemon) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return "", err
	}
	return d.effectiveDisplayMode(string(p.Fingerprint), app), nil
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if errors.Is(tunnel.CheckProtectedDisplay(ctx, d.opts.Display, d.opts.XAuthority), tunnel.ErrNoSecurityExtension) {
		d.log.Info("this display has no SECURITY extension: the app runs on an isolated display", "app", app)
		return dbusapi.DisplayIsolated
	}
	return m
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
