package config

import (
	"os"
	"path/filepath"
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
	if err != nil || s != def {
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
	if err != nil || got != s {
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
