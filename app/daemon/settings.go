package daemon

import (
	"fmt"
	"slices"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// SaveSettings validates, stores and applies new settings: sharing on/off
// and the idle stop apply at once, the consent timeout to the requests
// asked from now on, a new display name is announced at once (through
// discovery, and in the hello of every control connection), and sandbox
// limits apply to the sandboxes started from now on (a running one keeps
// its own until it stops). The control port applies from the next start.
func (d *Daemon) SaveSettings(s config.Settings) error {
	d.saving.Lock()
	defer d.saving.Unlock()
	lim, custom := limitsOf(s)
	if custom {
		if err := lim.Validate(); err != nil {
			return fmt.Errorf("sandbox limits: %w", err)
		}
	}
	if err := config.Save(d.opts.Dirs.SettingsFile(), s); err != nil {
		return err
	}
	d.mu.Lock()
	old := d.settings
	d.settings = s
	m, srv := d.sandbox, d.srv
	// What RetrySharing makes a manager with, from now on.
	if custom {
		d.sbCfg.Limits = lim
	} else {
		d.sbCfg.Limits = d.opts.Sandbox.Limits
	}
	newLimits := d.sbCfg.Limits
	d.mu.Unlock()

	d.consent.SetTimeout(time.Duration(s.ConsentTimeout))
	d.host.SetIdleStop(idleStop(s))
	if m != nil {
		if err := m.SetLimits(newLimits); err != nil {
			return fmt.Errorf("sandbox limits: %w", err)
		}
	}
	if s.DisplayName != old.DisplayName {
		if srv != nil {
			srv.SetName(s.DisplayName)
		}
		if err := d.reannounce(s.DisplayName); err != nil {
			return err
		}
	} else if !slices.Equal(s.BrowseDomains, old.BrowseDomains) {
		// New browse domains: a new discovery service browses them.
		if err := d.reannounce(s.DisplayName); err != nil {
			return err
		}
	}
	return nil
}

// LocalApps lists the graphical apps installed here and the sharing choice.
func (d *Daemon) LocalApps() ([]catalog.App, catalog.Sharing, error) {
	apps, _ := catalog.Scan(d.opts.AppDirs)
	s, err := catalog.LoadSharing(d.opts.Dirs.SharingFile())
	return apps, s, err
}

// SetShared shares or stops sharing one app.
func (d *Daemon) SetShared(id string, shared bool) error {
	s, err := catalog.LoadSharing(d.opts.Dirs.SharingFile())
	if err != nil {
		return err
	}
	s.Set(id, shared)
	if err := catalog.SaveSharing(d.opts.Dirs.SharingFile(), s); err != nil {
		return fmt.Errorf("saving the shared apps: %w", err)
	}
	return nil
}

// LocalIcon is an installed app's icon as PNG, or nil.
func (d *Daemon) LocalIcon(a catalog.App) []byte { return d.icon(a) }

// KnownPeers are the pinned peers.
func (d *Daemon) KnownPeers() []identity.Pin { return d.pins.Pins() }

// ForgetPeer drops a peer's pin and remembered decisions (a peer that
// really got a new key can then be met again).
func (d *Daemon) ForgetPeer(fp identity.Fingerprint) error {
	if err := d.pins.Forget(fp); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.changed, fp)
	d.mu.Unlock()
	return d.consent.Forget(string(fp), "")
}

// Blocked lists blocked peers (fingerprint to name).
func (d *Daemon) Blocked() map[string]string { return d.consent.Rules().Blocked }

// Unblock removes a peer from the block list.
func (d *Daemon) Unblock(fp string) error { return d.consent.Unblock(fp) }

// AnswerFull answers a prompt with every option of the popup.
func (d *Daemon) AnswerFull(id string, allow, remember, block bool) error {
	return d.consent.Answer(id, consent.Answer{Allow: allow, Remember: remember, Block: block})
}

// SandboxUsage is one peer's sandbox on this host and what it uses, as
// the desktop app shows it.
type SandboxUsage struct {
	Peer    string // the peer's fingerprint
	Running bool
	Pids    int           // processes, its init included
	Memory  int64         // bytes (0: unknown)
	CPU     time.Duration // CPU time since it started (negative: unknown)
	// Disk is what its home takes on this disk, DiskLimit the home's
	// size (0: unknown, or a sandbox from before the storage limit).
	Disk, DiskLimit int64
}

// SandboxUsage lists the sandboxes with their state, processes, memory
// and CPU time (nil when this user cannot run sandboxes).
func (d *Daemon) SandboxUsage() []SandboxUsage {
	d.mu.Lock()
	m := d.sandbox // RetrySharing may swap it
	d.mu.Unlock()
	if m == nil {
		return nil
	}
	l, err := m.List()
	if err != nil {
		d.log.Warn("listing sandboxes", "err", err)
	}
	out := make([]SandboxUsage, 0, len(l))
	for _, i := range l {
		out = append(out, SandboxUsage{Peer: i.Peer, Running: i.State == "RUNNING", Pids: i.Pids, Memory: i.Memory, CPU: i.CPU,
			Disk: i.DiskBytes, DiskLimit: i.DiskLimit})
	}
	return out
}
