package ui

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

func TestSettingsSave(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(s *settingsView)
		wantErr string
		check   func(t *testing.T, st config.Settings)
		status  string // after a save
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
		}, "The new limits apply to sandboxes started from now on"},
		{"name only", func(s *settingsView) { s.name.SetText("Ann") }, "", func(t *testing.T, st config.Settings) {
			if st.DisplayName != "Ann" {
				t.Errorf("saved name %q", st.DisplayName)
			}
		}, "Settings saved."},
		{"empty name", func(s *settingsView) { s.name.SetText("  ") }, "name cannot be empty", nil, ""},
		{"disk per peer", func(s *settingsView) { s.disk.SetText("512") }, "", func(t *testing.T, st config.Settings) {
			if st.DiskMB != 512 {
				t.Errorf("saved disk %d MB, want 512", st.DiskMB)
			}
		}, "A home made larger before keeps its size until the sandbox is reset."},
		{"disk too small", func(s *settingsView) { s.disk.SetText("32") }, "the disk per peer must be at least 64 MB", nil, ""},
		{"bad memory", func(s *settingsView) { s.memory.SetText("lots") }, `memory must be a positive whole number, not "lots"`, nil, ""},
		{"bad cpus", func(s *settingsView) { s.cpus.SetText("-1") }, "CPUs must be a positive number", nil, ""},
		{"bad idle", func(s *settingsView) { s.idle.SetText("soon") }, "idle stop must be a duration", nil, ""},
		{"short timeout", func(s *settingsView) { s.timeout.SetText("1s") }, "at least 5s", nil, ""},
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
			if !strings.Contains(u.settings.status.Text, tc.status) {
				t.Errorf("status %q, want %q", u.settings.status.Text, tc.status)
			}
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

// Where this host cannot share, the sharing check is disabled (still
// showing the setting), the hint names the cause, and "Set up sharing…"
// is offered only where the one-time setup is what is missing.
func TestSettingsWhenSharingIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sbErr     error
		canSetUp  bool
		wantHint  string
		wantSetup bool
	}{
		{"available", nil, false, "", false},
		{"setup missing", fmt.Errorf("%w: /var/lib/ebrainpool/me is missing\n  fix: run `sudo ebrainpool setup --user me` once", sandbox.ErrNotSetUp), true,
			"Not available: eBrainPool's one-time setup has not been done for this user: /var/lib/ebrainpool/me is missing\n  fix: run `sudo ebrainpool setup --user me` once.", true},
		{"cannot limit sandboxes", fmt.Errorf("%w: no systemd user manager runs for me", sandbox.ErrNoLimits), false,
			"Not available: this host cannot limit sandboxes: no systemd user manager runs for me.", false},
		{"flatpak", daemon.ErrFlatpak, false, "Not available: " + strings.TrimSuffix(daemon.ErrFlatpak.Error(), ".") + ".", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.sbErr, f.canSetUp = tc.sbErr, tc.canSetUp
			u := newTestUI(t, f, nil)
			s := newSettingsView(u)
			if s.sharing.Disabled() != (tc.sbErr != nil) || !s.sharing.Checked {
				t.Errorf("sharing check: disabled %v checked %v, want disabled %v and still showing the setting", s.sharing.Disabled(), s.sharing.Checked, tc.sbErr != nil)
			}
			if got := strings.Join(strings.Fields(s.sharingHint.Text), " "); got != strings.Join(strings.Fields(tc.wantHint), " ") || s.sharingHint.Visible() != (tc.wantHint != "") {
				t.Errorf("hint under Sharing = %q (visible %v), want %q", got, s.sharingHint.Visible(), tc.wantHint)
			}
			if s.setup.Visible() != tc.wantSetup || s.setup.Disabled() {
				t.Errorf("%q: visible %v disabled %v, want visible %v and enabled", s.setup.Text, s.setup.Visible(), s.setup.Disabled(), tc.wantSetup)
			}
			if got := findButton(s.sharingItem.Widget, "Set up sharing…"); got != s.setup {
				t.Errorf("the setup button is not under Sharing")
			}
			// Saving other settings keeps the sharing setting as it was.
			s.name.SetText("me too")
			if _, err := s.save(); err != nil {
				t.Fatal(err)
			}
			if !f.settings.Sharing || f.settings.DisplayName != "me too" {
				t.Errorf("saved %+v", f.settings)
			}
		})
	}
}

// "Set up sharing…" runs the setup; while it runs the status says so and
// neither the button nor the tray can start it again; afterwards the
// sharing check, the hint, the button and the tray show the outcome.
func TestSettingsSetUpSharing(t *testing.T) {
	notSetUp := fmt.Errorf("%w: /var/lib/ebrainpool/me is missing", sandbox.ErrNotSetUp)
	noLimits := fmt.Errorf("%w: systemd does not delegate the cpu controller(s) to user@1000.service", sandbox.ErrNoLimits)
	for _, tc := range []struct {
		name    string
		sharing bool  // the setting
		err     error // SetUpSharing's
		// newCause, if set, is why sharing is unavailable after a
		// setup that did not help (setup would not fix that one).
		newCause   error
		wantStatus string
		wantShared bool
	}{
		{"success", true, nil, nil, "Sharing is set up: peers can now ask for the apps you share (see Shared apps).", true},
		{"success, sharing off", false, nil, nil, `Sharing is set up: check "Share my apps on the network" and Save to share your apps.`, true},
		{"cancelled", true, daemon.ErrSetupCancelled, nil, "Could not set up sharing: setup was cancelled or not authorized.", false},
		{"setup failed", true, errors.New("the setup failed: no subordinate ids left in /etc/subuid"), nil,
			"Could not set up sharing: the setup failed: no subordinate ids left in /etc/subuid.", false},
		{"another cause after setup", true, fmt.Errorf("the setup finished, but sharing is still not available: %w", noLimits), noLimits,
			"Could not set up sharing: the setup finished, but sharing is still not available: this host cannot limit sandboxes: systemd does not delegate the cpu controller(s) to user@1000.service.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.settings.Sharing = tc.sharing
			f.sbErr, f.canSetUp, f.setUpErr = notSetUp, true, tc.err
			u := newTestUI(t, f, nil)
			u.tray.install()
			u.ShowSettings()
			s := u.settings
			var during []string
			f.onSetUp = func() {
				during = []string{s.status.Text, fmt.Sprint(s.setup.Disabled()), sharingItem(u.tray.menu()).Label, fmt.Sprint(sharingItem(u.tray.menu()).Disabled)}
				s.setUp() // a second click, or the tray's item: ignored
				if tc.newCause != nil {
					f.sbErr, f.canSetUp = tc.newCause, false
				}
			}
			test.Tap(s.setup)
			if want := []string{"Asking for permission to set up sharing…", "true", "Setting up sharing…", "true"}; !reflect.DeepEqual(during, want) {
				t.Errorf("while the setup ran: status, button disabled, tray item, its disabled = %q, want %q", during, want)
			}
			if f.setUps != 1 {
				t.Errorf("SetUpSharing called %d times, want 1", f.setUps)
			}
			if s.status.Text != tc.wantStatus {
				t.Errorf("status %q, want %q", s.status.Text, tc.wantStatus)
			}
			wantImp := widget.SuccessImportance
			if tc.err != nil {
				wantImp = widget.DangerImportance
			}
			if s.status.Importance != wantImp {
				t.Errorf("status importance %v, want %v", s.status.Importance, wantImp)
			}
			f.drain(u) // sharing-changed, after a success
			item := sharingItem(u.tray.menu())
			switch {
			case tc.wantShared:
				if s.sharing.Disabled() || s.sharingHint.Visible() || s.setup.Visible() {
					t.Errorf("after setup: sharing check disabled %v, hint %q (visible %v), setup button visible %v",
						s.sharing.Disabled(), s.sharingHint.Text, s.sharingHint.Visible(), s.setup.Visible())
				}
				if item.Label != "Share my apps" || item.Checked != tc.sharing || item.Action == nil || u.tray.toggle != item {
					t.Errorf("tray item after setup %+v, want the sharing toggle", item)
				}
				// The check now changes the setting.
				test.Tap(s.sharing)
				test.Tap(findButton(s.win.Content(), "Save"))
				if f.settings.Sharing == tc.sharing {
					t.Errorf("sharing setting %v after toggling it in Settings", f.settings.Sharing)
				}
			case tc.newCause != nil:
				if !s.sharing.Disabled() || s.setup.Visible() || !strings.Contains(s.sharingHint.Text, "cannot limit sandboxes") {
					t.Errorf("after a setup that did not help: check disabled %v, setup button visible %v, hint %q", s.sharing.Disabled(), s.setup.Visible(), s.sharingHint.Text)
				}
				if item.Label != "Sharing unavailable (see Settings)" || !item.Disabled {
					t.Errorf("tray item %+v", item)
				}
			default:
				if !s.sharing.Disabled() || !s.setup.Visible() || s.setup.Disabled() || !strings.Contains(s.sharingHint.Text, "one-time setup has not been done") {
					t.Errorf("after a failed setup: check disabled %v, setup button visible %v disabled %v, hint %q",
						s.sharing.Disabled(), s.setup.Visible(), s.setup.Disabled(), s.sharingHint.Text)
				}
				if item.Label != "Set up sharing…" || item.Disabled {
					t.Errorf("tray item %+v, want \"Set up sharing…\" again", item)
				}
			}
		})
	}
}

// Sharing that becomes available elsewhere (the setup run from the command
// line through the D-Bus API, say) shows in an open Settings window.
func TestSettingsFollowSharingChanged(t *testing.T) {
	f := newFake()
	f.sbErr, f.canSetUp = fmt.Errorf("%w: /var/lib/ebrainpool/me is missing", sandbox.ErrNotSetUp), true
	u := newTestUI(t, f, nil)
	u.ShowSettings()
	s := u.settings
	if !s.sharing.Disabled() || !s.setup.Visible() {
		t.Fatalf("before: check disabled %v, setup button visible %v", s.sharing.Disabled(), s.setup.Visible())
	}
	f.sbErr, f.canSetUp = nil, false
	f.events <- daemon.Event{Kind: daemon.EventSharingChanged}
	f.drain(u)
	if s.sharing.Disabled() || s.setup.Visible() || s.sharingHint.Visible() {
		t.Errorf("after sharing-changed: check disabled %v, setup button visible %v, hint %q", s.sharing.Disabled(), s.setup.Visible(), s.sharingHint.Text)
	}
	if item := sharingItem(u.tray.menu()); item != u.tray.toggle || item.Label != "Share my apps" || u.tray.iconState() != traySharing {
		t.Errorf("tray: sharing item %+v (toggle %v), icon %s", item, u.tray.toggle, u.tray.iconState())
	}
}

func TestWrapText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 10, ""},
		{"short", 10, "short"},
		{"one two three four", 9, "one two\nthree\nfour"},
		{"a verylongwordindeed b", 5, "a\nverylongwordindeed\nb"},
		{"first line\n  fix: run `sudo x`", 12, "first line\nfix: run\n`sudo x`"},
	} {
		if got := wrapText(tc.in, tc.n); got != tc.want {
			t.Errorf("wrapText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
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

// With nothing focused, Shift+Tab goes to Save and then to "Start
// eBrainPool when I log in", the General tab's last field, however many
// fields come before it (the Flatpak test ticks it so on a real display).
func TestSettingsKeyboardReachesLogin(t *testing.T) {
	f := newFake()
	f.sbErr = daemon.ErrFlatpak // as in the Flatpak: sharing disabled
	u := newTestUI(t, f, nil)
	s := newSettingsView(u)
	s.win.Show()
	c := s.win.Canvas()
	c.FocusPrevious()
	c.FocusPrevious()
	if got := c.Focused(); got != s.autostart {
		t.Fatalf("Shift+Tab twice focuses %T %v, want the login check", got, got)
	}
}
