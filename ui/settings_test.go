package ui

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

func TestSettingsSave(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(s *settingsView)
		wantErr string
		check   func(t *testing.T, st config.Settings)
	}{
		{"limits and durations", func(s *settingsView) {
			s.name.SetText(" Ann ")
			s.memory.SetText("512")
			s.cpus.SetText("1.5")
			s.pids.SetText("200")
			s.idle.SetText("5m")
			s.timeout.SetText("45s")
			s.sharing.SetChecked(false)
		}, "", func(t *testing.T, st config.Settings) {
			want := config.Settings{DisplayName: "Ann", Sharing: false, MemoryMB: 512, CPUs: 1.5, Pids: 200,
				IdleStop: config.Duration(5 * time.Minute), ConsentTimeout: config.Duration(45 * time.Second)}
			if !reflect.DeepEqual(st, want) {
				t.Errorf("saved %+v, want %+v", st, want)
			}
		}},
		{"empty name", func(s *settingsView) { s.name.SetText("  ") }, "name cannot be empty", nil},
		{"bad memory", func(s *settingsView) { s.memory.SetText("lots") }, `memory must be a positive whole number, not "lots"`, nil},
		{"bad cpus", func(s *settingsView) { s.cpus.SetText("-1") }, "CPUs must be a positive number", nil},
		{"bad idle", func(s *settingsView) { s.idle.SetText("soon") }, "idle stop must be a duration", nil},
		{"short timeout", func(s *settingsView) { s.timeout.SetText("1s") }, "at least 5s", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			u := newTestUI(t, f, nil)
			u.ShowSettings()
			tc.edit(u.settings)
			test.Tap(findButton(u.settings.win.Content(), "Save"))
			if tc.wantErr != "" {
				if f.saved != 0 || !strings.Contains(strings.ToLower(u.settings.status.Text), strings.ToLower(tc.wantErr)) {
					t.Errorf("saved %d times, status %q, want error %q", f.saved, u.settings.status.Text, tc.wantErr)
				}
				return
			}
			if f.saved != 1 {
				t.Fatalf("saved %d times (status %q)", f.saved, u.settings.status.Text)
			}
			tc.check(t, f.settings)
		})
	}
}

func TestSettingsSharedAppsAndPeers(t *testing.T) {
	f := newFake()
	f.local = []catalog.App{{ID: "org.gimp.GIMP", Name: "GIMP"}, {ID: "org.inkscape.Inkscape", Name: "Inkscape"}}
	f.sharing = catalog.Sharing{Apps: []string{"org.gimp.GIMP"}}
	f.pins = []identity.Pin{{Fingerprint: "SHA256:bob", Name: "bob"}}
	f.blocked = map[string]string{"SHA256:eve": "eve"}
	u := newTestUI(t, f, nil)
	u.ShowSettings()
	s := u.settings

	checks := map[string]bool{}
	for _, o := range s.apps.Objects[1:] {
		for _, c := range texts(o) {
			checks[c] = true
		}
	}
	if !checks["GIMP"] || !checks["Inkscape"] {
		t.Fatalf("shared apps list = %v", texts(s.apps))
	}
	t.Run("share", func(t *testing.T) {
		var inkscape = findCheck(s.apps, "Inkscape")
		if inkscape.Checked || !findCheck(s.apps, "GIMP").Checked {
			t.Fatal("checkboxes do not reflect the sharing choice")
		}
		test.Tap(inkscape)
		test.Tap(findCheck(s.apps, "GIMP"))
		if !f.sharing.Shared("org.inkscape.Inkscape") || f.sharing.Shared("org.gimp.GIMP") {
			t.Errorf("sharing after toggling = %+v", f.sharing)
		}
	})
	t.Run("forget", func(t *testing.T) {
		test.Tap(findButton(s.known, "Forget"))
		if !reflect.DeepEqual(f.forgotten, []identity.Fingerprint{"SHA256:bob"}) {
			t.Errorf("forgotten = %v", f.forgotten)
		}
		if !strings.Contains(joined(s.known), "You have not met any peer yet.") {
			t.Errorf("known after forget = %q", joined(s.known))
		}
	})
	t.Run("unblock", func(t *testing.T) {
		if !strings.Contains(joined(s.blocked), "eve") {
			t.Fatalf("blocked = %q", joined(s.blocked))
		}
		test.Tap(findButton(s.blocked, "Unblock"))
		if len(f.blocked) != 0 || !strings.Contains(joined(s.blocked), "Nobody is blocked.") {
			t.Errorf("blocked after unblock = %v, %q", f.blocked, joined(s.blocked))
		}
	})
	t.Run("start at login", func(t *testing.T) {
		path := u.opts.AutostartFile
		test.Tap(s.autostart)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("autostart entry not written: %v", err)
		}
		if !strings.Contains(string(b), "Exec=/usr/bin/ebrainpool gui --show none\n") || !strings.HasPrefix(string(b), "[Desktop Entry]\n") {
			t.Errorf("autostart entry:\n%s", b)
		}
		test.Tap(s.autostart)
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("autostart entry still there after unchecking: %v", err)
		}
	})
}

func TestSettingsWhenSharingIsUnavailable(t *testing.T) {
	f := newFake()
	f.sbErr = errors.New("this host cannot share apps yet: run `sudo ebrainpool setup --user me` once")
	u := newTestUI(t, f, nil)
	s := newSettingsView(u)
	if !s.sharing.Disabled() || !s.sharing.Checked {
		t.Errorf("sharing check: disabled %v checked %v, want disabled and still showing the setting", s.sharing.Disabled(), s.sharing.Checked)
	}
	hint := s.sharingItem.HintText
	if want := "Not available: this host cannot share apps yet: run `sudo ebrainpool setup --user me` once."; hint != want {
		t.Errorf("hint under Sharing = %q, want %q", hint, want)
	}
	// Saving other settings keeps the sharing setting as it was.
	s.name.SetText("me too")
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if !f.settings.Sharing || f.settings.DisplayName != "me too" {
		t.Errorf("saved %+v", f.settings)
	}
}

func TestAutostartEntryQuotesExec(t *testing.T) {
	for _, tc := range []struct {
		name string
		exec []string
		want string
	}{
		{"installed", []string{"/usr/bin/ebrainpool"}, "Exec=/usr/bin/ebrainpool gui --show none\n"},
		{"space in path", []string{"/opt/my apps/ebrainpool"}, `Exec="/opt/my apps/ebrainpool" gui --show none` + "\n"},
		{"quote and dollar", []string{`/opt/a"b$c/ebrainpool`}, `Exec="/opt/a\\"b\\$c/ebrainpool" gui --show none` + "\n"},
		{"flatpak", []string{"flatpak", "run", "io.github.ebrainpool.EBrainPool"}, "Exec=flatpak run io.github.ebrainpool.EBrainPool gui --show none\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := autostartEntry(tc.exec); !strings.Contains(got, tc.want) {
				t.Errorf("entry:\n%s\nwant %q", got, tc.want)
			}
		})
	}
}
