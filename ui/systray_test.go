package ui

import (
	"fmt"
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
		before := dbusMenu(t, menu)
		// A session starts while the user has the menu open.
		s.SetMenu(sessions("Sessions (1 running)"))
		after := dbusMenu(t, menu)
		want := strings.Replace(before, `"Sessions"`, `"Sessions (1 running)"`, 1)
		if after != want {
			t.Fatalf("menu after the label changed:\n%s\nwant (the same ids):\n%s", after, want)
		}
		// The tray host clicks "Settings" by the id it read before.
		id := itemID(t, before, "Settings")
		if call := menu.Call("com.canonical.dbusmenu.Event", 0, id, "clicked", dbus.MakeVariant(int32(0)), uint32(0)); call.Err != nil {
			t.Fatal(call.Err)
		}
		waitClicked(t, &clicked, "Settings")
	})
	t.Run("a check mark and a disabled item change in place", func(t *testing.T) {
		toggle := &fyne.MenuItem{Label: "Share my apps"}
		s.toggle = func(i *fyne.MenuItem) bool { return i.Label == "Share my apps" }
		defer func() { s.toggle = func(*fyne.MenuItem) bool { return false } }()
		s.SetMenu(fyne.NewMenu("", toggle, item("Settings")))
		before := dbusMenu(t, menu)
		on := &fyne.MenuItem{Label: "Share my apps", Checked: true}
		off := item("Settings")
		off.Disabled = true
		s.SetMenu(fyne.NewMenu("", on, off))
		after := dbusMenu(t, menu)
		if itemID(t, before, "Share my apps") != itemID(t, after, "Share my apps") || itemID(t, before, "Settings") != itemID(t, after, "Settings") {
			t.Fatalf("ids changed:\n%s\n->\n%s", before, after)
		}
		if !strings.Contains(after, `"Share my apps" checkmark=1 enabled`) || !strings.Contains(after, `"Settings"  disabled`) {
			t.Fatalf("menu after ticking and disabling:\n%s", after)
		}
	})
	t.Run("a changed shape rebuilds the menu", func(t *testing.T) {
		s.SetMenu(sessions("Sessions"))
		// A peer arrives: an item more.
		m := sessions("Sessions")
		m.Items = append([]*fyne.MenuItem{{Label: "carol", ChildMenu: fyne.NewMenu("", item("Calculator"))}}, m.Items...)
		s.SetMenu(m)
		after := dbusMenu(t, menu)
		if !strings.Contains(after, `"carol"`) || !strings.Contains(after, `"Calculator"`) || strings.Count(after, `"Settings"`) != 1 {
			t.Fatalf("menu after a peer arrived:\n%s", after)
		}
		clicked.Store("")
		menu.Call("com.canonical.dbusmenu.Event", 0, itemID(t, after, "Calculator"), "clicked", dbus.MakeVariant(int32(0)), uint32(0))
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

// dbusMenu reads the menu with GetLayout and prints one line per item:
// id, label, toggle and enabled state, indented by depth.
func dbusMenu(t *testing.T, menu dbus.BusObject) string {
	t.Helper()
	type layout struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	var rev uint32
	var root layout
	if err := menu.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &root); err != nil {
		t.Fatalf("GetLayout: %v", err)
	}
	var b strings.Builder
	var walk func(l layout, depth int)
	walk = func(l layout, depth int) {
		for _, c := range l.Children {
			var child layout
			if err := dbus.Store([]any{c.Value()}, &child); err != nil {
				t.Fatalf("menu item %v: %v", c, err)
			}
			label, _ := child.Props["label"].Value().(string)
			if tp, _ := child.Props["type"].Value().(string); tp == "separator" {
				label = "---"
			}
			var toggle string
			if tt, _ := child.Props["toggle-type"].Value().(string); tt != "" {
				toggle = fmt.Sprintf("%s=%v", tt, child.Props["toggle-state"].Value())
			}
			state := "enabled"
			if e, ok := child.Props["enabled"].Value().(bool); ok && !e {
				state = "disabled"
			}
			fmt.Fprintf(&b, "%s%d %q %s %s\n", strings.Repeat("  ", depth), child.ID, label, toggle, state)
			walk(child, depth+1)
		}
	}
	walk(root, 0)
	return b.String()
}

// itemID finds the id of the item labelled so in a dbusMenu listing.
func itemID(t *testing.T, listing, label string) int32 {
	t.Helper()
	for _, line := range strings.Split(listing, "\n") {
		var id int32
		if f := strings.Fields(line); len(f) > 1 && strings.Contains(line, fmt.Sprintf(" %q ", label)) {
			fmt.Sscan(f[0], &id)
			return id
		}
	}
	t.Fatalf("no %q in the menu:\n%s", label, listing)
	return 0
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
