package ui

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// trustText describes a peer's trust state in plain language and says
// whether it is a warning.
func trustText(trust dbusapi.Trust) (string, bool) {
	switch trust {
	case dbusapi.TrustVerified:
		return "known, key verified", false
	case dbusapi.TrustNew:
		return "new: not met before", false
	case dbusapi.TrustChanged:
		return "KEY CHANGED: may be an impostor", true
	case dbusapi.TrustNameClash:
		return "same name as another peer you know", true
	}
	return string(trust), false
}

// peerBrowser is the window listing peers and their apps.
type peerBrowser struct {
	u      *UI
	win    fyne.Window
	all    []dbusapi.Peer // sorted by name
	shown  []dbusapi.Peer // all, filtered by the search
	filter string
	sel    string // selected fingerprint

	search    *widget.Entry
	list      *widget.List
	empty     *widget.Label
	header    *widget.Label
	detail    *widget.Label
	warning   *fyne.Container
	apps      *fyne.Container
	appsNote  *widget.Label
	launchBox *fyne.Container
	appsFor   map[string][]dbusapi.App

	// Opening files and bringing folders (files.go).
	openBtn  *widget.Button
	openNote *widget.Label
	// rows are the app rows shown, for a drop (dropped).
	rows []appRowRef
	// chooseFile and chooseFolder ask the user for a file or a folder
	// (Fyne's dialogs; tests replace them) and call done with its path.
	chooseFile, chooseFolder func(w fyne.Window, done func(path string))
	// chooser is the open dialog choosing among several apps, folder
	// the one launching an app with a folder (nil when not shown).
	chooser *appChooser
	folder  *folderLaunch
	// addBtn opens the "Add peer by address" dialog, adding is that
	// dialog while it is open (addpeer.go).
	addBtn *widget.Button
	adding *addPeerDialog
	// self shows who the user is and whether discovery works (self.go).
	self *selfView
}

func newPeerBrowser(u *UI) *peerBrowser {
	pb := &peerBrowser{u: u, appsFor: map[string][]dbusapi.App{}, chooseFile: chooseFile, chooseFolder: chooseFolder}
	pb.win = u.app.NewWindow("eBrainPool: peers")
	u.hideOnClose(pb.win, nil)
	pb.win.SetOnDropped(pb.dropped)
	pb.openBtn = widget.NewButtonWithIcon("Open a file…", theme.FileIcon(), pb.pickFile)
	pb.openNote = widget.NewLabel("")
	pb.openNote.Wrapping = fyne.TextWrapWord
	pb.openNote.Hide()

	pb.search = widget.NewEntry()
	pb.search.SetPlaceHolder("Search by name or host")
	pb.search.OnChanged = pb.setFilter

	pb.list = widget.NewList(
		func() int { return len(pb.shown) },
		func() fyne.CanvasObject {
			name := widget.NewLabelWithStyle("name", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
			sub := widget.NewLabel("host")
			sub.SizeName = theme.SizeNameCaptionText
			name.Truncation, sub.Truncation = fyne.TextTruncateEllipsis, fyne.TextTruncateEllipsis
			icon := widget.NewIcon(theme.ComputerIcon())
			return container.NewBorder(nil, nil, icon, nil, container.NewVBox(name, sub))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(pb.shown) {
				return
			}
			p := pb.shown[i]
			c := o.(*fyne.Container)
			box := c.Objects[0].(*fyne.Container)
			icon := c.Objects[1].(*widget.Icon)
			name, sub := box.Objects[0].(*widget.Label), box.Objects[1].(*widget.Label)
			name.SetText(p.Name)
			t, warn := trustText(p.Trust)
			sub.SetText(p.Host + " · " + t + introText(p))
			if warn {
				sub.Importance = widget.DangerImportance
				icon.SetResource(theme.WarningIcon())
			} else {
				sub.Importance = widget.MediumImportance
				icon.SetResource(theme.ComputerIcon())
			}
			sub.Refresh()
		})
	pb.list.OnSelected = func(i widget.ListItemID) {
		if i < len(pb.shown) {
			pb.selectPeer(pb.shown[i].Fingerprint)
		}
	}
	pb.empty = widget.NewLabel("No peers found yet. Peers on your network appear here when they run eBrainPool.")
	pb.empty.Wrapping = fyne.TextWrapWord

	pb.header = widget.NewLabelWithStyle("Choose a peer", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	pb.header.SizeName = theme.SizeNameSubHeadingText
	pb.header.Truncation = fyne.TextTruncateEllipsis
	pb.detail = widget.NewLabel("")
	pb.detail.Wrapping = fyne.TextWrapWord
	pb.warning = container.NewVBox()
	pb.apps = container.NewVBox()
	pb.appsNote = widget.NewLabel("")
	pb.appsNote.Wrapping = fyne.TextWrapWord
	pb.launchBox = container.NewVBox()

	pb.self = newSelfView(u)
	// Who you are and whether discovery works, below the list (above
	// it, the list moved under the pointer as the lines wrapped).
	left := container.NewBorder(pb.search, container.NewVBox(pb.self.box, pb.openNote, pb.openBtn, pb.addPeerButton()), nil, nil, container.NewStack(pb.list, container.NewVBox(pb.empty)))
	right := container.NewBorder(
		container.NewVBox(pb.header, pb.detail, pb.warning),
		container.NewVBox(widget.NewSeparator(), pb.launchBox),
		nil, nil,
		container.NewVScroll(container.NewVBox(pb.appsNote, pb.apps)))
	split := container.NewHSplit(left, right)
	split.Offset = 0.38
	pb.win.SetContent(split)
	pb.win.Resize(fyne.NewSize(760, 480))

	pb.reload()
	pb.showLaunches()
	return pb
}

// reload takes the whole peer list from the backend again.
func (pb *peerBrowser) reload() {
	pb.all = pb.u.b.Peers()
	pb.sortAndFilter()
	pb.self.refresh()
}

// upsert adds or updates a peer (peer-added event).
func (pb *peerBrowser) upsert(p dbusapi.Peer) {
	for i := range pb.all {
		if pb.all[i].Fingerprint == p.Fingerprint {
			pb.all[i] = p
			pb.sortAndFilter()
			if pb.sel == p.Fingerprint {
				pb.showDetail()
			}
			return
		}
	}
	pb.all = append(pb.all, p)
	pb.sortAndFilter()
}

// remove drops a peer (peer-removed event).
func (pb *peerBrowser) remove(fp string) {
	for i := range pb.all {
		if pb.all[i].Fingerprint == fp {
			gone := pb.all[i]
			pb.all = append(pb.all[:i], pb.all[i+1:]...)
			pb.sortAndFilter()
			if pb.sel == fp {
				pb.sel = ""
				pb.header.SetText("Choose a peer")
				pb.detail.SetText(gone.Name + " has left the network.")
				pb.warning.RemoveAll()
				pb.apps.RemoveAll()
				pb.appsNote.SetText("")
			}
			return
		}
	}
}

func (pb *peerBrowser) setFilter(q string) {
	pb.filter = strings.ToLower(strings.TrimSpace(q))
	pb.sortAndFilter()
}

func (pb *peerBrowser) sortAndFilter() {
	sort.SliceStable(pb.all, func(i, j int) bool {
		a, b := strings.ToLower(pb.all[i].Name), strings.ToLower(pb.all[j].Name)
		if a != b {
			return a < b
		}
		return pb.all[i].Fingerprint < pb.all[j].Fingerprint
	})
	pb.shown = pb.shown[:0]
	for _, p := range pb.all {
		if pb.filter == "" || strings.Contains(strings.ToLower(p.Name), pb.filter) || strings.Contains(strings.ToLower(p.Host), pb.filter) {
			pb.shown = append(pb.shown, p)
		}
	}
	switch {
	case len(pb.all) == 0:
		pb.empty.SetText("No peers found yet. Peers on your network appear here when they run eBrainPool.")
		pb.empty.Show()
	case len(pb.shown) == 0:
		pb.empty.SetText(fmt.Sprintf("No peer matches %q.", pb.search.Text))
		pb.empty.Show()
	default:
		pb.empty.Hide()
	}
	pb.list.UnselectAll()
	for i, p := range pb.shown {
		if p.Fingerprint == pb.sel {
			pb.list.OnSelected = nil
			pb.list.Select(i)
			pb.list.OnSelected = func(i widget.ListItemID) {
				if i < len(pb.shown) {
					pb.selectPeer(pb.shown[i].Fingerprint)
				}
			}
		}
	}
	pb.list.Refresh()
}

// names is the shown peers' names (for tests).
func (pb *peerBrowser) names() []string {
	out := make([]string, len(pb.shown))
	for i, p := range pb.shown {
		out[i] = p.Name
	}
	return out
}

func (pb *peerBrowser) selected() (dbusapi.Peer, bool) {
	for _, p := range pb.all {
		if p.Fingerprint == pb.sel {
			return p, true
		}
	}
	return dbusapi.Peer{}, false
}

// selectPeer shows a peer's details and loads its apps.
func (pb *peerBrowser) selectPeer(fp string) {
	pb.sel = fp
	pb.showDetail()
	p, ok := pb.selected()
	if !ok {
		return
	}
	pb.apps.RemoveAll()
	if apps, ok := pb.appsFor[fp]; ok {
		pb.showApps(p, apps, nil)
	} else {
		pb.appsNote.SetText("Asking " + p.Name + " which apps it shares…")
	}
	pb.u.spawn(func() {
		apps, err := pb.u.b.Apps(pb.u.ctx, fp)
		pb.u.do(func() {
			if err == nil {
				pb.appsFor[fp] = apps
				pb.u.tray.setApps(fp, apps, nil)
			}
			if pb.sel == fp {
				pb.showApps(p, apps, err)
			}
		})
	})
}

func (pb *peerBrowser) showDetail() {
	p, ok := pb.selected()
	if !ok {
		return
	}
	pb.header.SetText(p.Name)
	t, _ := trustText(p.Trust)
	pb.detail.SetText(fmt.Sprintf("Host: %s (%s)\nFingerprint: %s\nStatus: %s", p.Host, p.Address, p.Short, t) + introText(p) + addedText(pb.u.b, p.Fingerprint))
	defer pb.warning.Refresh() // see showLaunches
	pb.warning.RemoveAll()
	switch p.Trust {
	case dbusapi.TrustChanged:
		pb.warning.Add(warningBanner("WARNING: the key of " + p.Name + " has changed since you first met it. " +
			"Someone may be impersonating it. Do not use it unless its owner tells you they reinstalled; " +
			"then forget the peer in Settings and meet it again."))
	case dbusapi.TrustNameClash:
		pb.warning.Add(warningBanner("Another peer you know already uses the name " + p.Name +
			". Check the fingerprint with its owner before you use it."))
	}
}

// warningBanner is a loud, red, wrapped message.
func warningBanner(msg string) fyne.CanvasObject {
	bg := canvas.NewRectangle(theme.Color(theme.ColorNameError))
	bg.CornerRadius = theme.InputRadiusSize()
	txt := widget.NewRichText(&widget.TextSegment{Text: msg, Style: widget.RichTextStyle{
		ColorName: theme.ColorNameForegroundOnError, TextStyle: fyne.TextStyle{Bold: true}}})
	txt.Wrapping = fyne.TextWrapWord
	return container.NewStack(bg, container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, txt))
}

// showApps lists a peer's apps with Launch buttons, or why there are none.
func (pb *peerBrowser) showApps(p dbusapi.Peer, apps []dbusapi.App, err error) {
	defer pb.apps.Refresh() // see showLaunches
	pb.apps.RemoveAll()
	pb.rows = nil
	switch {
	case err != nil:
		pb.appsNote.SetText(sentence(fmt.Sprintf("could not get the apps of %s: %v", p.Name, err)))
		pb.appsNote.Importance = widget.DangerImportance
	case len(apps) == 0:
		pb.appsNote.SetText(p.Name + " does not share any apps right now.")
		pb.appsNote.Importance = widget.MediumImportance
	default:
		pb.appsNote.SetText("Apps " + p.Name + " shares:")
		pb.appsNote.Importance = widget.MediumImportance
	}
	pb.appsNote.Refresh()
	for _, a := range apps {
		dc := newDisplayControl(pb, p, a)
		row := container.NewVBox(pb.appRow(p, a), dc.box)
		pb.rows = append(pb.rows, appRowRef{obj: row, peer: p, app: a, display: dc})
		pb.apps.Add(row)
	}
	for _, r := range pb.rows {
		r.display.load()
	}
}

func (pb *peerBrowser) appRow(p dbusapi.Peer, a dbusapi.App) fyne.CanvasObject {
	var icon fyne.CanvasObject
	if len(a.Icon) > 0 {
		img := canvas.NewImageFromResource(fyne.NewStaticResource(a.ID+".png", a.Icon))
		img.FillMode = canvas.ImageFillContain
		img.SetMinSize(fyne.NewSize(32, 32))
		icon = img
	} else {
		icon = widget.NewIcon(genericAppIcon())
	}
	name := widget.NewLabelWithStyle(a.Name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	name.Truncation = fyne.TextTruncateEllipsis // the window fits the screen
	text := fyne.CanvasObject(name)
	if a.Comment != "" {
		c := widget.NewLabel(a.Comment)
		c.SizeName = theme.SizeNameCaptionText
		c.Truncation = fyne.TextTruncateEllipsis
		text = container.NewVBox(name, c)
	}
	btn := widget.NewButtonWithIcon("Launch", theme.MediaPlayIcon(), func() { pb.u.launch(p, a) })
	btn.Importance = widget.HighImportance
	folder := widget.NewButtonWithIcon("With a folder…", theme.FolderOpenIcon(), func() { pb.pickFolder(p, a) })
	if p.Trust == dbusapi.TrustChanged {
		btn.Disable()
		folder.Disable()
	}
	return container.NewBorder(nil, nil, container.NewCenter(icon), container.NewCenter(container.NewHBox(folder, btn)), text)
}

// showLaunches redraws the launches area.
func (pb *peerBrowser) showLaunches() {
	// Refreshed, not only laid out: a container's Add and RemoveAll do not
	// mark the window for a redraw (what changed showed only once the
	// pointer moved).
	defer pb.launchBox.Refresh()
	pb.launchBox.RemoveAll()
	list := pb.u.launches.list()
	if len(list) == 0 {
		pb.launchBox.Add(widget.NewLabel("Apps you launch show their progress here."))
		return
	}
	for i, l := range list {
		if i == 4 {
			break
		}
		pb.launchBox.Add(pb.launchRow(l))
	}
}

// launchRow shows one launch: progress while starting, the outcome after.
func (pb *peerBrowser) launchRow(l *launchState) fyne.CanvasObject {
	u := pb.u
	label := widget.NewLabel(l.text())
	label.Wrapping = fyne.TextWrapWord
	if l.failed() {
		label.Importance = widget.DangerImportance
	}
	if l.done {
		id := l.id
		x := widget.NewButtonWithIcon("", theme.CancelIcon(), func() {
			u.dismissLaunch(id)
			pb.showLaunches()
		})
		x.Importance = widget.LowImportance
		row := container.NewBorder(nil, nil, nil, x, label)
		if l.outcome == dbusapi.OutcomeUnprotectedDisplay && l.appID != "" {
			trust := widget.NewButtonWithIcon("Trust it with my whole display…", theme.WarningIcon(), func() { pb.confirmTrusted(l) })
			return container.NewVBox(row, container.NewHBox(trust))
		}
		return row
	}
	if l.stage == dbusapi.StageRunning {
		return label
	}
	bar := widget.NewProgressBar()
	bar.TextFormatter = func() string {
		return fmt.Sprintf("step %d of %d", stageStep(l.stage), len(dbusapi.Stages))
	}
	bar.SetValue(l.fraction())
	return container.NewVBox(label, bar)
}

// confirmTrusted asks, after a launch this display could not confine
// (no SECURITY extension), whether the app may have trusted access to the
// whole display, saying what it can then do; yes remembers that for the
// app of that peer (Settings' trusted_display) and launches it again (a
// launch that brought files is left to the user to start again: only
// their names are kept).
func (pb *peerBrowser) confirmTrusted(l *launchState) {
	peer, peerName, appID, app := l.peer, l.peerName, l.appID, l.app
	msg := widget.NewLabel(trustedWarning(app, peerName))
	msg.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustomConfirm("Trust "+app+" with your display?", "Trust and launch", "Cancel", msg, func(ok bool) {
		if !ok {
			return
		}
		if err := pb.u.b.SetDisplayMode(peer, appID, dbusapi.DisplayTrusted); err != nil {
			dialog.ShowError(errors.New(modeErrText(app, err)), pb.win)
			return
		}
		pb.u.dismissLaunch(l.id) // the display controls follow the daemon's DisplayModesChanged
		if len(l.files) == 0 {
			pb.u.launch(dbusapi.Peer{Fingerprint: peer, Name: peerName}, dbusapi.App{ID: appID, Name: app})
		}
		pb.showLaunches()
	}, pb.win)
	d.Resize(fyne.NewSize(460, 260))
	d.Show()
}

// trustedWarning says what an app with trusted display access can do.
func trustedWarning(app, peer string) string {
	return fmt.Sprintf("Your display cannot keep %s from %s to its own windows (its X server has no SECURITY extension, as Xwayland on many Wayland desktops). "+
		"With trusted access the app can see everything on your screen, read what you type into other windows and type into them itself, "+
		"for example into a terminal. Allow it only for apps and peers you trust with everything on your screen; "+
		"eBrainPool remembers the choice for this app (choose Protected for it here, or Use default in Settings, to take it back).", app, peer)
}
