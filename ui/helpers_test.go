package ui

import (
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"
)

// texts collects the text of every label, rich text, check and button
// under o.
func texts(o fyne.CanvasObject) []string {
	var out []string
	var walk func(fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *fyne.Container:
			for _, c := range o.Objects {
				walk(c)
			}
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
				walk(it.Widget)
			}
		}
	}
	walk(o)
	return out
}

// joined is texts as one string, for "contains" checks.
func joined(o fyne.CanvasObject) string { return strings.Join(texts(o), "\n") }

// findButton finds a button by its text under o.
func findButton(o fyne.CanvasObject, text string) *widget.Button {
	var found *widget.Button
	var walk func(fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *fyne.Container:
			for _, c := range o.Objects {
				walk(c)
			}
		case *widget.Button:
			if o.Text == text && found == nil {
				found = o
			}
		}
	}
	walk(o)
	return found
}

// findCheck finds a checkbox by its text under o.
func findCheck(o fyne.CanvasObject, text string) *widget.Check {
	var found *widget.Check
	var walk func(fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *fyne.Container:
			for _, c := range o.Objects {
				walk(c)
			}
		case *widget.Check:
			if o.Text == text && found == nil {
				found = o
			}
		}
	}
	walk(o)
	return found
}
