package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// The user's own files in a peer's app, from the peer browser: "Open a
// file…" (the apps that open it by type: one launches, several are
// offered), "With a folder…" beside each app's Launch (the folder in the
// app's home, read-only if asked), and files or folders dropped on an
// app's row (that app with them) or elsewhere in the window (opened as
// "Open a file…" does). The daemon serves exactly those to the peer's
// sandbox, for that session only.

// appRowRef is an app row as shown, for mapping a drop to its app.
type appRowRef struct {
	obj  fyne.CanvasObject
	peer dbusapi.Peer
	app  dbusapi.App
	// display is the app's display mode control (displaymode.go).
	display *displayControl
}

// chooseFile is Fyne's file dialog.
func chooseFile(w fyne.Window, done func(string)) {
	d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil || r == nil {
			return
		}
		path := r.URI().Path()
		r.Close()
		done(path)
	}, w)
	d.Resize(fyne.NewSize(680, 460))
	d.Show()
}

// chooseFolder is Fyne's folder dialog.
func chooseFolder(w fyne.Window, done func(string)) {
	d := dialog.NewFolderOpen(func(l fyne.ListableURI, err error) {
		if err != nil || l == nil {
			return
		}
		done(l.Path())
	}, w)
	d.Resize(fyne.NewSize(680, 460))
	d.Show()
}

// OpenFiles opens files with a peer's app, from outside the window (a
// file manager's "Open with eBrainPool", `ebrainpool open --gui`): the
// peer browser shows the choice, or why none opens them.
func (u *UI) OpenFiles(files []string, folders []dbusapi.Folder) {
	if u.win != nil {
		u.win.send(Message{Window: "peers", Open: files, OpenFolders: folders})
		return
	}
	u.ShowPeers()
	u.peers.openFiles(files, folders)
}

// pickFile is "Open a file…".
func (pb *peerBrowser) pickFile() {
	pb.chooseFile(pb.win, func(path string) { pb.openFiles([]string{path}, nil) })
}

// note says how opening files goes, below "Open a file…".
func (pb *peerBrowser) note(text string, imp widget.Importance) {
	pb.openNote.SetText(text)
	pb.openNote.Importance = imp
	pb.openNote.Show()
	pb.openNote.Refresh()
}

// openFiles asks which shared apps open the files: one is launched with
// them (and the folders), several are offered, none is said.
func (pb *peerBrowser) openFiles(files []string, folders []dbusapi.Folder) {
	names := broughtNames(files, nil)
	pb.note("Looking for a shared app that opens "+andList(names)+"…", widget.MediumImportance)
	pb.u.spawn(func() {
		cands, err := pb.u.b.AppsForFiles(pb.u.ctx, "", files)
		pb.u.do(func() {
			switch {
			case err != nil:
				pb.note(sentence(err.Error()), widget.DangerImportance)
			case len(cands) == 0:
				pb.note("No app your peers share opens "+andList(names)+".", widget.DangerImportance)
			case len(cands) == 1:
				pb.openWith(cands[0], files, folders)
			default:
				pb.choose(cands, files, folders)
			}
		})
	})
}

// openWith launches a candidate app with the files.
func (pb *peerBrowser) openWith(c dbusapi.Candidate, files []string, folders []dbusapi.Folder) {
	p := dbusapi.Peer{Fingerprint: c.Peer, Name: c.PeerName}
	for _, known := range pb.all {
		if known.Fingerprint == c.Peer {
			p = known
		}
	}
	if p.Trust == dbusapi.TrustChanged {
		pb.note(fmt.Sprintf("Not opening %s with %s: the key of %s has changed.", andList(broughtNames(files, nil)), c.AppName, p.Name), widget.DangerImportance)
		return
	}
	pb.note(fmt.Sprintf("Opening %s with %s of %s.", andList(broughtNames(files, folders)), c.AppName, c.PeerName), widget.MediumImportance)
	pb.u.launchWith(p, dbusapi.App{ID: c.App, Name: c.AppName}, files, folders)
	// The peer whose app it is, shown with its apps.
	if pb.sel != p.Fingerprint {
		pb.selectPeer(p.Fingerprint)
		pb.sortAndFilter()
	}
}

// appChooser is the dialog choosing one of several apps for files.
type appChooser struct {
	dlg   dialog.Dialog
	radio *widget.RadioGroup
	open  *widget.Button
}

// choose offers the apps that open the files.
func (pb *peerBrowser) choose(cands []dbusapi.Candidate, files []string, folders []dbusapi.Folder) {
	names := andList(broughtNames(files, nil))
	pb.note(fmt.Sprintf("%d shared apps open %s: choose one.", len(cands), names), widget.MediumImportance)
	var options []string
	byOption := map[string]dbusapi.Candidate{}
	for _, c := range cands {
		o := fmt.Sprintf("%s of %s", c.AppName, c.PeerName)
		if _, dup := byOption[o]; dup {
			o = fmt.Sprintf("%s of %s (%s)", c.AppName, c.PeerName, c.App)
		}
		options = append(options, o)
		byOption[o] = c
	}
	ch := &appChooser{}
	ch.radio = widget.NewRadioGroup(options, func(string) {
		if ch.radio.Selected != "" {
			ch.open.Enable()
		}
	})
	ch.open = widget.NewButtonWithIcon("Open", theme.ConfirmIcon(), func() {
		c, ok := byOption[ch.radio.Selected]
		if !ok {
			return
		}
		ch.dlg.Hide()
		pb.openWith(c, files, folders)
	})
	ch.open.Importance = widget.HighImportance
	ch.open.Disable()
	cancel := widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() {
		ch.dlg.Hide()
		pb.note("Nothing opened.", widget.MediumImportance)
	})
	intro := widget.NewLabel("Several apps your peers share open " + names + ". It goes to the peer's sandbox, nothing else of yours.")
	intro.Wrapping = fyne.TextWrapWord
	content := container.NewBorder(intro, container.NewHBox(layout.NewSpacer(), cancel, ch.open), nil, nil, container.NewVScroll(ch.radio))
	ch.dlg = dialog.NewCustomWithoutButtons("Open "+names+" with…", content, pb.win)
	ch.dlg.SetOnClosed(func() {
		if pb.chooser == ch {
			pb.chooser = nil
		}
	})
	ch.dlg.Resize(fyne.NewSize(460, 320))
	pb.chooser = ch
	ch.dlg.Show()
}

// folderLaunch is the dialog launching an app with a chosen folder.
type folderLaunch struct {
	dlg      dialog.Dialog
	readOnly *widget.Check
	launch   *widget.Button
	cancel   *widget.Button
}

// pickFolder is "With a folder…" of an app: choose the folder, then say
// whether the app may change it.
func (pb *peerBrowser) pickFolder(p dbusapi.Peer, a dbusapi.App) {
	pb.chooseFolder(pb.win, func(path string) { pb.confirmFolder(p, a, path) })
}

func (pb *peerBrowser) confirmFolder(p dbusapi.Peer, a dbusapi.App, path string) {
	fl := &folderLaunch{}
	name := filepath.Base(path)
	fl.readOnly = widget.NewCheck("Read-only: the app cannot change anything in it", nil)
	fl.launch = widget.NewButtonWithIcon("Launch", theme.MediaPlayIcon(), func() {
		fl.dlg.Hide()
		pb.u.launchWith(p, a, nil, []dbusapi.Folder{{Path: path, ReadOnly: fl.readOnly.Checked}})
	})
	fl.launch.Importance = widget.HighImportance
	fl.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() { fl.dlg.Hide() })
	text := widget.NewLabel(fmt.Sprintf("%s on %s gets your folder %s (%s) in its home, for this session only; nothing else of yours.",
		a.Name, p.Name, name, path))
	text.Wrapping = fyne.TextWrapWord
	content := container.NewVBox(text, fl.readOnly, container.NewHBox(layout.NewSpacer(), fl.cancel, fl.launch))
	fl.dlg = dialog.NewCustomWithoutButtons("Launch "+a.Name+" with "+name, content, pb.win)
	fl.dlg.SetOnClosed(func() {
		if pb.folder == fl {
			pb.folder = nil
		}
	})
	fl.dlg.Resize(fyne.NewSize(460, content.MinSize().Height+60))
	pb.folder = fl
	fl.dlg.Show()
}

// dropped takes files or folders dropped on the window: on an app's row
// that app is launched with them (folders read-write), elsewhere files are
// opened as "Open a file…" opens them.
func (pb *peerBrowser) dropped(pos fyne.Position, uris []fyne.URI) {
	var files []string
	var folders []dbusapi.Folder
	for _, u := range uris {
		if u.Scheme() != "file" {
			pb.note("Only your own files can be brought: "+u.String()+" is not a local file.", widget.DangerImportance)
			return
		}
		st, err := os.Stat(u.Path())
		if err != nil {
			pb.note(sentence(err.Error()), widget.DangerImportance)
			return
		}
		if st.IsDir() {
			folders = append(folders, dbusapi.Folder{Path: u.Path()})
		} else {
			files = append(files, u.Path())
		}
	}
	if len(files)+len(folders) == 0 {
		return
	}
	if r, ok := pb.rowAt(pos); ok {
		if r.peer.Trust == dbusapi.TrustChanged {
			pb.note("Not launching "+r.app.Name+": the key of "+r.peer.Name+" has changed.", widget.DangerImportance)
			return
		}
		pb.note(fmt.Sprintf("Launching %s of %s with %s.", r.app.Name, r.peer.Name, andList(broughtNames(files, folders))), widget.MediumImportance)
		pb.u.launchWith(r.peer, r.app, files, folders)
		return
	}
	if len(folders) > 0 {
		pb.note("Drop a folder on an app to bring it into that app.", widget.MediumImportance)
		return
	}
	pb.openFiles(files, nil)
}

// rowAt is the app row under a position of the window's canvas: in the
// scrolled apps area, between the peer's details and the launches (a row
// scrolled out of it is not there).
func (pb *peerBrowser) rowAt(pos fyne.Position) (appRowRef, bool) {
	d := pb.u.app.Driver()
	top := d.AbsolutePositionForObject(pb.warning).Y + pb.warning.Size().Height
	if bottom := d.AbsolutePositionForObject(pb.launchBox).Y; pos.Y < top || pos.Y >= bottom {
		return appRowRef{}, false
	}
	for _, r := range pb.rows {
		if !r.obj.Visible() {
			continue
		}
		at, size := d.AbsolutePositionForObject(r.obj), r.obj.Size()
		if pos.X >= at.X && pos.X < at.X+size.Width && pos.Y >= at.Y && pos.Y < at.Y+size.Height {
			return r, true
		}
	}
	return appRowRef{}, false
}

// bringsText is the popup's line on what a requester brings into the app:
// how many files and folders and their names, never their contents.
func bringsText(name string, labels []string) string {
	folders := 0
	for _, l := range labels {
		if strings.Contains(l, "/") { // a folder's label ends in "/", or "/ (read-only)"
			folders++
		}
	}
	var count []string
	if n := len(labels) - folders; n > 0 {
		count = append(count, plural(n, "file", "files"))
	}
	if folders > 0 {
		count = append(count, plural(folders, "folder", "folders"))
	}
	return fmt.Sprintf("%s brings %s of their own into the app: %s. The app sees those, nothing of yours.",
		name, andList(count), andList(labels))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
