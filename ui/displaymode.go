package ui

import (
	"fmt"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Choosing how an app of a peer uses this display (docs/display.md): in
// the peer browser each app has a display control, showing the mode the
// daemon says it runs in and choosing protected, isolated or trusted;
// Settings lists the modes chosen with "Use default" for each.

// modeButtonText is the display control's button for each mode.
var modeButtonText = map[dbusapi.DisplayMode]string{
	dbusapi.DisplayProtected: "Protected",
	dbusapi.DisplayIsolated:  "Isolated",
	dbusapi.DisplayTrusted:   "Trusted…",
}

// displayModes are the modes in the order the control shows them.
var displayModes = []dbusapi.DisplayMode{dbusapi.DisplayProtected, dbusapi.DisplayIsolated, dbusapi.DisplayTrusted}

// modeNoteText says what the app can do in mode; byDefault: isolated
// without a choice, because this display cannot protect.
func modeNoteText(mode dbusapi.DisplayMode, byDefault bool) string {
	switch {
	case mode == dbusapi.DisplayIsolated && byDefault:
		return "Isolated by default: your display cannot keep apps to their own windows (no X SECURITY extension), so the app draws on a display of its own on the peer; only its windows are shown here."
	case mode == dbusapi.DisplayIsolated:
		return "Isolated: the app draws on a display of its own on the peer; only its windows are shown here (xpra, a few seconds slower to start)."
	case mode == dbusapi.DisplayTrusted:
		return "TRUSTED: the app can read your whole screen and every window, and type into any window."
	case mode == dbusapi.DisplayProtected:
		return "Protected: the app sees and controls only its own windows."
	}
	return "Asking how this app uses your display…"
}

// isolatedMissingText says why Isolated cannot be chosen here.
const isolatedMissingText = "Isolated needs xpra on this computer (install the xpra package)."

// modeWords is a mode as Settings lists it.
var modeWords = map[dbusapi.DisplayMode]string{
	dbusapi.DisplayProtected: "protected",
	dbusapi.DisplayIsolated:  "isolated (a display of its own)",
	dbusapi.DisplayTrusted:   "TRUSTED with your whole display",
}

// modeErrText says that choosing the display mode of app failed, and why.
func modeErrText(app string, err error) string {
	return sentence(fmt.Sprintf("could not change how %s uses your display: %v", app, err))
}

// trustedChoiceWarning says, before the user gives app from peer trusted
// access, exactly what it can then do.
func trustedChoiceWarning(app, peer string) string {
	return fmt.Sprintf("With trusted access, %s from %s can read your whole screen and every window on it, "+
		"see what you type into other windows, and type into any window itself, for example commands into a terminal. "+
		"Choose it only for an app and a peer you trust with everything on your screen. "+
		"eBrainPool remembers it for this app of %s; choose Protected to take it back.", app, peer, peer)
}

// displayControl is an app's display mode in the peer browser.
type displayControl struct {
	pb      *peerBrowser
	peer    dbusapi.Peer
	app     dbusapi.App
	mode    dbusapi.DisplayMode // "" until the daemon said
	buttons map[dbusapi.DisplayMode]*widget.Button
	note    *widget.Label
	box     *fyne.Container
}

func newDisplayControl(pb *peerBrowser, p dbusapi.Peer, a dbusapi.App) *displayControl {
	c := &displayControl{pb: pb, peer: p, app: a, buttons: map[dbusapi.DisplayMode]*widget.Button{}}
	row := container.NewHBox(widget.NewLabel("Display:"))
	for _, m := range displayModes {
		m := m
		b := widget.NewButton(modeButtonText[m], func() { c.choose(m) })
		c.buttons[m] = b
		row.Add(b)
	}
	c.note = widget.NewLabel("")
	c.note.SizeName = theme.SizeNameCaptionText
	c.note.Wrapping = fyne.TextWrapWord
	c.box = container.NewVBox(row, c.note)
	c.show(nil)
	return c
}

// load asks the daemon for the app's mode (off the Fyne thread: on a
// display without SECURITY the daemon checks the display).
func (c *displayControl) load() {
	u := c.pb.u
	u.spawn(func() {
		m, err := u.b.DisplayMode(c.peer.Fingerprint, c.app.ID)
		u.do(func() {
			if err == nil {
				c.mode = m
			}
			c.show(err)
		})
	})
}

// show marks the current mode, disables Isolated where it cannot run and
// says what the mode lets the app do (or what failed).
func (c *displayControl) show(err error) {
	u := c.pb.u
	isoErr := u.isolatedDisplay()
	// The mode is marked with a tick, not the primary colour: Launch
	// stays the row's one primary button (internal/e2e finds it by it).
	for m, b := range c.buttons {
		b.Importance, b.Icon = widget.LowImportance, nil
		if m == c.mode {
			b.Importance, b.Icon = widget.MediumImportance, theme.ConfirmIcon()
			if m == dbusapi.DisplayTrusted {
				b.Importance = widget.WarningImportance
			}
		}
		switch {
		case c.peer.Trust == dbusapi.TrustChanged, m == dbusapi.DisplayIsolated && isoErr != nil && c.mode != m:
			b.Disable()
		default:
			b.Enable()
		}
		b.Refresh()
	}
	// Asked only for isolated: in a window process Settings is a call to
	// the desktop app.
	byDefault := c.mode == dbusapi.DisplayIsolated && !u.b.Settings().Isolates(c.peer.Fingerprint, c.app.ID)
	text := modeNoteText(c.mode, byDefault)
	if isoErr != nil {
		text += " " + isolatedMissingText
	}
	c.note.Importance = widget.MediumImportance
	if c.mode == dbusapi.DisplayTrusted {
		c.note.Importance = widget.WarningImportance
	}
	if err != nil {
		text = modeErrText(c.app.Name, err)
		c.note.Importance = widget.DangerImportance
	}
	c.note.SetText(text)
}

// choose sets the app's mode; trusted only after the user confirmed the
// warning.
func (c *displayControl) choose(m dbusapi.DisplayMode) {
	if m == c.mode && m != dbusapi.DisplayIsolated {
		return // isolated by default may still be chosen, to keep it
	}
	if m == dbusapi.DisplayTrusted {
		c.confirmTrusted()
		return
	}
	c.set(m)
}

func (c *displayControl) set(m dbusapi.DisplayMode) {
	u := c.pb.u
	u.spawn(func() {
		err := u.b.SetDisplayMode(c.peer.Fingerprint, c.app.ID, m)
		u.do(func() {
			if err != nil {
				c.show(err) // else the daemon's DisplayModesChanged redraws the views
			}
		})
	})
}

// confirmTrusted asks before giving the app the whole display: the
// focused answer, and closing the dialog, keep it as it is.
func (c *displayControl) confirmTrusted() {
	win := c.pb.win
	msg := widget.NewLabel(trustedChoiceWarning(c.app.Name, c.peer.Name))
	msg.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustomWithoutButtons("Trust "+c.app.Name+" with your whole display?", msg, win)
	keep := widget.NewButton("Keep it as it is", d.Hide)
	keep.Importance = widget.HighImportance
	trust := widget.NewButtonWithIcon("Trust it with my whole display", theme.WarningIcon(), func() {
		d.Hide()
		c.set(dbusapi.DisplayTrusted)
	})
	trust.Importance = widget.DangerImportance
	d.SetButtons([]fyne.CanvasObject{keep, trust})
	d.Resize(fyne.NewSize(460, 280))
	d.Show()
	win.Canvas().Focus(keep)
}

// loadDisplayModes lists the display modes chosen, each with "Use
// default".
func (s *settingsView) loadDisplayModes() {
	defer s.modes.Refresh()
	s.modes.RemoveAll()
	for _, ch := range s.u.b.DisplayModes() {
		ch := ch
		l := widget.NewLabel(displayChoiceText(ch))
		l.Wrapping = fyne.TextWrapWord
		if ch.Mode == dbusapi.DisplayTrusted {
			l.Importance = widget.WarningImportance
		}
		b := widget.NewButton("Use default", func() {
			if err := s.u.b.SetDisplayMode(ch.Peer, ch.App, dbusapi.DisplayProtected); err != nil {
				s.setStatus(fmt.Errorf("%s", modeErrText(ch.AppName, err)), "")
				return
			}
			// The list and the peer browser follow the daemon's
			// DisplayModesChanged.
			s.setStatus(nil, fmt.Sprintf("%s of %s uses the default display mode again: protected (isolated where your display cannot protect).", ch.AppName, ch.PeerName))
		})
		s.modes.Add(container.NewBorder(nil, nil, nil, b, l))
	}
	if len(s.modes.Objects) == 0 {
		s.modes.Add(widget.NewLabel("Every app runs in the default display mode (protected). Choose another for an app in the peer browser."))
	}
}

// displayChoiceText is a chosen mode as Settings lists it: peer, its
// short fingerprint, app, mode.
func displayChoiceText(ch dbusapi.DisplayChoice) string {
	peer := ch.PeerName
	if short := identity.Fingerprint(ch.Peer).Short(); short != "" && short != peer {
		peer += " · " + short
	}
	return fmt.Sprintf("%s · %s · %s", peer, ch.AppName, modeWords[ch.Mode])
}

// reloadDisplayModes asks again for the modes of the apps shown.
func (pb *peerBrowser) reloadDisplayModes() {
	for _, r := range pb.rows {
		if r.display != nil {
			r.display.load()
		}
	}
}

// isolatedDisplay says why the isolated display cannot run here (nil: it
// can, xpra is installed).
func (u *UI) isolatedDisplay() error {
	if u.opts.IsolatedDisplay != nil {
		return u.opts.IsolatedDisplay()
	}
	return nil
}

// DisplayModeArgs asks for or sets the display mode of an app of a peer
// (DisplayMode, SetDisplayMode).
type DisplayModeArgs struct {
	Peer, App string
	Mode      dbusapi.DisplayMode
}

// DisplayMode is the mode an app of a peer runs in, as the daemon says.
func (s *AppService) DisplayMode(a DisplayModeArgs, reply *dbusapi.DisplayMode) error {
	m, err := s.b().DisplayMode(a.Peer, a.App)
	*reply = m
	return err
}

// SetDisplayMode chooses the mode of an app of a peer.
func (s *AppService) SetDisplayMode(a DisplayModeArgs, _ *bool) error {
	return s.b().SetDisplayMode(a.Peer, a.App, a.Mode)
}

// DisplayModes are the display modes chosen.
func (s *AppService) DisplayModes(_ int, reply *[]dbusapi.DisplayChoice) error {
	*reply = s.b().DisplayModes()
	return nil
}

func (r *remoteBackend) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	var m dbusapi.DisplayMode
	err := r.call("DisplayMode", DisplayModeArgs{Peer: peer, App: app}, &m)
	return m, err
}

func (r *remoteBackend) SetDisplayMode(peer, app string, mode dbusapi.DisplayMode) error {
	return r.call("SetDisplayMode", DisplayModeArgs{Peer: peer, App: app, Mode: mode}, new(bool))
}

func (r *remoteBackend) DisplayModes() []dbusapi.DisplayChoice {
	var out []dbusapi.DisplayChoice
	r.get("DisplayModes", &out)
	return out
}
