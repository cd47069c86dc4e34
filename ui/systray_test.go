package ui

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The tray item on a real session bus, read and clicked through
// com.canonical.dbusmenu as a tray host does. fyne.io/systray keeps one
// item per process, so one test walks through its life.
func TestSystemTray(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)

	ready := make(chan struct{})
	s := newSystemTray("eBrainPool test", func(f func()) { f() }, func() { close(ready) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the tray item never became ready")
	}
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	menu := conn.Object(trayName(t, conn), "/StatusNotifierMenu")

	var clicked atomic.Value
	clicked.Store("")
	item := func(label string) *fyne.MenuItem {
		return fyne.NewMenuItem(label, func() { clicked.Store(label) })
	}
	sessions := func(label string) *fyne.Menu {
		return fyne.NewMenu("", item("Open peer browser"), item(label), fyne.NewMenuItemSeparator(),
			&fyne.MenuItem{Label: "bob", ChildMenu: fyne.NewMenu("", item("X Logo"))}, item("Settings"))
	}
	s.SetIcon(trayIcon(traySharing))

	t.Run("a changed label keeps every item's id", func(t *testing.T) {
		s.SetMenu(sessions("Sessions"))
		before := testenv.ReadMenu(t, menu)
		// A session starts while the user has the menu open.
		s.SetMenu(sessions("Sessions (1 running)"))
		after := testenv.ReadMenu(t, menu)
		want := before
		want.Children = slices.Clone(before.Children)
		want.Children[1].Label = "Sessions (1 running)"
		if !reflect.DeepEqual(after, want) {
			t.Fatalf("menu after the label changed:\n%+v\nwant (the same ids):\n%+v", after, want)
		}
		// The tray host clicks "Settings" by the id it read before.
		click(t, menu, before, "Settings")
		waitClicked(t, &clicked, "Settings")
	})
	t.Run("a check mark and a disabled item change in place", func(t *testing.T) {
		toggle := &fyne.MenuItem{Label: "Share my apps"}
		s.toggle = func(i *fyne.MenuItem) bool { return i.Label == "Share my apps" }
		defer func() { s.toggle = func(*fyne.MenuItem) bool { return false } }()
		s.SetMenu(fyne.NewMenu("", toggle, item("Settings")))
		before := testenv.ReadMenu(t, menu)
		on := &fyne.MenuItem{Label: "Share my apps", Checked: true}
		off := item("Settings")
		off.Disabled = true
		s.SetMenu(fyne.NewMenu("", on, off))
		after := testenv.ReadMenu(t, menu)
		want := []testenv.MenuItem{
			{ID: before.Children[0].ID, Label: "[x] Share my apps", Enabled: true},
			{ID: before.Children[1].ID, Label: "Settings", Enabled: false},
		}
		if before.Children[0].Label != "[ ] Share my apps" || !reflect.DeepEqual(after.Children, want) {
			t.Fatalf("menu %+v, after ticking and disabling %+v, want %+v", before.Children, after.Children, want)
		}
	})
	t.Run("a changed shape rebuilds the menu", func(t *testing.T) {
		s.SetMenu(sessions("Sessions"))
		// A peer arrives: an item more.
		m := sessions("Sessions")
		m.Items = append([]*fyne.MenuItem{{Label: "carol", ChildMenu: fyne.NewMenu("", item("Calculator"))}}, m.Items...)
		s.SetMenu(m)
		after := testenv.ReadMenu(t, menu)
		if got, want := after.Labels(), []string{"carol", "Open peer browser", "Sessions", "---", "bob", "Settings"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("menu after a peer arrived: %q, want %q", got, want)
		}
		clicked.Store("")
		click(t, menu, after, "carol", "Calculator")
		waitClicked(t, &clicked, "Calculator")
	})

	t.Run("outlives the session bus", func(t *testing.T) {
		// The session bus going away under a running tray (the session
		// ends, or a Flatpak's bus proxy exits before the app) must not
		// crash the app: the library panics on its closed connection at
		// the next icon or menu update.
		bus.Kill()
		m := sessions("Sessions")
		// godbus notices the closed socket on its reader goroutine.
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; !s.gone.Load(); n++ {
			if time.Now().After(deadline) {
				t.Fatal("updates to a tray whose bus is gone did not mark it gone")
			}
			s.SetIcon(trayIcon(trayOff))
			m.Items[1].Label = fmt.Sprintf("Sessions (%d running)", n)
			s.SetMenu(m)
			time.Sleep(20 * time.Millisecond)
		}
		// Once gone, updates and close are skipped quietly.
		s.SetIcon(trayIcon(trayActive))
		s.SetMenu(m)
		s.close()
	})
}

// trayName is the bus name of the tray item: the one connection on the
// private bus but conn.
func trayName(t *testing.T, conn *dbus.Conn) string {
	t.Helper()
	var names []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, ":") && n != conn.Names()[0] {
			return n
		}
	}
	t.Fatalf("bus names %q: the tray's connection is missing", names)
	return ""
}

// click sends a click on the item at path in root, as a tray host does.
func click(t *testing.T, menu dbus.BusObject, root testenv.MenuItem, path ...string) {
	t.Helper()
	it, ok := root.Find(path...)
	if !ok {
		t.Fatalf("no %q in the menu %q", path, root.Labels())
	}
	if call := menu.Call("com.canonical.dbusmenu.Event", 0, it.ID, "clicked", dbus.MakeVariant(int32(0)), uint32(0)); call.Err != nil {
		t.Fatalf("clicking %q: %v", path, call.Err)
	}
}

func waitClicked(t *testing.T, clicked *atomic.Value, label string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clicked.Load() != label {
		if time.Now().After(deadline) {
			t.Fatalf("clicking %q ran the action of %q", label, clicked.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
