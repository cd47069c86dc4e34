package ui

import (
	"context"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
)

func TestParker(t *testing.T) {
	tests := []struct {
		name string
		// before runs before park; during runs while it is parked.
		before, during func(p *parker, cancel context.CancelFunc)
	}{
		{"woken", nil, func(p *parker, _ context.CancelFunc) { p.unpark() }},
		{"wake before park is not lost", func(p *parker, _ context.CancelFunc) { p.unpark() }, nil},
		{"app quits", nil, func(_ *parker, cancel context.CancelFunc) { cancel() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newParker()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.before != nil {
				tt.before(p, cancel)
			}
			done := make(chan struct{})
			go func() { p.park(ctx); close(done) }()
			if tt.during != nil {
				for !p.parked.Load() {
					time.Sleep(time.Millisecond)
				}
				tt.during(p, cancel)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("park did not return")
			}
			if p.parked.Load() {
				t.Error("still marked parked after returning")
			}
		})
	}
}

// The loop may park only while nothing is on screen: a window shown through
// the tray counts until it is closed (or Ctrl+W).
func TestShownWindows(t *testing.T) {
	u := newTestUI(t, newFake(), nil)
	u.ShowSettings()
	if !u.shown[u.settings.win] {
		t.Fatal("settings window not counted as shown")
	}
	sc, ok := u.settings.win.Canvas().(interface{ TypedShortcut(fyne.Shortcut) })
	if !ok {
		t.Fatalf("canvas %T takes no shortcuts", u.settings.win.Canvas())
	}
	sc.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyW, Modifier: fyne.KeyModifierShortcutDefault})
	if len(u.shown) != 0 {
		t.Errorf("Ctrl+W left %d windows counted as shown", len(u.shown))
	}
}
