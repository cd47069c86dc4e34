package ui

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"fyne.io/fyne/v2"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
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

// A host that cannot share at all (setup missing, or the Flatpak) shows
// the off icon and no sharing toggle, whatever the setting says.
func TestTrayWhenSharingIsUnavailable(t *testing.T) {
	f := newFake()
	f.sbErr = errors.New("the Flatpak cannot create the LXC sandboxes apps are shared in")
	u := newTestUI(t, f, nil)
	u.tray.install()
	if got := u.tray.iconState(); got != trayOff {
		t.Errorf("icon %s while sharing is on but unavailable, want %s", got, trayOff)
	}
	m := u.tray.menu()
	var item *fyne.MenuItem
	for _, i := range m.Items {
		if strings.HasPrefix(i.Label, "Shar") {
			item = i
		}
	}
	if item == nil || item.Label != "Sharing unavailable (see Settings)" || !item.Disabled || item.Checked || u.tray.toggle != nil {
		t.Fatalf("sharing item %+v (toggle %v), want a disabled \"Sharing unavailable (see Settings)\"", item, u.tray.toggle)
	}
	f.sessions = []dbusapi.Session{{ID: "s", Direction: "outgoing"}}
	if got := u.tray.iconState(); got != trayActive {
		t.Errorf("icon %s with a session running, want %s", got, trayActive)
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
