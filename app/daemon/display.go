package daemon

import (
	"errors"
	"fmt"
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
