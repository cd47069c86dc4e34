package ui

import (
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"
)

// walk calls f for o and every object in the containers (and form items)
// under it, depth first.
func walk(o fyne.CanvasObject, f func(fyne.CanvasObject)) {
	f(o)
	switch o := o.(type) {
	case *fyne.Container:
		for _, c := range o.Objects {
			walk(c, f)
		}
	case *widget.Form:
		for _, it := range o.Items {
			walk(it.Widget, f)
		}
	}
}

// texts collects the text of every label, rich text, check, button and
// form item under o.
func texts(o fyne.CanvasObject) []string {
	var out []string
	walk(o, func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *widget.Label:
			out = append(out, o.Text)
		case *widget.RichText:
			out = append(out, o.String())
		case *widget.Button:
			out = append(out, o.Text)
		case *widget.Check:
			out = append(out, o.Text)
		case *widget.Form:
			for _, it := range o.Items {
				out = append(out, it.Text)
			}
		}
	})
	return out
}

// joined is texts as one string, for "contains" checks.
func joined(o fyne.CanvasObject) string { return strings.Join(texts(o), "\n") }

// first finds the first object of type T under o that matches.
func first[T fyne.CanvasObject](o fyne.CanvasObject, match func(T) bool) T {
	var found T
	done := false
	walk(o, func(o fyne.CanvasObject) {
		if t, ok := o.(T); ok && !done && match(t) {
			found, done = t, true
		}
	})
	return found
}

// findButton finds the first button with this text under o.
func findButton(o fyne.CanvasObject, text string) *widget.Button {
	return first(o, func(b *widget.Button) bool { return b.Text == text })
}

// findCheck finds the first checkbox with this text under o.
func findCheck(o fyne.CanvasObject, text string) *widget.Check {
	return first(o, func(c *widget.Check) bool { return c.Text == text })
}

// launchButton finds the Launch button of an app shown in the peer
// browser: the button in the row whose first label is the app's name.
func (pb *peerBrowser) launchButton(app string) *widget.Button {
	for _, row := range pb.apps.Objects {
		var name string
		var btn *widget.Button
		walk(row, func(o fyne.CanvasObject) {
			switch o := o.(type) {
			case *widget.Button:
				if o.Text == "Launch" {
					btn = o
				}
			case *widget.Label:
				if name == "" {
					name = o.Text
				}
			}
		})
		if name == app {
			return btn
		}
	}
	return nil
}
