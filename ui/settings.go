package ui

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// settingsView is the settings window: general settings, shared apps,
// known and blocked peers.
type settingsView struct {
	// sharingItem holds the sharing check and, when this host cannot
	// share, why (sharingHint) and, when the one-time setup would fix
	// that, the button that runs it (setup; settingUp while it runs).
	sharingItem *widget.FormItem
	sharingHint *widget.Label
	setup       *widget.Button
	settingUp   bool
	u           *UI
	win         fyne.Window

	name      *widget.Entry
	sharing   *widget.Check
	memory    *widget.Entry
	cpus      *widget.Entry
	pids      *widget.Entry
	disk      *widget.Entry
	idle      *widget.Entry
	timeout   *widget.Entry
	port      *widget.Entry // the control port ("" the default)
	domains   *widget.Entry // browse domains, separated by commas or spaces
	autostart *widget.Check
	status    *widget.Label

	apps    *fyne.Container
	known   *fyne.Container
	blocked *fyne.Container
	rules   *fyne.Container
	// modes are the display modes chosen for apps of peers
	// (displaymode.go).
	modes *fyne.Container
}

func newSettingsView(u *UI) *settingsView {
	s := &settingsView{u: u}
	s.win = u.app.NewWindow("eBrainPool: settings")
	u.hideOnClose(s.win, nil)

	s.name = widget.NewEntry()
	s.sharing = widget.NewCheck("Share my apps on the network", nil)
	s.memory = widget.NewEntry()
	s.memory.SetPlaceHolder("default")
	s.cpus = widget.NewEntry()
	s.cpus.SetPlaceHolder("default")
	s.pids = widget.NewEntry()
	s.pids.SetPlaceHolder("default")
	s.disk = widget.NewEntry()
	s.disk.SetPlaceHolder(fmt.Sprintf("%d (the default)", daemon.DefaultDiskMB))
	s.idle = widget.NewEntry()
	s.idle.SetPlaceHolder("e.g. 5m; empty: never")
	s.timeout = widget.NewEntry()
	s.timeout.SetPlaceHolder("e.g. 30s")
	s.port = widget.NewEntry()
	s.port.SetPlaceHolder(fmt.Sprintf("%d (the default)", config.DefaultControlPort))
	s.domains = widget.NewEntry()
	s.domains.SetPlaceHolder("e.g. office.example.org (peers your admin published in DNS)")
	s.autostart = widget.NewCheck("Start eBrainPool when I log in", func(on bool) {
		if err := setAutostart(u.opts.AutostartFile, u.opts.Exec, on); err != nil {
			s.setStatus(err, "")
		}
	})
	s.status = widget.NewLabel("")
	s.status.Wrapping = fyne.TextWrapWord
	save := widget.NewButtonWithIcon("Save", theme.DocumentSaveIcon(), func() {
		msg, err := s.save()
		s.setStatus(err, msg)
	})
	save.Importance = widget.HighImportance

	// Wrapped by wrapText, not by the label: a wrapping label in a form
	// row is laid out overlapping the rows below it until a resize.
	s.sharingHint = widget.NewLabel("")
	s.sharingHint.SizeName = theme.SizeNameCaptionText
	s.sharingHint.Importance = widget.LowImportance
	s.setup = widget.NewButtonWithIcon("Set up sharing…", theme.ConfirmIcon(), s.setUp)
	s.sharingItem = widget.NewFormItem("Sharing", container.NewVBox(s.sharing, s.sharingHint, container.NewHBox(s.setup)))
	general := widget.NewForm(
		widget.NewFormItem("Your name", s.name),
		s.sharingItem,
		widget.NewFormItem("Memory per peer (MB)", s.memory),
		widget.NewFormItem("CPUs per peer", s.cpus),
		widget.NewFormItem("Processes per peer", s.pids),
		widget.NewFormItem("Disk per peer (MB)", s.disk),
		widget.NewFormItem("Stop idle sandbox after", s.idle),
		widget.NewFormItem("Deny unanswered requests after", s.timeout),
		s.portItem(),
		widget.NewFormItem("Also look for peers in", s.domains),
		widget.NewFormItem("Login", s.autostart),
	)
	s.apps = container.NewVBox()
	s.known = container.NewVBox()
	s.blocked = container.NewVBox()
	s.rules = container.NewVBox()
	s.modes = container.NewVBox()
	tabs := container.NewAppTabs(
		container.NewTabItem("General", container.NewVScroll(general)),
		container.NewTabItem("Shared apps", container.NewVScroll(s.apps)),
		container.NewTabItem("Peers", container.NewVScroll(container.NewVBox(
			widget.NewLabelWithStyle("Known peers", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), s.known,
			widget.NewSeparator(),
			widget.NewLabelWithStyle("Blocked peers", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), s.blocked,
			widget.NewSeparator(),
			widget.NewLabelWithStyle("Remembered decisions", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), s.rules,
			widget.NewSeparator(),
			widget.NewLabelWithStyle("Display modes you chose", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), s.modes))),
	)
	// Filled before it is laid out: the hint's size counts.
	s.load()
	s.win.SetContent(container.NewBorder(nil, container.NewBorder(nil, nil, nil, save, s.status), nil, nil, tabs))
	s.win.Resize(fyne.NewSize(600, 480))
	return s
}

func (s *settingsView) setStatus(err error, ok string) {
	if err != nil {
		s.status.SetText(sentence(err.Error()))
		s.status.Importance = widget.DangerImportance
	} else {
		s.status.SetText(ok)
		s.status.Importance = widget.SuccessImportance
	}
	s.status.Refresh()
}

// refreshSharing shows whether this host can share: the sharing check is
// enabled only when it can; otherwise the hint says why and, when the
// one-time setup would fix it, "Set up sharing…" is offered.
func (s *settingsView) refreshSharing() {
	err := s.u.b.SandboxError()
	if err == nil {
		s.sharing.Enable()
		s.sharingHint.SetText("")
		s.sharingHint.Hide()
		s.setup.Hide()
		return
	}
	// The setting is kept (it applies once sharing is possible) but
	// cannot be changed here; the hint says why and what to do.
	s.sharing.Disable()
	s.sharingHint.SetText(wrapText("Not available: "+strings.TrimSuffix(strings.TrimSpace(err.Error()), ".")+".", hintColumns))
	s.sharingHint.Show()
	switch {
	case !s.u.b.CanSetUpSharing():
		s.setup.Hide()
	case s.settingUp:
		s.setup.Disable()
		s.setup.Show()
	default:
		s.setup.Enable()
		s.setup.Show()
	}
}

// hintColumns is where the sharing hint is wrapped: about the width of
// the form's second column at the window's initial size.
const hintColumns = 60

// wrapText breaks s into lines of at most n characters at spaces (a
// longer word gets a line of its own); s's own lines stay lines.
func wrapText(s string, n int) string {
	var out []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, w := range strings.Fields(para) {
			switch {
			case line == "":
				line = w
			case len([]rune(line))+1+len([]rune(w)) > n:
				out = append(out, line)
				line = w
			default:
				line += " " + w
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// setUp runs the one-time setup through polkit ("Set up sharing…" here
// or in the tray), off the Fyne thread: the password dialog may stay open
// for long.
func (s *settingsView) setUp() {
	if s.settingUp {
		return
	}
	s.settingUp = true
	s.status.SetText("Asking for permission to set up sharing…")
	s.status.Importance = widget.MediumImportance
	s.status.Refresh()
	s.refreshSharing()
	s.u.tray.update()
	s.u.spawn(func() {
		err := s.u.b.SetUpSharing(s.u.ctx)
		s.u.do(func() { s.setUpDone(err) })
	})
}

// setUpDone shows how the setup went.
func (s *settingsView) setUpDone(err error) {
	s.settingUp = false
	s.refreshSharing()
	s.u.tray.update()
	switch {
	case err != nil:
		s.setStatus(fmt.Errorf("could not set up sharing: %w", err), "")
	case s.u.b.Settings().Sharing:
		s.setStatus(nil, "Sharing is set up: peers can now ask for the apps you share (see Shared apps).")
	default:
		s.setStatus(nil, "Sharing is set up: check \"Share my apps on the network\" and Save to share your apps.")
	}
}

// load fills every field from the backend.
func (s *settingsView) load() {
	st := s.u.b.Settings()
	s.name.SetText(st.DisplayName)
	s.sharing.SetChecked(st.Sharing)
	s.memory.SetText(intText(st.MemoryMB))
	s.cpus.SetText("")
	if st.CPUs > 0 {
		s.cpus.SetText(strconv.FormatFloat(st.CPUs, 'f', -1, 64))
	}
	s.pids.SetText(intText(st.Pids))
	s.disk.SetText(intText(st.DiskMB))
	s.idle.SetText("")
	if st.IdleStop > 0 {
		s.idle.SetText(time.Duration(st.IdleStop).String())
	}
	s.timeout.SetText(time.Duration(st.ConsentTimeout).String())
	s.port.SetText(intText(st.ControlPort))
	s.domains.SetText(strings.Join(st.BrowseDomains, ", "))
	s.refreshSharing()
	onChanged := s.autostart.OnChanged
	s.autostart.OnChanged = nil
	s.autostart.SetChecked(autostartEnabled(s.u.opts.AutostartFile))
	s.autostart.OnChanged = onChanged
	s.loadApps()
	s.loadPeers()
	s.loadDisplayModes()
}

func intText(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// parse reads the form into settings (starting from the current ones).
func (s *settingsView) parse() (config.Settings, error) {
	st := s.u.b.Settings()
	st.DisplayName = strings.TrimSpace(s.name.Text)
	if st.DisplayName == "" {
		return st, errors.New("your name cannot be empty")
	}
	st.Sharing = s.sharing.Checked
	var err error
	if st.MemoryMB, err = optInt(s.memory.Text, "memory"); err != nil {
		return st, err
	}
	if st.Pids, err = optInt(s.pids.Text, "processes"); err != nil {
		return st, err
	}
	if st.DiskMB, err = optInt(s.disk.Text, "disk"); err != nil {
		return st, err
	}
	if st.DiskMB > 0 && st.DiskMB < config.MinDiskMB {
		return st, fmt.Errorf("the disk per peer must be at least %d MB", config.MinDiskMB)
	}
	st.CPUs = 0
	if t := strings.TrimSpace(s.cpus.Text); t != "" {
		if st.CPUs, err = strconv.ParseFloat(t, 64); err != nil || st.CPUs <= 0 {
			return st, fmt.Errorf("CPUs must be a positive number, like 1 or 0.5, not %q", t)
		}
	}
	st.IdleStop = 0
	if t := strings.TrimSpace(s.idle.Text); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 {
			return st, fmt.Errorf("idle stop must be a duration like 5m or 90s, not %q", t)
		}
		st.IdleStop = config.Duration(d)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s.timeout.Text))
	if err != nil || d < 5*time.Second {
		return st, fmt.Errorf("the answer timeout must be a duration of at least 5s, like 30s, not %q", s.timeout.Text)
	}
	st.ConsentTimeout = config.Duration(d)
	if st.ControlPort, err = optInt(s.port.Text, "the port"); err != nil || st.ControlPort > 65535 {
		return st, fmt.Errorf("the port must be a number from 1 to 65535 (empty: %d), not %q", config.DefaultControlPort, strings.TrimSpace(s.port.Text))
	}
	if st.ControlPort == config.DefaultControlPort {
		st.ControlPort = 0
	}
	st.BrowseDomains = strings.FieldsFunc(s.domains.Text, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(st.BrowseDomains) == 0 {
		st.BrowseDomains = nil
	}
	if err := config.ValidBrowseDomains(st.BrowseDomains); err != nil {
		return st, err
	}
	return st, nil
}

func optInt(t, what string) (int, error) {
	t = strings.TrimSpace(t)
	if t == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s must be a positive whole number, not %q", what, t)
	}
	return n, nil
}

// save validates and stores the general settings; the message says
// when what was saved applies, where that is not at once.
func (s *settingsView) save() (string, error) {
	before := s.u.b.Settings()
	st, err := s.parse()
	if err != nil {
		return "", err
	}
	if err := s.u.b.SaveSettings(st); err != nil {
		return "", fmt.Errorf("saving settings: %w", err)
	}
	msg := "Settings saved."
	if st.MemoryMB != before.MemoryMB || st.CPUs != before.CPUs || st.Pids != before.Pids || st.DiskMB != before.DiskMB {
		msg = "Settings saved. The new limits apply to sandboxes started from now on; a running sandbox keeps its limits until it stops."
		if st.DiskMB != before.DiskMB {
			msg += " A home made larger before keeps its size until the sandbox is reset."
		}
	}
	if st.ControlPortOrDefault() != before.ControlPortOrDefault() {
		msg += fmt.Sprintf(" Peers reach you on port %d once eBrainPool starts again; peers who added you by address need the new port.", st.ControlPortOrDefault())
	}
	s.u.tray.update()
	return msg, nil
}

// loadApps lists the installed apps with a share checkbox each.
func (s *settingsView) loadApps() {
	defer s.apps.Refresh() // Add and RemoveAll alone do not redraw
	s.apps.RemoveAll()
	apps, sharing, err := s.u.b.LocalApps()
	if err != nil {
		s.apps.Add(widget.NewLabel(sentence(fmt.Sprintf("could not read the shared apps: %v", err))))
		return
	}
	if len(apps) == 0 {
		s.apps.Add(widget.NewLabel("No graphical apps found on this computer."))
		return
	}
	sort.Slice(apps, func(i, j int) bool { return strings.ToLower(apps[i].Name) < strings.ToLower(apps[j].Name) })
	s.apps.Add(widget.NewLabel("Apps others may ask to run (each runs in a sandbox):"))
	for _, a := range apps {
		id := a.ID
		c := widget.NewCheck(a.Name, nil)
		c.SetChecked(sharing.Shared(id))
		c.OnChanged = func(on bool) {
			if err := s.u.b.SetShared(id, on); err != nil {
				s.setStatus(fmt.Errorf("sharing %s: %w", id, err), "")
			}
		}
		var icon fyne.CanvasObject = widget.NewIcon(genericAppIcon())
		if b := s.u.b.LocalIcon(a); len(b) > 0 {
			img := canvas.NewImageFromResource(fyne.NewStaticResource(id+".png", b))
			img.FillMode = canvas.ImageFillContain
			img.SetMinSize(fyne.NewSize(24, 24))
			icon = img
		}
		s.apps.Add(container.NewBorder(nil, nil, icon, nil, c))
	}
}

// loadPeers lists the known (pinned) and blocked peers.
func (s *settingsView) loadPeers() {
	defer s.known.Refresh()
	s.known.RemoveAll()
	introducers := s.introducers()
	for _, p := range s.u.b.KnownPeers() {
		fp, name := p.Fingerprint, p.Name
		l := widget.NewLabel(fmt.Sprintf("%s · %s · first met %s", name, fp.Short(), p.FirstSeen.Format("2006-01-02")))
		l.Wrapping = fyne.TextWrapWord
		b := widget.NewButton("Forget", func() {
			if err := s.u.b.ForgetPeer(fp); err != nil {
				s.setStatus(fmt.Errorf("forgetting %s: %w", name, err), "")
				return
			}
			s.setStatus(nil, "Forgot "+name+".")
			s.loadPeers()
		})
		s.known.Add(container.NewBorder(nil, nil, nil, container.NewHBox(s.introducerCheck(fp, name, introducers[string(fp)]), b), l))
	}
	if len(s.known.Objects) == 0 {
		s.known.Add(widget.NewLabel("You have not met any peer yet."))
	}
	defer s.blocked.Refresh()
	s.blocked.RemoveAll()
	blocked := s.u.b.Blocked()
	fps := make([]string, 0, len(blocked))
	for fp := range blocked {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	for _, fp := range fps {
		fp, name := fp, blocked[fp]
		l := widget.NewLabel(fmt.Sprintf("%s · %s", name, identity.Fingerprint(fp).Short()))
		b := widget.NewButton("Unblock", func() {
			if err := s.u.b.Unblock(fp); err != nil {
				s.setStatus(fmt.Errorf("unblocking %s: %w", name, err), "")
				return
			}
			s.setStatus(nil, "Unblocked "+name+".")
			s.loadPeers()
		})
		s.blocked.Add(container.NewBorder(nil, nil, nil, b, l))
	}
	if len(fps) == 0 {
		s.blocked.Add(widget.NewLabel("Nobody is blocked."))
	}
	s.loadRules()
}

// decisionWords are how Settings and the CLI word a remembered decision.
var decisionWords = map[dbusapi.Decision]string{dbusapi.DecisionAllow: "always allowed", dbusapi.DecisionDeny: "always denied"}

// ruleText is one remembered decision as Settings lists it: peer, app,
// allow or deny, since when.
func ruleText(r dbusapi.Rule) string {
	since := "since before this was recorded"
	if r.Since > 0 {
		since = "since " + time.Unix(r.Since, 0).Format("2006-01-02 15:04")
	}
	return fmt.Sprintf("%s · %s · %s · %s", r.PeerName, r.AppName, decisionWords[r.Decision], since)
}

// loadRules lists the remembered decisions, each with Revoke.
func (s *settingsView) loadRules() {
	defer s.rules.Refresh()
	s.rules.RemoveAll()
	for _, r := range s.u.b.Rules() {
		r := r
		l := widget.NewLabel(ruleText(r))
		l.Wrapping = fyne.TextWrapWord
		b := widget.NewButton("Revoke", func() {
			if err := s.u.b.ForgetRule(r.Peer, r.App); err != nil {
				s.setStatus(fmt.Errorf("revoking the decision for %s and %s: %w", r.PeerName, r.AppName, err), "")
				return
			}
			s.setStatus(nil, fmt.Sprintf("%s will be asked again before running %s.", r.PeerName, r.AppName))
			s.loadPeers()
		})
		s.rules.Add(container.NewBorder(nil, nil, nil, b, l))
	}
	if len(s.rules.Objects) == 0 {
		s.rules.Add(widget.NewLabel("No remembered decisions: every request asks you."))
	}
}
