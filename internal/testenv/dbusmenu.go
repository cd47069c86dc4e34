package testenv

import (
	"testing"

	"github.com/godbus/dbus/v5"
)

// MenuItem is one com.canonical.dbusmenu item, as a tray host reads it.
type MenuItem struct {
	ID       int32
	Label    string // "---" for a separator, "[x] " before a ticked checkmark
	Enabled  bool
	Children []MenuItem
}

// ReadMenu reads the whole menu of an item (its Menu object): GetLayout(0,
// -1, all properties).
func ReadMenu(t *testing.T, menu dbus.BusObject) MenuItem {
	t.Helper()
	var rev uint32
	var layout struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	if err := menu.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &layout); err != nil {
		t.Fatalf("com.canonical.dbusmenu.GetLayout: %v", err)
	}
	return toMenuItem(t, []any{layout.ID, layout.Props, layout.Children})
}

// toMenuItem converts a layout (ia{sv}av) as godbus decodes it.
func toMenuItem(t *testing.T, v any) MenuItem {
	t.Helper()
	f, ok := v.([]any)
	if !ok || len(f) != 3 {
		t.Fatalf("menu layout entry %#v is not (ia{sv}av)", v)
	}
	id, _ := f[0].(int32)
	props, _ := f[1].(map[string]dbus.Variant)
	children, _ := f[2].([]dbus.Variant)
	m := MenuItem{ID: id, Enabled: true}
	str := func(k string) string { s, _ := props[k].Value().(string); return s }
	if e, ok := props["enabled"].Value().(bool); ok {
		m.Enabled = e
	}
	m.Label = str("label")
	if str("type") == "separator" {
		m.Label = "---"
	}
	if str("toggle-type") == "checkmark" {
		if s, _ := props["toggle-state"].Value().(int32); s == 1 {
			m.Label = "[x] " + m.Label
		} else {
			m.Label = "[ ] " + m.Label
		}
	}
	if v, ok := props["visible"].Value().(bool); ok && !v {
		m.Label = "(hidden) " + m.Label
	}
	for _, c := range children {
		m.Children = append(m.Children, toMenuItem(t, c.Value()))
	}
	return m
}

// Labels are the labels of the item's children.
func (m MenuItem) Labels() []string {
	var out []string
	for _, c := range m.Children {
		out = append(out, c.Label)
	}
	return out
}

// Find follows labels down the menu.
func (m MenuItem) Find(path ...string) (MenuItem, bool) {
	for _, label := range path {
		found := false
		for _, c := range m.Children {
			if c.Label == label {
				m, found = c, true
				break
			}
		}
		if !found {
			return MenuItem{}, false
		}
	}
	return m, true
}
