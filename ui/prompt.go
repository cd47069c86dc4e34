package ui

import (
	"fmt"
	"math"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// prompt is the accept-request popup for one consent request.
type prompt struct {
	u        *UI
	req      dbusapi.Request
	win      fyne.Window
	deadline time.Time
	total    time.Duration
	answered bool
	// armAt is when the popup starts taking answers: armDelay after it
	// opened, and again after each key typed into it before then (see
	// armed).
	armAt    time.Time
	armTimer *time.Timer

	countdown *widget.Label
	bar       *widget.ProgressBar
	remember  *widget.Check
	allow     *widget.Button
	deny      *widget.Button
	block     *widget.Button
}

// showPrompt opens the popup for a request (once per request id).
func (u *UI) showPrompt(r dbusapi.Request) {
	if u.win != nil {
		u.askElsewhere(r)
		return
	}
	if _, ok := u.prompts[r.ID]; ok {
		return
	}
	p := newPrompt(u, r)
	u.prompts[r.ID] = p
	// Not RequestFocus: the popup must not take the keyboard from what
	// the user is typing into (and the window process does not focus new
	// windows on show, see noFocusOnShow). Centred, so that the request's
	// notification bubble (a corner of the screen) leaves both readable.
	p.win.CenterOnScreen()
	p.win.Show()
	p.scheduleArm()
}

// askElsewhere has the window process show a request's popup (it shows
// every request waiting when it starts, and those that come while it
// runs). Only when no window process can show it, the request is a
// desktop notification instead (answered here): a bubble beside the
// popup would cover it or be covered.
func (u *UI) askElsewhere(r dbusapi.Request) {
	if err := u.win.ensure(); err != nil {
		u.notifyRequest(r)
	}
}

// notifyRequest shows a request as a desktop notification, once.
func (u *UI) notifyRequest(r dbusapi.Request) {
	if _, ok := u.asked[r.ID]; ok {
		return
	}
	u.asked[r.ID] = nil
	if n := u.opts.Notifier; n != nil {
		id := r.ID
		unnotify, err := n.Ask(r, r.PeerName, func(allow bool) {
			go func() {
				if err := u.b.AnswerFull(id, allow, false, false); err != nil {
					u.log.Info("answering request", "id", id, "err", err)
				}
			}()
		})
		if err != nil {
			u.log.Info("no desktop notification for the request", "err", err)
		}
		u.asked[r.ID] = unnotify
	}
}

func newPrompt(u *UI, r dbusapi.Request) *prompt {
	p := &prompt{u: u, req: r, deadline: time.Unix(r.Deadline, 0)}
	p.total = p.deadline.Sub(u.now())
	if p.total <= 0 {
		p.total = time.Second
	}
	name := r.PeerName
	if name == "" {
		name = "Someone"
	}
	host := r.From
	short := identity.Fingerprint(r.Peer).Short()
	if peer, ok := u.peer(r.Peer); ok {
		if peer.Host != "" {
			host = peer.Host + " (" + r.From + ")"
		}
		if peer.Short != "" {
			short = peer.Short
		}
	}
	if short == "" {
		short = r.Peer
	}
	p.win = u.app.NewWindow("eBrainPool: " + name + " asks to run " + r.App)
	p.win.SetCloseIntercept(func() { p.answer(false, false, false) })

	title := widget.NewLabelWithStyle(fmt.Sprintf("%s wants to run %s on your computer", name, r.App),
		fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	title.SizeName = theme.SizeNameSubHeadingText
	title.Wrapping = fyne.TextWrapWord

	who := widget.NewForm(
		widget.NewFormItem("From", wrapped(host)),
		widget.NewFormItem("Fingerprint", widget.NewLabel(short)),
		widget.NewFormItem("App", wrapped(r.App)),
		widget.NewFormItem("Display", displayLabel(name, r.Display)),
	)
	var met fyne.CanvasObject
	if r.FirstTime {
		l := widget.NewLabel("First time: you have not met " + name + " before. Compare the fingerprint with them if unsure.")
		l.Wrapping = fyne.TextWrapWord
		l.Importance = widget.WarningImportance
		met = container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, l)
	} else {
		l := widget.NewLabel("Known peer: you have met " + name + " before.")
		l.Wrapping = fyne.TextWrapWord
		met = container.NewBorder(nil, nil, widget.NewIcon(theme.ConfirmIcon()), nil, l)
	}
	about := widget.NewLabel("The app runs in a sandbox on this computer and shows its window on " + name + "'s screen. It cannot see your files.")
	about.Wrapping = fyne.TextWrapWord
	about.SizeName = theme.SizeNameCaptionText
	note := fyne.CanvasObject(about)
	if len(r.Files) > 0 {
		// What the requester brings: names and count only.
		brings := widget.NewLabel(bringsText(name, r.Files))
		brings.Wrapping = fyne.TextWrapWord
		note = container.NewVBox(brings, about)
	}

	p.countdown = widget.NewLabel("")
	p.bar = widget.NewProgressBar()
	p.bar.TextFormatter = func() string { return "" }
	p.remember = widget.NewCheck("Remember for this app", nil)

	// No default button: Allow is not focused and no key (Enter) answers
	// for it; every control is disabled until the popup is armed.
	p.allow = widget.NewButtonWithIcon("Allow", theme.ConfirmIcon(), func() { p.answer(true, p.remember.Checked, false) })
	p.deny = widget.NewButtonWithIcon("Deny", theme.CancelIcon(), func() { p.answer(false, p.remember.Checked, false) })
	p.block = widget.NewButtonWithIcon("Block "+ellipsis(name, 24), theme.ErrorIcon(), func() { p.answer(false, false, true) })
	p.block.Importance = widget.DangerImportance
	p.armAt = u.now().Add(armDelay)
	p.setArmed(false)
	// Keys typed into the popup before it is armed were meant for
	// another window: they do nothing and push the arming back, so a
	// burst of typing that lands here can never reach a button.
	p.win.Canvas().SetOnTypedKey(func(*fyne.KeyEvent) { p.inputBeforeArmed() })
	p.win.Canvas().SetOnTypedRune(func(rune) { p.inputBeforeArmed() })

	buttons := container.NewBorder(nil, nil, p.block, container.NewHBox(p.deny, p.allow))
	// The buttons keep to the bottom edge however tall the wrapped text
	// makes the window.
	content := container.NewPadded(container.NewBorder(
		container.NewVBox(title, who, met, note, widget.NewSeparator(), p.countdown, p.bar, p.remember),
		buttons, nil, nil))
	p.win.SetContent(content)
	p.win.Resize(fyne.NewSize(460, content.MinSize().Height))
	p.win.SetFixedSize(true)
	p.tick()
	return p
}

// wrapped is a label that wraps, so that a long value never widens its
// window past the screen.
func wrapped(text string) *widget.Label {
	l := widget.NewLabel(text)
	l.Wrapping = fyne.TextWrapWord
	return l
}

// ellipsis shortens s to at most n characters (a button cannot wrap).
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// armDelay is how long a popup ignores input after it opened (and after
// each key typed into it meanwhile), as browsers do for permission
// prompts: keystrokes meant for another window cannot answer it.
const armDelay = time.Second

// armed reports whether the popup takes answers.
func (p *prompt) armed() bool { return !p.allow.Disabled() }

// setArmed enables or disables every control that answers.
func (p *prompt) setArmed(on bool) {
	for _, w := range []fyne.Disableable{p.allow, p.deny, p.block, p.remember} {
		if on {
			w.Enable()
		} else {
			w.Disable()
		}
	}
}

// inputBeforeArmed follows a key typed into the popup: before it is
// armed, the arming starts over.
func (p *prompt) inputBeforeArmed() {
	if p.answered || p.armed() {
		return
	}
	p.armAt = p.u.now().Add(armDelay)
	p.scheduleArm()
}

// scheduleArm arms the popup at armAt (on the Fyne thread). With
// Options.Sync (tests) only tick arms it, on the test's clock.
func (p *prompt) scheduleArm() {
	if p.u.opts.Sync {
		return
	}
	if p.armTimer != nil {
		p.armTimer.Stop()
	}
	p.armTimer = time.AfterFunc(p.armAt.Sub(p.u.now()), func() { p.u.do(p.armIfDue) })
}

// armIfDue arms the popup once armAt has passed.
func (p *prompt) armIfDue() {
	if p.answered || p.armed() || p.u.now().Before(p.armAt) {
		return
	}
	p.setArmed(true)
}

// remaining is the time left before the automatic deny.
func (p *prompt) remaining() time.Duration { return p.deadline.Sub(p.u.now()) }

// tick updates the countdown. It only displays: the daemon's timeout
// denies an unanswered request (and its requester is told nobody
// answered), and the popup closes when the daemon says it is resolved.
// Answering here at zero would race that timeout with a "denied by the
// user", from a deadline rounded to whole seconds.
func (p *prompt) tick() {
	if p.answered {
		return
	}
	p.armIfDue()
	left := p.remaining()
	if left <= 0 {
		p.countdown.SetText("No answer in time: the request is being denied.")
		p.bar.SetValue(0)
		return
	}
	secs := int(math.Ceil(left.Seconds()))
	p.countdown.SetText(fmt.Sprintf("Denying automatically in %d s", secs))
	p.bar.SetValue(left.Seconds() / p.total.Seconds())
}

// answer sends the decision and closes the popup.
func (p *prompt) answer(allow, remember, block bool) {
	if p.answered {
		return
	}
	p.answered = true
	if err := p.u.b.AnswerFull(p.req.ID, allow, remember, block); err != nil {
		// Usually: already resolved (timed out in the daemon, or answered
		// elsewhere). Nothing left to do but close.
		p.u.log.Info("answering request", "id", p.req.ID, "err", err)
	}
	p.close()
}

// close removes the popup (answered here or resolved elsewhere).
func (p *prompt) close() {
	p.answered = true
	if p.armTimer != nil {
		p.armTimer.Stop()
	}
	delete(p.u.prompts, p.req.ID)
	p.win.Close()
}
