// Package config holds the user's eBrainPool settings and where the
// application keeps its files (XDG base directories).
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// Dirs are the application's directories for one user.
type Dirs struct {
	Config string // identity key, settings (XDG_CONFIG_HOME/ebrainpool)
	State  string // pins, consent rules (XDG_STATE_HOME/ebrainpool)
	Home   string
}

// UserDirs resolves the XDG directories from the environment.
func UserDirs() (Dirs, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return Dirs{}, fmt.Errorf("finding your home directory: %w", err)
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" || !filepath.IsAbs(cfg) {
		cfg = filepath.Join(home, ".config")
	}
	state := os.Getenv("XDG_STATE_HOME")
	if state == "" || !filepath.IsAbs(state) {
		state = filepath.Join(home, ".local", "state")
	}
	return Dirs{Config: filepath.Join(cfg, "ebrainpool"), State: filepath.Join(state, "ebrainpool"), Home: home}, nil
}

// IdentityKey is the path of the user's identity key.
func (d Dirs) IdentityKey() string { return filepath.Join(d.Config, "identity_ed25519") }

// SettingsFile is the path of the settings.
func (d Dirs) SettingsFile() string { return filepath.Join(d.Config, "settings.json") }

// SharingFile is the path of the shared-apps setting.
func (d Dirs) SharingFile() string { return filepath.Join(d.Config, "sharing.json") }

// ConsentFile is the path of the remembered decisions and block list.
func (d Dirs) ConsentFile() string { return filepath.Join(d.State, "consent.json") }

// Settings are the user's preferences.
type Settings struct {
	DisplayName string `json:"display_name"`
	Sharing     bool   `json:"sharing"` // others may ask to run apps here
	// ControlPort is where peers reach this instance: 0 is
	// DefaultControlPort (see ControlPortOrDefault).
	ControlPort int `json:"control_port"`
	// BrowseDomains are unicast DNS domains browsed for peers besides
	// .local (wide-area DNS-SD; none by default).
	BrowseDomains []string `json:"browse_domains,omitempty"`
	// Sandbox limits and idle stop.
	MemoryMB int     `json:"memory_mb,omitempty"`
	CPUs     float64 `json:"cpus,omitempty"`
	Pids     int     `json:"pids,omitempty"`
	// DiskMB is the size of each peer's sandbox home, all it can write
	// to this disk (0: sandbox.DefaultDiskBytes).
	DiskMB         int      `json:"disk_mb,omitempty"`
	IdleStop       Duration `json:"idle_stop"`
	ConsentTimeout Duration `json:"consent_timeout"`
	// TrustedDisplay are the peers' apps this user runs with trusted
	// access to the display ("FINGERPRINT APP-ID" each); every other app
	// is confined to its own windows.
	TrustedDisplay []string `json:"trusted_display,omitempty"`
	// IsolatedDisplay are the peers' apps this user runs on an isolated
	// display (their own X server in the sandbox, shown through xpra),
	// as TrustedDisplay; an app is in at most one of the two.
	IsolatedDisplay []string `json:"isolated_display,omitempty"`
}

// Isolates reports whether app from peer (its fingerprint) runs on an
// isolated display.
func (s Settings) Isolates(peer, app string) bool {
	return slices.Contains(s.IsolatedDisplay, appKey(peer, app))
}

// WithIsolated is s with app from peer on an isolated display (or no
// longer); isolating it ends its trusted access.
func (s Settings) WithIsolated(peer, app string, isolated bool) Settings {
	if isolated {
		s = s.WithTrusted(peer, app, false)
	}
	s.IsolatedDisplay = withKey(s.IsolatedDisplay, appKey(peer, app), isolated)
	return s
}

// Trusts reports whether app from peer (its fingerprint) runs with
// trusted display access.
func (s Settings) Trusts(peer, app string) bool {
	return slices.Contains(s.TrustedDisplay, appKey(peer, app))
}

// WithTrusted is s with app from peer trusted (or no longer); trusting it
// ends its isolated display.
func (s Settings) WithTrusted(peer, app string, trusted bool) Settings {
	if trusted {
		s = s.WithIsolated(peer, app, false)
	}
	s.TrustedDisplay = withKey(s.TrustedDisplay, appKey(peer, app), trusted)
	return s
}

// appKey is an entry of TrustedDisplay and IsolatedDisplay.
func appKey(peer, app string) string { return peer + " " + app }

// withKey is list without key, and with it at the end if on (a new slice:
// Settings are values).
func withKey(list []string, key string, on bool) []string {
	var out []string
	for _, k := range list {
		if k != key {
			out = append(out, k)
		}
	}
	if on {
		out = append(out, key)
	}
	return out
}

// DefaultControlPort is the control port peers reach an instance on
// unless its settings (or --listen) say otherwise: fixed, so that a peer
// added by address needs no port (`ebrainpool peer add HOST`), as
// Warpinator (42000) and LocalSend (53317) do. 42331 is in IANA's
// registered range (1024-49151) with no service assigned to it. It is
// also inside Linux's default range for outgoing connections' local
// ports (32768-60999), so it can be taken for a moment: the daemon then
// falls back to a port the system chooses and says so.
const DefaultControlPort = 42331

// ControlPortOrDefault is the control port the settings ask for.
func (s Settings) ControlPortOrDefault() int {
	if s.ControlPort == 0 {
		return DefaultControlPort
	}
	return s.ControlPort
}

// Duration is a time.Duration written as "90s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults are the settings of a new user: sharing on (nothing is shared
// until apps are chosen), the host name with the user's name.
func Defaults(user, host string) Settings {
	return Settings{
		DisplayName:    ValidName(user + " on " + host),
		Sharing:        true,
		IdleStop:       Duration(5 * time.Minute),
		ConsentTimeout: Duration(60 * time.Second),
	}
}

// ValidName trims a display name to 63 bytes of printable UTF-8.
func ValidName(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > 63 {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MinDiskMB is the smallest sandbox home the settings accept (the
// sandbox package's minimum).
const MinDiskMB = 64

// Validate checks settings read from disk or typed in the settings window.
func (s Settings) Validate() error {
	if err := ValidBrowseDomains(s.BrowseDomains); err != nil {
		return err
	}
	switch {
	case s.DisplayName == "" || ValidName(s.DisplayName) != s.DisplayName:
		return errors.New("the display name must be 1 to 63 bytes of printable text")
	case s.ControlPort < 0 || s.ControlPort > 65535:
		return fmt.Errorf("control port %d out of range", s.ControlPort)
	case s.ConsentTimeout != 0 && (time.Duration(s.ConsentTimeout) < 5*time.Second || time.Duration(s.ConsentTimeout) > 10*time.Minute):
		return errors.New("the consent timeout must be between 5s and 10m")
	case s.MemoryMB < 0 || s.CPUs < 0 || s.Pids < 0 || s.DiskMB < 0 || s.IdleStop < 0:
		return errors.New("limits and idle stop cannot be negative")
	case s.DiskMB > 0 && s.DiskMB < MinDiskMB:
		return fmt.Errorf("the disk per peer must be at least %d MB", MinDiskMB)
	}
	return nil
}

// MaxBrowseDomains bounds the browse domains (each is a browser in avahi).
const MaxBrowseDomains = 8

// ValidBrowseDomains checks domains to browse for peers: DNS names (not
// "local", browsed anyway), at most MaxBrowseDomains, none twice.
func ValidBrowseDomains(domains []string) error {
	if len(domains) > MaxBrowseDomains {
		return fmt.Errorf("at most %d browse domains, not %d", MaxBrowseDomains, len(domains))
	}
	seen := map[string]bool{}
	for _, d := range domains {
		n := strings.ToLower(strings.TrimSuffix(d, "."))
		switch {
		case !validHostName(d):
			return fmt.Errorf("browse domain %q is not a DNS name", d)
		case n == "local":
			return errors.New("the browse domain local is always browsed (mDNS); give unicast DNS domains")
		case seen[n]:
			return fmt.Errorf("browse domain %q given twice", d)
		}
		seen[n] = true
	}
	return nil
}

// Load reads the settings, or returns def when there are none yet.
func Load(path string, def Settings) (Settings, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return def, nil
	}
	if err != nil {
		return def, err
	}
	s := def
	if err := json.Unmarshal(b, &s); err != nil {
		return def, fmt.Errorf("%s is corrupt (%v): fix or delete it to get the defaults", path, err)
	}
	if err := s.Validate(); err != nil {
		return def, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Save writes the settings atomically (0600).
func Save(path string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	return nil
}
