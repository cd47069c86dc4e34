package daemon

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// displayDaemon is a daemon on an Xvfb (which has SECURITY) that knows
// the peer Bob (added by address).
func displayDaemon(t *testing.T) (*Daemon, identity.Fingerprint) {
	t.Helper()
	testenv.RequireTools(t, "Xvfb")
	x := testenv.StartXvfb(t, os.Getuid(), os.Getgid())
	d := newTestDaemon(t, Options{Display: x.Display, XAuthority: x.XAuthority})
	bob := fp(t)
	d.mu.Lock()
	d.manual[bob] = discovery.Peer{Fingerprint: bob, Name: "Bob", Host: "bob.local", Port: 4000}
	d.mu.Unlock()
	return d, bob
}

// TestDisplayMode: the display mode chosen for an app of a peer is kept
// in the settings and is what a launch uses; on a display with the
// SECURITY extension an app without a choice is protected (without it,
// isolated: internal/e2e's Wayland test); an unknown mode is refused.
func TestDisplayMode(t *testing.T) {
	d, bob := displayDaemon(t)
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

// TestDisplayModesList: through the session-bus API (a real dbus-daemon,
// the daemon exported on it, the CLI's client), the modes chosen for apps
// of a peer are listed with the peer's and the app's names, still while
// the peer is away (then by its short fingerprint), and one taken back
// with SetDisplayMode "protected" leaves the list and the settings.
func TestDisplayModesList(t *testing.T) {
	d, bob := displayDaemon(t)
	d.cats.keep(string(bob), []control.AppInfo{{ID: "org.x.Logo", Name: "X Logo"}}, time.Now())

	bus := testenv.PrivateBus(t)
	srv, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := dbusapi.Export(srv, d); err != nil {
		t.Fatal(err)
	}
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := dbusapi.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if l, err := c.DisplayModes(ctx); err != nil || len(l) != 0 {
		t.Fatalf("DisplayModes before any choice = %v, %v; want none", l, err)
	}
	events := d.Events(ctx)
	if err := c.SetDisplayMode(ctx, "bob", "org.x.Logo", dbusapi.DisplayIsolated); err != nil {
		t.Fatal(err)
	}
	// The views follow: the daemon says the modes changed.
	for ev := range events {
		if ev.Kind == EventDisplayModesChanged {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatal("no display-modes-changed event after SetDisplayMode")
	}
	if err := c.SetDisplayMode(ctx, "bob", "xeyes", dbusapi.DisplayTrusted); err != nil {
		t.Fatal(err)
	}
	want := []dbusapi.DisplayChoice{
		{Peer: string(bob), PeerName: "Bob", App: "org.x.Logo", AppName: "X Logo", Mode: dbusapi.DisplayIsolated},
		{Peer: string(bob), PeerName: "Bob", App: "xeyes", AppName: "xeyes", Mode: dbusapi.DisplayTrusted},
	}
	if l, err := c.DisplayModes(ctx); err != nil || !slices.Equal(l, want) {
		t.Fatalf("DisplayModes = %+v, %v; want %+v", l, err, want)
	}

	// Bob leaves: the choices stay listed, and one can be taken back.
	d.mu.Lock()
	delete(d.manual, bob)
	d.mu.Unlock()
	short := identity.Fingerprint(bob).Short()
	l, err := c.DisplayModes(ctx)
	if err != nil || len(l) != 2 || l[0].PeerName != short {
		t.Fatalf("DisplayModes with bob away = %+v, %v; want both, named %s", l, err, short)
	}
	if err := c.SetDisplayMode(ctx, short, "xeyes", dbusapi.DisplayProtected); err != nil {
		t.Fatalf("taking back a mode of a peer away: %v", err)
	}
	if m, err := c.DisplayMode(ctx, string(bob), "xeyes"); err != nil || m != dbusapi.DisplayProtected {
		t.Fatalf("DisplayMode after the reset = %q, %v", m, err)
	}
	l, err = c.DisplayModes(ctx)
	if err != nil || len(l) != 1 || l[0].App != "org.x.Logo" {
		t.Fatalf("DisplayModes after the reset = %+v, %v; want only org.x.Logo", l, err)
	}
	if d.Settings().Trusts(string(bob), "xeyes") {
		t.Fatal("the settings still trust xeyes")
	}
	if err := c.SetDisplayMode(ctx, "carol", "xeyes", dbusapi.DisplayTrusted); err == nil {
		t.Fatal("a mode for an unknown peer was accepted")
	}
}
