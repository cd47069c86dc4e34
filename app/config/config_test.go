package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestUserDirs(t *testing.T) {
	t.Setenv("HOME", "/home/alice")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_STATE_HOME", "relative/ignored")
	d, err := UserDirs()
	if err != nil || d.Config != "/home/alice/.config/ebrainpool" || d.State != "/home/alice/.local/state/ebrainpool" {
		t.Fatalf("%+v %v", d, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	if d, _ := UserDirs(); d.IdentityKey() != "/cfg/ebrainpool/identity_ed25519" {
		t.Fatalf("%+v", d)
	}
}

func TestValidName(t *testing.T) {
	tests := map[string]string{
		"  alice on box  ":             "alice on box",
		"bad\x00\ncontrol":             "badcontrol",
		strings.Repeat("é", 40):        strings.Repeat("é", 31),
		"\xff\xfeinvalid utf8 dropped": "invalid utf8 dropped",
	}
	for in, want := range tests {
		t.Run(want, func(t *testing.T) {
			if got := ValidName(in); got != want || len(got) > 63 {
				t.Fatalf("ValidName(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestLoadSave(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "settings.json")
	def := Defaults("alice", "box")
	s, err := Load(p, def)
	if err != nil || !reflect.DeepEqual(s, def) {
		t.Fatalf("missing file: %+v %v", s, err)
	}
	s.DisplayName, s.ConsentTimeout = "Alice", Duration(30*time.Second)
	if err := Save(p, s); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("settings mode %v", st.Mode())
	}
	got, err := Load(p, def)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for name, content := range map[string]string{
		"corrupt":     "{",
		"bad timeout": `{"display_name":"x","consent_timeout":"1s"}`,
		"empty name":  `{"display_name":""}`,
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := Load(p, def); err == nil || !strings.Contains(err.Error(), p) {
				t.Fatalf("want an error naming %s, got %v", p, err)
			}
		})
	}
	if err := Save(p, Settings{}); err == nil {
		t.Fatal("saved invalid settings")
	}
}

func TestSplitPeerAddress(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
	}{
		{"bob-laptop", "bob-laptop:42331"},
		{"bob-laptop.example.org:7000", "bob-laptop.example.org:7000"},
		{"192.168.1.20", "192.168.1.20:42331"},
		{"192.168.1.20:41527", "192.168.1.20:41527"},
		{"2001:db8::20", "[2001:db8::20]:42331"},
		{"[2001:db8::20]:41527", "[2001:db8::20]:41527"},
		{"[2001:db8::20]", "[2001:db8::20]:42331"},
		{"[fe80::1%eth0]:41527", "[fe80::1%eth0]:41527"},
		{"fe80::1%eth0", "[fe80::1%eth0]:42331"},
		{"  localhost:9 ", "localhost:9"},
		{"", ""},
		{"host:0", ""},
		{"host:70000", ""},
		{"host:port", ""},
		{":7000", ""},
		{"[bob-laptop]:7000", ""},
		{"2001:db8::20:zz", ""},
		{"bad host", ""},
		{"-bad.example", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePeerAddress(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("NormalizePeerAddress(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizePeerAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// Peers added by address survive a restart, in a file replaced
// atomically.
func TestAddedPeersRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "added_peers.json")
	if ps, err := LoadPeers(path); err != nil || len(ps) != 0 {
		t.Fatalf("no file: %v %v", ps, err)
	}
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	want := []AddedPeer{{Address: "[fe80::1%eth0]:42331", Fingerprint: "SHA256:x", Name: "bob", Added: at, LastSeen: at}}
	if err := SavePeers(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPeers(path)
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("LoadPeers = %+v, %v; want %+v", got, err, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi, err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := LoadPeers(path); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("a corrupt file: %v", err)
	}
}

func TestDefaultControlPort(t *testing.T) {
	if got := (Settings{}).ControlPortOrDefault(); got != DefaultControlPort {
		t.Fatalf("an unset port = %d, want %d", got, DefaultControlPort)
	}
	if got := (Settings{ControlPort: 7000}).ControlPortOrDefault(); got != 7000 {
		t.Fatalf("a chosen port = %d", got)
	}
}

// TestTrustedDisplay: the apps with trusted display access are kept per
// peer and app, and survive a save.
func TestTrustedDisplay(t *testing.T) {
	s := Defaults("alice", "laptop")
	if s.Trusts("SHA256:peer", "xterm") {
		t.Fatal("trusted by default")
	}
	s = s.WithTrusted("SHA256:peer", "xterm", true).WithTrusted("SHA256:peer", "xterm", true)
	if !s.Trusts("SHA256:peer", "xterm") || s.Trusts("SHA256:other", "xterm") || s.Trusts("SHA256:peer", "xeyes") || len(s.TrustedDisplay) != 1 {
		t.Fatalf("after trusting xterm of one peer: %v", s.TrustedDisplay)
	}
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := Save(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, Defaults("alice", "laptop"))
	if err != nil || !got.Trusts("SHA256:peer", "xterm") {
		t.Fatalf("loaded %v, %v", got.TrustedDisplay, err)
	}
	if got = got.WithTrusted("SHA256:peer", "xterm", false); got.Trusts("SHA256:peer", "xterm") {
		t.Fatal("still trusted after WithTrusted(false)")
	}
}

func TestBrowseDomains(t *testing.T) {
	base := Defaults("ann", "box")
	tests := []struct {
		name    string
		domains []string
		ok      bool
	}{
		{"none", nil, true},
		{"two", []string{"office.example.org", "lab.example.org."}, true},
		{"local", []string{"local"}, false},
		{"not a name", []string{"bad domain"}, false},
		{"twice", []string{"a.example", "A.example."}, false},
		{"too many", []string{"a.x", "b.x", "c.x", "d.x", "e.x", "f.x", "g.x", "h.x", "i.x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			s.BrowseDomains = tt.domains
			if err := s.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate(%v) = %v", tt.domains, err)
			}
		})
	}
}

// TestIsolatedDisplay: an app is remembered on an isolated display per
// peer and app, which ends its trusted access and is ended by it, and
// survives a save and load.
func TestIsolatedDisplay(t *testing.T) {
	const peer, app = "SHA256:peer", "xterm"
	s := Defaults("alice", "laptop")
	for _, tc := range []struct {
		name              string
		apply             func(Settings) Settings
		trusted, isolated bool
	}{
		{"isolate", func(s Settings) Settings { return s.WithIsolated(peer, app, true) }, false, true},
		{"isolate twice", func(s Settings) Settings { return s.WithIsolated(peer, app, true) }, false, true},
		{"trust ends isolation", func(s Settings) Settings { return s.WithTrusted(peer, app, true) }, true, false},
		{"isolation ends trust", func(s Settings) Settings { return s.WithIsolated(peer, app, true) }, false, true},
		{"protected again", func(s Settings) Settings { return s.WithIsolated(peer, app, false) }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s = tc.apply(s)
			if s.Trusts(peer, app) != tc.trusted || s.Isolates(peer, app) != tc.isolated {
				t.Fatalf("trusted %v isolated %v, want %v %v (%+v)", s.Trusts(peer, app), s.Isolates(peer, app), tc.trusted, tc.isolated, s)
			}
			if s.Isolates(peer, "xeyes") || s.Isolates("SHA256:other", app) {
				t.Fatal("another app or peer is isolated too")
			}
			if n := len(s.IsolatedDisplay); n > 1 {
				t.Fatalf("%d entries: %v", n, s.IsolatedDisplay)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "settings.json")
	if err := Save(p, s.WithIsolated(peer, app, true)); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p, Defaults("alice", "laptop"))
	if err != nil || !got.Isolates(peer, app) {
		t.Fatalf("after save and load: isolated %v, err %v", got.Isolates(peer, app), err)
	}
}
