package ui

import (
	"fmt"
	"sync/atomic"

	"fyne.io/fyne/v2"
	"fyne.io/systray"
)

// trayHost shows the tray icon and its menu.
type trayHost interface {
	SetIcon(fyne.Resource)
	SetMenu(*fyne.Menu)
}

// desktopTrayApp is the tray part of Fyne's desktop.App.
type desktopTrayApp interface {
	SetSystemTrayIcon(fyne.Resource)
	SetSystemTrayMenu(*fyne.Menu)
}

// desktopTray is Fyne's own tray. Fyne opens a hidden window for it, which
// loads the GL driver; it is used when Options.SystemTray is off.
type desktopTray struct{ app desktopTrayApp }

func (d desktopTray) SetIcon(r fyne.Resource) { d.app.SetSystemTrayIcon(r) }
func (d desktopTray) SetMenu(m *fyne.Menu)    { d.app.SetSystemTrayMenu(m) }

// systemTray is a StatusNotifierItem published straight through
// fyne.io/systray (the library under Fyne's tray), which speaks D-Bus and
// needs no window: the desktop app can then sit in the tray without a GL
// context (tens of MB with Mesa) and with its event loop parked. Menu
// clicks run on the Fyne thread through run.
type systemTray struct {
	run func(func())
	end func()
	// toggle reports whether an item is an on/off setting, shown as a
	// checkbox also when off (fyne.Menu has no such flag).
	toggle func(*fyne.MenuItem) bool
	// gone is set once the library panicked: its session bus connection
	// is closed (the session ended, or a Flatpak's bus proxy went first).
	gone atomic.Bool
}

// guard calls into fyne.io/systray, which panics (prop.SetMust) once its
// session bus connection is closed: the tray is then gone and later calls
// are skipped, instead of the panic ending the app mid-shutdown.
func (s *systemTray) guard(what string, f func()) {
	if s.gone.Load() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.gone.Store(true)
			fyne.LogError("tray: "+what+": the session bus connection is gone", fmt.Errorf("%v", r))
		}
	}()
	f()
}

// newSystemTray registers the item with the session's
// StatusNotifierWatcher (now, or when a tray host appears later). Icon and
// menu set before the item is ready are lost: ready must set them again.
func newSystemTray(title string, run func(func()), ready func()) *systemTray {
	start, end := systray.RunWithExternalLoop(func() {
		// Some tray hosts misbehave without a title.
		systray.SetTitle(title)
		systray.SetTooltip(title)
		ready()
	}, nil)
	start()
	return &systemTray{run: run, end: end, toggle: func(*fyne.MenuItem) bool { return false }}
}

func (s *systemTray) SetIcon(r fyne.Resource) {
	b, err := pixmapPNG(r.Content())
	if err != nil {
		fyne.LogError("tray icon "+r.Name(), err)
		b = r.Content()
	}
	s.guard("setting the icon", func() { systray.SetIcon(b) })
}

// SetMenu replaces the whole menu (fyne.Menu semantics as in Fyne's tray:
// checked items and toggles are checkboxes, disabled items greyed out).
func (s *systemTray) SetMenu(m *fyne.Menu) {
	s.guard("setting the menu", func() {
		systray.ResetMenu()
		s.add(m, nil)
	})
}

func (s *systemTray) add(m *fyne.Menu, parent *systray.MenuItem) {
	for _, i := range m.Items {
		if i.IsSeparator {
			if parent != nil {
				parent.AddSeparator()
			} else {
				systray.AddSeparator()
			}
			continue
		}
		var item *systray.MenuItem
		checkbox := i.Checked || s.toggle(i)
		switch {
		case parent != nil && checkbox:
			item = parent.AddSubMenuItemCheckbox(i.Label, "", i.Checked)
		case parent != nil:
			item = parent.AddSubMenuItem(i.Label, "")
		case checkbox:
			item = systray.AddMenuItemCheckbox(i.Label, "", i.Checked)
		default:
			item = systray.AddMenuItem(i.Label, "")
		}
		if i.Disabled {
			item.Disable()
		}
		if i.ChildMenu != nil {
			s.add(i.ChildMenu, item)
		}
		action := i.Action
		// ClickedCh is closed when the menu is reset.
		go func() {
			for range item.ClickedCh {
				if action != nil {
					s.run(action)
				}
			}
		}()
	}
}

// close removes the item from the tray.
func (s *systemTray) close() { s.guard("removing the item", s.end) }
