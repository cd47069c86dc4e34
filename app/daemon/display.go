package daemon

import (
	"errors"
	"fmt"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
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

// DisplayMode is the display mode of app from peer.
func (d *Daemon) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return "", err
	}
	s := d.Settings()
	return displayModeOf(s.Trusts(string(p.Fingerprint), app), s.Isolates(string(p.Fingerprint), app)), nil
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
