package daemon

import (
	"os"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// TestDisplayMode: the display mode chosen for an app of a peer is kept
// in the settings and is what a launch uses; on a display with the
// SECURITY extension an app without a choice is protected (without it,
// isolated: internal/e2e's Wayland test); an unknown mode is refused.
func TestDisplayMode(t *testing.T) {
	testenv.RequireTools(t, "Xvfb")
	x := testenv.StartXvfb(t, os.Getuid(), os.Getgid())
	d := newTestDaemon(t, Options{Display: x.Display, XAuthority: x.XAuthority})
	bob := fp(t)
	d.mu.Lock()
	d.manual[bob] = discovery.Peer{Fingerprint: bob, Name: "Bob", Host: "bob.local", Port: 4000}
	d.mu.Unlock()
	for _, tc := range []struct {
		name string
		set  dbusapi.DisplayMode // "": none
		want dbusapi.DisplayMode
	}{
		{"default", "", dbusapi.DisplayProtected},
		{"isolated", dbusapi.DisplayIsolated, dbusapi.DisplayIsolated},
		{"trusted after isolated", dbusapi.DisplayTrusted, dbusapi.DisplayTrusted},
		{"isolated after trusted", dbusapi.DisplayIsolated, dbusapi.DisplayIsolated},
		{"protected again", dbusapi.DisplayProtected, dbusapi.DisplayProtected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set != "" {
				if err := d.SetDisplayMode("bob", "xlogo", tc.set); err != nil {
					t.Fatal(err)
				}
			}
			got, err := d.DisplayMode("bob", "xlogo")
			if err != nil || got != tc.want {
				t.Fatalf("DisplayMode = %q, %v; want %q", got, err, tc.want)
			}
			s := d.Settings()
			if s.Trusts(string(bob), "xlogo") != (tc.want == dbusapi.DisplayTrusted) || s.Isolates(string(bob), "xlogo") != (tc.want == dbusapi.DisplayIsolated) {
				t.Fatalf("settings: trusted %v isolated %v, want %q", s.TrustedDisplay, s.IsolatedDisplay, tc.want)
			}
			if m, _ := d.DisplayMode("bob", "xeyes"); m != dbusapi.DisplayProtected {
				t.Fatalf("another app of bob: %q", m)
			}
		})
	}
	if err := d.SetDisplayMode("bob", "xlogo", "shared"); err == nil {
		t.Error("an unknown mode was accepted")
	}
}
