package ui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/ebrainpool/ebrainpool/app/config"
)

// The control port in Settings: empty is the default, another is saved
// (applying from the next start, as the status says), a bad one is
// refused.
func TestSettingsControlPort(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       int // saved ControlPort; -1: refused
		status     string
	}{
		{"the default", "", 0, "Settings saved."},
		{"the default typed", "42331", 0, "Settings saved."},
		{"another port", "7000", 7000, "Peers reach you on port 7000 once eBrainPool starts again"},
		{"not a number", "lots", -1, "The port must be a number from 1 to 65535"},
		{"too large", "70000", -1, "The port must be a number from 1 to 65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			u := newTestUI(t, f, nil)
			u.ShowSettings()
			if u.settings.port.Text != "" || !strings.Contains(u.settings.port.PlaceHolder, "42331") {
				t.Fatalf("port field %q (placeholder %q), want empty with the default shown", u.settings.port.Text, u.settings.port.PlaceHolder)
			}
			u.settings.port.SetText(tc.text)
			test.Tap(findButton(u.settings.win.Content(), "Save"))
			if tc.want < 0 {
				if f.saved != 0 || !strings.Contains(u.settings.status.Text, tc.status) {
					t.Fatalf("saved %d times, status %q", f.saved, u.settings.status.Text)
				}
				return
			}
			if f.saved != 1 || f.settings.ControlPort != tc.want || !strings.Contains(u.settings.status.Text, tc.status) {
				t.Fatalf("saved %d times, port %d, status %q", f.saved, f.settings.ControlPort, u.settings.status.Text)
			}
			if f.settings.ControlPortOrDefault() != map[bool]int{true: config.DefaultControlPort, false: tc.want}[tc.want == 0] {
				t.Fatalf("port in effect %d", f.settings.ControlPortOrDefault())
			}
		})
	}
}

// The browse domains in Settings: shown, saved as a list, a bad one
// refused.
func TestSettingsBrowseDomains(t *testing.T) {
	f := newFake()
	f.settings.BrowseDomains = []string{"office.example.org"}
	u := newTestUI(t, f, nil)
	u.ShowSettings()
	if u.settings.domains.Text != "office.example.org" {
		t.Fatalf("domains field %q", u.settings.domains.Text)
	}
	u.settings.domains.SetText("office.example.org, lab.example.org")
	test.Tap(findButton(u.settings.win.Content(), "Save"))
	if f.saved != 1 || strings.Join(f.settings.BrowseDomains, " ") != "office.example.org lab.example.org" {
		t.Fatalf("saved %d times: %v (status %q)", f.saved, f.settings.BrowseDomains, u.settings.status.Text)
	}
	u.settings.domains.SetText("local")
	test.Tap(findButton(u.settings.win.Content(), "Save"))
	if f.saved != 1 || !strings.Contains(u.settings.status.Text, "always browsed") {
		t.Fatalf("local as a domain: saved %d times, status %q", f.saved, u.settings.status.Text)
	}
}
