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
	// shown is the menu as published, for updates in place.
	shown []*shownItem
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

// SetMenu shows m (fyne.Menu semantics as in Fyne's tray: checked items
// and toggles are checkboxes, disabled items greyed out). A menu of the
// same shape as the one shown (the same items, separators, checkboxes and
// submenus, in the same places) is updated in place: its items keep their
// ids, so a click the tray host sends while a label or a check mark
// changes (a session starting, sharing switched) still reaches the item.
// Any other change rebuilds the menu, as the library can only append.
func (s *systemTray) SetMenu(m *fyne.Menu) {
	s.guard("setting the menu", func() {
		if s.shown != nil && sameShape(s.shown, m, s.toggle) {
			s.updateItems(s.shown, m)
			return
		}
		systray.ResetMenu()
		s.shown = s.add(m, nil)
	})
}

// shownItem is a menu item as published: nil item for a separator.
type shownItem struct {
	item     *systray.MenuItem
	checkbox bool
	title    string
	children []*shownItem
	// action is what a click runs: that of the latest menu.
	action atomic.Pointer[func()]
}

// sameShape reports whether m can be shown by updating shown in place.
func sameShape(shown []*shownItem, m *fyne.Menu, toggle func(*fyne.MenuItem) bool) bool {
	if len(shown) != len(m.Items) {
		return false
	}
	for n, i := range m.Items {
		si := shown[n]
		switch {
		case i.IsSeparator != (si.item == nil):
			return false
		case i.IsSeparator:
			continue
		case (i.Checked || toggle(i)) != si.checkbox:
			return false
		case (i.ChildMenu != nil) != (si.children != nil):
			return false
		case i.ChildMenu != nil && !sameShape(si.children, i.ChildMenu, toggle):
			return false
		}
	}
	return true
}

// updateItems changes what differs between the items shown and those of
// m, which has their shape.
func (s *systemTray) updateItems(shown []*shownItem, m *fyne.Menu) {
	for n, i := range m.Items {
		si := shown[n]
		if si.item == nil {
			continue
		}
		if si.title != i.Label {
			si.title = i.Label
			si.item.SetTitle(i.Label)
		}
		if si.item.Checked() != i.Checked {
			if i.Checked {
				si.item.Check()
			} else {
				si.item.Uncheck()
			}
		}
		if si.item.Disabled() != i.Disabled {
			if i.Disabled {
				si.item.Disable()
			} else {
				si.item.Enable()
			}
		}
		action := i.Action
		si.action.Store(&action)
		if i.ChildMenu != nil {
			s.updateItems(si.children, i.ChildMenu)
		}
	}
}

// add publishes the items of m, under parent or at the top level.
func (s *systemTray) add(m *fyne.Menu, parent *systray.MenuItem) []*shownItem {
	shown := make([]*shownItem, 0, len(m.Items))
	for _, i := range m.Items {
		if i.IsSeparator {
			if parent != nil {
				parent.AddSeparator()
			} else {
				systray.AddSeparator()
			}
			shown = append(shown, &shownItem{})
			continue
		}
		si := &shownItem{checkbox: i.Checked || s.toggle(i), title: i.Label}
		switch {
		case parent != nil && si.checkbox:
			si.item = parent.AddSubMenuItemCheckbox(i.Label, "", i.Checked)
		case parent != nil:
			si.item = parent.AddSubMenuItem(i.Label, "")
		case si.checkbox:
			si.item = systray.AddMenuItemCheckbox(i.Label, "", i.Checked)
		default:
			si.item = systray.AddMenuItem(i.Label, "")
		}
		if i.Disabled {
			si.item.Disable()
		}
		if i.ChildMenu != nil {
			si.children = s.add(i.ChildMenu, si.item)
		}
		action := i.Action
		si.action.Store(&action)
		// ClickedCh is closed when the menu is reset.
		go func() {
			for range si.item.ClickedCh {
				if a := *si.action.Load(); a != nil {
					s.run(a)
				}
			}
		}()
		shown = append(shown, si)
	}
	return shown
}

// close removes the item from the tray.
func (s *systemTray) close() { s.guard("removing the item", s.end) }
