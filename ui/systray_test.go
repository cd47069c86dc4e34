package ui

import (
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The session bus going away under a running tray (the session ends, or a
// Flatpak's bus proxy exits before the app) must not crash the app: the
// library panics on its closed connection at the next icon or menu update.
func TestSystemTrayOutlivesTheSessionBus(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)

	ready := make(chan struct{})
	s := newSystemTray("eBrainPool test", func(f func()) { f() }, func() { close(ready) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the tray item never became ready")
	}
	menu := fyne.NewMenu("", fyne.NewMenuItem("Quit", nil))
	s.SetIcon(trayIcon(traySharing))
	s.SetMenu(menu)
	// The item is on the bus: its properties answer.
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names)
	conn.Close()
	if len(names) < 2 {
		t.Fatalf("bus names %q: the tray's connection is missing", names)
	}

	bus.Kill()
	// godbus notices the closed socket on its reader goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for !s.gone.Load() {
		if time.Now().After(deadline) {
			t.Fatal("updates to a tray whose bus is gone did not mark it gone")
		}
		s.SetIcon(trayIcon(trayOff))
		s.SetMenu(menu)
		time.Sleep(20 * time.Millisecond)
	}
	// Once gone, updates and close are skipped quietly.
	s.SetIcon(trayIcon(trayActive))
	s.SetMenu(menu)
	s.close()
}
