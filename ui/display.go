package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// displayLabel is displayText as a label for the popup's form; a
// display given away in full is a warning.
func displayLabel(name string, mode dbusapi.DisplayMode) *widget.Label {
	l := widget.NewLabel(displayText(name, mode))
	l.Wrapping = fyne.TextWrapWord
	if mode != dbusapi.DisplayProtected {
		l.Importance = widget.WarningImportance
	}
	return l
}

// displayText says, in the consent popup, what the app may do on the
// requester's (name's) display.
func displayText(name string, mode dbusapi.DisplayMode) string {
	switch mode {
	case dbusapi.DisplayProtected:
		return "Protected: the app sees and controls only its own windows on " + name + "'s screen"
	case dbusapi.DisplayTrusted:
		return "Trusted: " + name + " lets the app see their whole screen and type into any of their windows"
	}
	return name + "'s eBrainPool does not say (an older version: the app may see their whole screen)"
}

// launchDisplayText says, in a launch's progress, what the app may do on
// this display.
func launchDisplayText(trusted bool) string {
	if trusted {
		return "Your display: TRUSTED: the app can see your whole screen and type into any window (ebrainpool run --protected-display confines it)."
	}
	return "Your display: protected: the app sees and controls only its own windows."
}
