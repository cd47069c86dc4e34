package ui

import (
	"context"
	"errors"
	"time"

	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// isolatedByDefault says whether an app without a display mode of its own
// runs isolated: on a display without the SECURITY extension (Debian 12's
// Xwayland) when xpra is installed, as the daemon decides it
// (daemon.DisplayMode).
func isolatedByDefault() bool {
	if tunnel.CheckIsolatedDisplay() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return errors.Is(tunnel.CheckProtectedDisplay(ctx, "", ""), tunnel.ErrNoSecurityExtension)
}

// displayLabel is displayText as a label for the popup's form (one line,
// not wrapped: a wrapped label in a form column makes the popup tall); a
// display given away in full is a warning.
func displayLabel(name string, mode dbusapi.DisplayMode) *widget.Label {
	l := widget.NewLabel(displayText(name, mode))
	if mode != dbusapi.DisplayProtected && mode != dbusapi.DisplayIsolated {
		l.Importance = widget.WarningImportance
	}
	return l
}

// displayText says, in the consent popup, what the app may do on the
// requester's (name's) display.
func displayText(name string, mode dbusapi.DisplayMode) string {
	switch mode {
	case dbusapi.DisplayProtected:
		return "Protected: the app sees only its own windows"
	case dbusapi.DisplayTrusted:
		return "TRUSTED: the app can see and control " + name + "'s whole screen"
	case dbusapi.DisplayIsolated:
		return "Isolated: the app draws on a display of its own here (xpra)"
	}
	return "Not said (an older eBrainPool): maybe " + name + "'s whole screen"
}

// launchDisplayText says, in a launch's progress, what the app may do on
// this display.
func launchDisplayText(trusted, isolated bool) string {
	if isolated {
		return "Your display: isolated: the app draws on a display of its own on the peer; only its windows are shown here (xpra)."
	}
	if trusted {
		return "Your display: TRUSTED: the app can see your whole screen and type into any window (ebrainpool run --protected-display confines it)."
	}
	return "Your display: protected: the app sees and controls only its own windows."
}
