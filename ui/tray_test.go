package ui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/systray"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

func labels(m *fyne.Menu) []string {
	var out []string
	for _, i := range m.Items {
		if i.IsSeparator {
			out = append(out, "---")
			continue
		}
		out = append(out, i.Label)
	}
	return out
}

func TestTrayMenu(t *testing.T) {
	f := newFake()
	alice, eve := peer("alice", "alice-desk", "verified"), peer("eve", "eve-pc", "changed")
	f.peers = []dbusapi.Peer{alice, eve}
	f.apps[alice.Fingerprint] = []dbusapi.App{{ID: "org.gimp.GIMP", Name: "GIMP"}, {ID: "xterm", Name: "XTerm"}}
	u := newTestUI(t, f, nil)
	u.tray.install()
	m := u.tray.menu()
	want := []string{"alice (alice-desk)", "⚠ eve (eve-pc): KEY CHANGED", "---", "Open peer browser", "Sessions", "Share my apps", "Settings", "---", "Quit"}
	if got := labels(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("menu = %q\nwant %q", got, want)
	}
	if got := labels(m.Items[0].ChildMenu); !reflect.DeepEqual(got, []string{"GIMP", "XTerm", "---", "Show in peer browser"}) {
		t.Errorf("alice's submenu = %q", got)
	}
	if sub := m.Items[1].ChildMenu.Items[0]; !sub.Disabled || !strings.Contains(sub.Label, "key changed") {
		t.Errorf("eve's submenu starts with %q (disabled %v)", sub.Label, sub.Disabled)
	}
	if !m.Items[len(m.Items)-1].IsQuit {
		t.Error("Quit is not marked IsQuit")
	}

	t.Run("launch from the menu", func(t *testing.T) {
		m.Items[0].ChildMenu.Items[1].Action()
		if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/xterm"}) {
			t.Errorf("launched = %v", f.launched)
		}
	})
	t.Run("sharing toggle", func(t *testing.T) {
		sharing := m.Items[5]
		if !sharing.Checked {
			t.Fatal("sharing item not checked while sharing")
		}
		sharing.Action()
		if f.settings.Sharing || f.saved != 1 {
			t.Errorf("sharing = %v after toggling off (saved %d)", f.settings.Sharing, f.saved)
		}
		if u.tray.menu().Items[5].Checked {
			t.Error("menu still shows sharing on")
		}
	})
	t.Run("peer without apps and unreachable peer", func(t *testing.T) {
		bob, dan := peer("bob", "bob-pc", "new"), peer("dan", "dan-pc", "new")
		f.appsErr[dan.Fingerprint] = os.ErrDeadlineExceeded
		f.addPeer(bob)
		f.addPeer(dan)
		f.drain(u)
		m := u.tray.menu()
		for _, tc := range []struct {
			item int
			want string
		}{{1, "Shares no apps"}, {2, "Could not reach it"}} {
			if got := m.Items[tc.item].ChildMenu.Items[0].Label; got != tc.want {
				t.Errorf("item %d: %q, want %q", tc.item, got, tc.want)
			}
		}
	})
}

// sharingItem is the tray menu's sharing item (the toggle, or what
// stands in for it).
func sharingItem(m *fyne.Menu) *fyne.MenuItem {
	for _, i := range m.Items {
		if strings.Contains(i.Label, "Shar") || strings.Contains(i.Label, "shar") {
			return i
		}
	}
	return nil
}

// A host that cannot share at all shows the off icon and no sharing
// toggle, whatever the setting says: "Set up sharing…" where the one-time
// setup is what is missing, else a disabled item pointing to Settings.
func TestTrayWhenSharingIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sbErr    error
		canSetUp bool
		want     string
		enabled  bool
	}{
		{"flatpak", daemon.ErrFlatpak, false, "Sharing unavailable (see Settings)", false},
		{"cannot limit sandboxes", fmt.Errorf("%w: no systemd user manager runs for me", sandbox.ErrNoLimits), false, "Sharing unavailable (see Settings)", false},
		{"liblxc failed", errors.New("liblxc failed"), false, "Sharing unavailable (see Settings)", false},
		{"setup missing", fmt.Errorf("%w: /var/lib/ebrainpool/me is missing", sandbox.ErrNotSetUp), true, "Set up sharing…", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.sbErr, f.canSetUp = tc.sbErr, tc.canSetUp
			u := newTestUI(t, f, nil)
			u.tray.install()
			if got := u.tray.iconState(); got != trayOff {
				t.Errorf("icon %s while sharing is on but unavailable, want %s", got, trayOff)
			}
			item := sharingItem(u.tray.menu())
			if item == nil || item.Label != tc.want || item.Disabled == tc.enabled || (item.Action != nil) != tc.enabled || item.Checked || u.tray.toggle != nil {
				t.Fatalf("sharing item %+v (toggle %v), want %q enabled %v", item, u.tray.toggle, tc.want, tc.enabled)
			}
			f.sessions = []dbusapi.Session{{ID: "s", Direction: "outgoing"}}
			if got := u.tray.iconState(); got != trayActive {
				t.Errorf("icon %s with a session running, want %s", got, trayActive)
			}
		})
	}
}

// shapeOf is the menu as systemTray would have published it, for
// sameShape (no D-Bus involved).
func shapeOf(m *fyne.Menu, toggle func(*fyne.MenuItem) bool) []*shownItem {
	var out []*shownItem
	for _, i := range m.Items {
		if i.IsSeparator {
			out = append(out, &shownItem{})
			continue
		}
		si := &shownItem{item: &systray.MenuItem{}, checkbox: i.Checked || toggle(i), title: i.Label}
		if i.ChildMenu != nil {
			si.children = shapeOf(i.ChildMenu, toggle)
		}
		out = append(out, si)
	}
	return out
}

// "Set up sharing…" in the tray opens Settings and runs the setup there;
// the item says so while it runs (in place: the same shape) and becomes
// the sharing toggle after (a new shape: a checkbox).
func TestTraySetUpSharing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		after  string
		status string
	}{
		{"success", nil, "Share my apps", "Sharing is set up: peers can now ask for the apps you share (see Shared apps)."},
		{"cancelled", daemon.ErrSetupCancelled, "Set up sharing…", "Could not set up sharing: setup was cancelled or not authorized."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.sbErr, f.canSetUp, f.setUpErr = fmt.Errorf("%w: /var/lib/ebrainpool/me is missing", sandbox.ErrNotSetUp), true, tc.err
			u := newTestUI(t, f, nil)
			h := &countingHost{}
			u.tray.host = h
			u.tray.install()
			toggle := func(i *fyne.MenuItem) bool { return i == u.tray.toggle }
			before := u.tray.menu()
			var during *fyne.Menu
			var status string
			var shown bool
			f.onSetUp = func() {
				during = u.tray.menu()
				status = u.settings.status.Text
				shown = u.shown[u.settings.win]
			}
			item := sharingItem(before)
			if item == nil || item.Label != "Set up sharing…" || item.Action == nil {
				t.Fatalf("sharing item %+v, want \"Set up sharing…\" with an action", item)
			}
			menus := h.menus
			item.Action()
			if f.setUps != 1 || !shown || status != "Asking for permission to set up sharing…" {
				t.Fatalf("setup calls %d, Settings shown %v, its status %q while the setup ran", f.setUps, shown, status)
			}
			if it := sharingItem(during); it.Label != "Setting up sharing…" || !it.Disabled {
				t.Errorf("tray item while the setup ran: %+v", it)
			}
			if !sameShape(shapeOf(before, toggle), during, toggle) {
				t.Error("the menu while the setup runs is not updated in place")
			}
			f.drain(u)
			after := u.tray.menu()
			if it := sharingItem(after); it.Label != tc.after {
				t.Errorf("tray item after the setup: %q, want %q", it.Label, tc.after)
			}
			if got := u.settings.status.Text; got != tc.status {
				t.Errorf("Settings status %q, want %q", got, tc.status)
			}
			// Sent: the "Setting up sharing…" menu and the one after.
			if h.menus != menus+2 {
				t.Errorf("the tray host got %d menus during the setup, want 2", h.menus-menus)
			}
			if same := sameShape(shapeOf(before, toggle), after, toggle); same != (tc.err != nil) {
				t.Errorf("menu after the setup has the shape of the one before: %v, want %v", same, tc.err != nil)
			}
			if tc.err == nil && u.tray.iconState() != traySharing {
				t.Errorf("icon %s after the setup, want %s", u.tray.iconState(), traySharing)
			}
		})
	}
}

func TestTrayIconState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sharing  bool
		sessions []dbusapi.Session
		want     string
	}{
		{"off", false, nil, trayOff},
		{"sharing", true, nil, traySharing},
		{"session while not sharing", false, []dbusapi.Session{{ID: "s", Direction: "outgoing"}}, trayActive},
		{"session while sharing", true, []dbusapi.Session{{ID: "s", Direction: "incoming"}}, trayActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.settings.Sharing = tc.sharing
			f.sessions = tc.sessions
			u := newTestUI(t, f, nil)
			if got := u.tray.iconState(); got != tc.want {
				t.Errorf("icon %s, want %s", got, tc.want)
			}
			if r := trayIcon(tc.want); len(r.Content()) == 0 {
				t.Error("empty icon")
			}
		})
	}
}

// The embedded tray icons are copies of assets/tray.
func TestTrayIconsMatchAssets(t *testing.T) {
	for _, state := range []string{trayOff, traySharing, trayActive} {
		t.Run(state, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("..", "assets", "tray", state+".png"))
			if err != nil {
				t.Fatal(err)
			}
			if got := trayIcon(state).Content(); !bytes.Equal(got, want) {
				t.Errorf("ui/trayicons/%s.png differs from assets/tray/%s.png: copy it over", state, state)
			}
		})
	}
}

// countingHost is a tray host that counts what it is sent.
type countingHost struct{ icons, menus int }

func (h *countingHost) SetIcon(fyne.Resource) { h.icons++ }
func (h *countingHost) SetMenu(*fyne.Menu)    { h.menus++ }

// The host is sent a menu only when it changed: each one gets new item ids,
// and a click the tray host sends for an item of the previous menu is lost
// (seen in the xfce4-panel test: a launch ending rebuilt the same menu twice).
func TestTrayMenuSentOnlyWhenChanged(t *testing.T) {
	f := newFake()
	alice := peer("alice", "alice-desk", "verified")
	f.peers = []dbusapi.Peer{alice}
	f.apps[alice.Fingerprint] = []dbusapi.App{{ID: "xterm", Name: "XTerm"}}
	u := newTestUI(t, f, nil)
	h := &countingHost{}
	u.tray.host = h
	u.tray.install()
	for _, tc := range []struct {
		name         string
		do           func()
		icons, menus int
	}{
		{"installed", func() {}, 1, 1},
		{"unchanged", func() { u.tray.update(); u.refreshSessions(); u.launchesChanged() }, 1, 1},
		{"sharing off", func() { u.setSharing(false) }, 2, 2},
		{"an app more", func() {
			u.tray.setApps(alice.Fingerprint, []dbusapi.App{{ID: "xterm", Name: "XTerm"}, {ID: "gimp", Name: "GIMP"}}, nil)
		}, 2, 3},
		{"same apps again", func() {
			u.tray.setApps(alice.Fingerprint, []dbusapi.App{{ID: "xterm", Name: "XTerm"}, {ID: "gimp", Name: "GIMP"}}, nil)
		}, 2, 3},
		{"tray host restarted", func() { u.tray.reset() }, 3, 4},
	} {
		tc.do()
		if h.icons != tc.icons || h.menus != tc.menus {
			t.Errorf("%s: host got %d icons and %d menus, want %d and %d", tc.name, h.icons, h.menus, tc.icons, tc.menus)
		}
	}
}
