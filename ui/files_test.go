package ui

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// filesUI is the peer browser on alice, who shares GIMP and Inkscape, with
// the file and folder dialogs answered by the test (picked).
func filesUI(t *testing.T) (*UI, *fakeBackend, *string) {
	t.Helper()
	f := newFake()
	alice := peer("alice", "alice-desk", dbusapi.TrustVerified)
	f.peers = []dbusapi.Peer{alice, peer("eve", "eve-pc", dbusapi.TrustChanged)}
	f.apps[alice.Fingerprint] = []dbusapi.App{{ID: "org.gimp.GIMP", Name: "GIMP"}, {ID: "org.inkscape.Inkscape", Name: "Inkscape"}}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(alice.Fingerprint)
	picked := new(string)
	pick := func(_ fyne.Window, done func(string)) {
		if *picked != "" {
			done(*picked)
		}
	}
	u.peers.chooseFile, u.peers.chooseFolder = pick, pick
	return u, f, picked
}

// userFiles makes a file and a folder of the user's.
func userFiles(t *testing.T) (file, folder string) {
	t.Helper()
	dir := t.TempDir()
	file, folder = filepath.Join(dir, "notes.txt"), filepath.Join(dir, "Pictures")
	if err := os.WriteFile(file, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	return file, folder
}

// rowButton is the button with this text in the row of app.
func (pb *peerBrowser) rowButton(app, text string) *widget.Button {
	for _, r := range pb.rows {
		if r.app.Name == app {
			return first(r.obj, func(b *widget.Button) bool { return b.Text == text })
		}
	}
	return nil
}

// launchText is the newest launch's line as the peer browser shows it.
func launchText(t *testing.T, u *UI) string {
	t.Helper()
	l := u.launches.list()
	if len(l) == 0 {
		t.Fatal("no launch shown")
	}
	if !strings.Contains(joined(u.peers.launchBox), l[0].text()) {
		t.Errorf("launch area %q does not show %q", joined(u.peers.launchBox), l[0].text())
	}
	return l[0].text()
}

// "Open a file…": the apps that open the file, by type; one launches, several
// are offered, none says why.
func TestOpenAFile(t *testing.T) {
	file, _ := userFiles(t)
	gimp := dbusapi.Candidate{Peer: "SHA256:alice", PeerName: "alice", App: "org.gimp.GIMP", AppName: "GIMP"}
	ink := dbusapi.Candidate{Peer: "SHA256:alice", PeerName: "alice", App: "org.inkscape.Inkscape", AppName: "Inkscape"}
	for _, tc := range []struct {
		name     string
		cands    []dbusapi.Candidate
		err      error
		choose   string // in the chooser, "" for none shown
		launched []string
		note     string
	}{
		{name: "one app", cands: []dbusapi.Candidate{gimp}, launched: []string{"SHA256:alice/org.gimp.GIMP"},
			note: "Opening notes.txt with GIMP of alice."},
		{name: "several apps", cands: []dbusapi.Candidate{gimp, ink}, choose: "Inkscape of alice",
			launched: []string{"SHA256:alice/org.inkscape.Inkscape"}, note: "Opening notes.txt with Inkscape of alice."},
		{name: "no app", err: errors.New("no app shared by any peer opens notes.txt (text/plain)"),
			note: "No app shared by any peer opens notes.txt (text/plain)."},
		{name: "key changed", cands: []dbusapi.Candidate{{Peer: "SHA256:eve", PeerName: "eve", App: "x", AppName: "X"}},
			note: "Not opening notes.txt with X: the key of eve has changed."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, f, picked := filesUI(t)
			f.candidates, f.candErr = tc.cands, tc.err
			*picked = file
			u.peers.selectPeer("SHA256:eve") // another peer shown
			test.Tap(u.peers.openBtn)
			if !reflect.DeepEqual(f.candAsked, [][]string{{file}}) {
				t.Fatalf("asked for the apps of %q, want [[%s]]", f.candAsked, file)
			}
			if tc.choose != "" {
				ch := u.peers.chooser
				if ch == nil {
					t.Fatal("several apps open it, but no choice is shown")
				}
				if !reflect.DeepEqual(ch.radio.Options, []string{"GIMP of alice", "Inkscape of alice"}) {
					t.Errorf("offered %q", ch.radio.Options)
				}
				if !ch.open.Disabled() {
					t.Error("Open is enabled before an app is chosen")
				}
				if len(f.launched) != 0 {
					t.Fatalf("launched %q before the choice", f.launched)
				}
				ch.radio.SetSelected(tc.choose)
				test.Tap(ch.open)
			} else if u.peers.chooser != nil {
				t.Error("a choice is shown")
			}
			if !reflect.DeepEqual(f.launched, tc.launched) && (len(f.launched) > 0 || len(tc.launched) > 0) {
				t.Fatalf("launched %q, want %q", f.launched, tc.launched)
			}
			if got := u.peers.openNote.Text; got != tc.note || !u.peers.openNote.Visible() {
				t.Errorf("note %q (visible %v), want %q", got, u.peers.openNote.Visible(), tc.note)
			}
			if len(tc.launched) == 0 {
				return
			}
			if b := f.brought["launch-1"]; !reflect.DeepEqual(b.files, []string{file}) || len(b.folders) != 0 {
				t.Errorf("the launch brought %+v, want the file", b)
			}
			if got := launchText(t, u); !strings.Contains(got, "Bringing notes.txt.") {
				t.Errorf("launch progress %q does not say what it brings", got)
			}
			if u.peers.sel != "SHA256:alice" || u.peers.header.Text != "alice" {
				t.Errorf("the peer browser shows %q (%q), not the app's peer", u.peers.sel, u.peers.header.Text)
			}
		})
	}
	t.Run("the dialog", func(t *testing.T) {
		u, _, _ := filesUI(t)
		u.peers.chooseFile = chooseFile
		test.Tap(u.peers.openBtn)
		if u.peers.win.Canvas().Overlays().Top() == nil {
			t.Error("Open a file… shows no file dialog")
		}
	})
}

// "With a folder…" beside Launch: the folder chosen, read-only if ticked,
// in the app's home; the launch says what it brings.
func TestFolderPicker(t *testing.T) {
	_, folder := userFiles(t)
	for _, tc := range []struct {
		name     string
		readOnly bool
		shown    string
	}{
		{"read-write", false, "Bringing Pictures/."},
		{"read-only", true, "Bringing Pictures/ (read-only)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, f, picked := filesUI(t)
			*picked = folder
			btn := u.peers.rowButton("Inkscape", "With a folder…")
			if btn == nil {
				t.Fatalf("no folder picker beside Inkscape's Launch: %q", joined(u.peers.apps))
			}
			test.Tap(btn)
			fl := u.peers.folder
			if fl == nil {
				t.Fatal("no launch dialog after the folder was chosen")
			}
			if fl.readOnly.Checked {
				t.Error("read-only is ticked by default")
			}
			if len(f.launched) != 0 {
				t.Fatalf("launched %q before Launch", f.launched)
			}
			if tc.readOnly {
				test.Tap(fl.readOnly)
			}
			test.Tap(fl.launch)
			if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/org.inkscape.Inkscape"}) {
				t.Fatalf("launched %q", f.launched)
			}
			want := []dbusapi.Folder{{Path: folder, ReadOnly: tc.readOnly}}
			if b := f.brought["launch-1"]; !reflect.DeepEqual(b.folders, want) || len(b.files) != 0 {
				t.Errorf("brought %+v, want folders %+v", b, want)
			}
			if got := launchText(t, u); !strings.Contains(got, tc.shown) {
				t.Errorf("launch progress %q, want it to say %q", got, tc.shown)
			}
			// Running, it still says what the app has.
			u.launches.progress("launch-1", dbusapi.StageRunning)
			if got := u.launches.list()[0].text(); !strings.Contains(got, "It has your "+strings.TrimPrefix(tc.shown, "Bringing ")) {
				t.Errorf("running launch says %q", got)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		u, f, picked := filesUI(t)
		*picked = folder
		test.Tap(u.peers.rowButton("GIMP", "With a folder…"))
		if u.peers.folder == nil {
			t.Fatal("no launch dialog")
		}
		test.Tap(u.peers.folder.cancel)
		if len(f.launched) != 0 || u.peers.folder != nil {
			t.Errorf("cancelled: launched %q, dialog %v", f.launched, u.peers.folder)
		}
	})
	t.Run("key changed", func(t *testing.T) {
		u, _, _ := filesUI(t)
		u.peers.selectPeer("SHA256:eve")
		f := u.b.(*fakeBackend)
		f.apps["SHA256:eve"] = []dbusapi.App{{ID: "x", Name: "X"}}
		u.peers.selectPeer("SHA256:eve")
		if b := u.peers.rowButton("X", "With a folder…"); b == nil || !b.Disabled() {
			t.Error("the folder picker of a peer whose key changed is not disabled")
		}
	})
	t.Run("the dialog", func(t *testing.T) {
		u, _, _ := filesUI(t)
		u.peers.chooseFolder = chooseFolder
		test.Tap(u.peers.rowButton("GIMP", "With a folder…"))
		if u.peers.win.Canvas().Overlays().Top() == nil {
			t.Error("With a folder… shows no folder dialog")
		}
	})
}

// Files and folders dropped on an app's row launch that app with them;
// elsewhere files are opened by type.
func TestDropOnApp(t *testing.T) {
	file, folder := userFiles(t)
	u, f, _ := filesUI(t)
	u.peers.win.Resize(fyne.NewSize(820, 520))
	d := u.app.Driver()
	middle := func(o fyne.CanvasObject) fyne.Position {
		return d.AbsolutePositionForObject(o).Add(fyne.NewPos(o.Size().Width/2, o.Size().Height/2))
	}
	var gimp, ink fyne.CanvasObject
	for _, r := range u.peers.rows {
		switch r.app.Name {
		case "GIMP":
			gimp = r.obj
		case "Inkscape":
			ink = r.obj
		}
	}
	if gimp == nil || ink == nil || ink.Size().Height == 0 {
		t.Fatalf("rows not laid out: %v %v", gimp, ink)
	}
	// On Inkscape's Launch button itself: Inkscape, with both.
	u.peers.dropped(middle(u.peers.rowButton("Inkscape", "Launch")), []fyne.URI{storage.NewFileURI(file), storage.NewFileURI(folder)})
	if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/org.inkscape.Inkscape"}) {
		t.Fatalf("dropped on Inkscape's Launch: launched %q", f.launched)
	}
	if b := f.brought["launch-1"]; !reflect.DeepEqual(b.files, []string{file}) || !reflect.DeepEqual(b.folders, []dbusapi.Folder{{Path: folder}}) {
		t.Errorf("brought %+v", b)
	}
	if got := launchText(t, u); !strings.Contains(got, "Bringing notes.txt and Pictures/.") {
		t.Errorf("launch progress %q", got)
	}
	// On GIMP's row (its name): GIMP.
	u.peers.dropped(middle(gimp).Subtract(fyne.NewPos(gimp.Size().Width/3, 0)), []fyne.URI{storage.NewFileURI(file)})
	if len(f.launched) != 2 || f.launched[1] != "SHA256:alice/org.gimp.GIMP" {
		t.Fatalf("dropped on GIMP's row: launched %q", f.launched)
	}
	// On the launches below the apps: not an app's row.
	u.peers.dropped(middle(u.peers.launchBox), []fyne.URI{storage.NewFileURI(file)})
	if len(f.launched) != 2 || len(f.candAsked) != 1 || u.peers.chooser != nil || u.peers.openNote.Text != "No app your peers share opens notes.txt." {
		t.Fatalf("dropped on the launches (no app for it): launched %q, asked %q, note %q", f.launched, f.candAsked, u.peers.openNote.Text)
	}
	f.candAsked = nil
	// Outside the apps (the peer list): opened by type.
	f.candidates = []dbusapi.Candidate{{Peer: "SHA256:alice", PeerName: "alice", App: "org.gimp.GIMP", AppName: "GIMP"}}
	u.peers.dropped(fyne.NewPos(20, 300), []fyne.URI{storage.NewFileURI(file)})
	if len(f.candAsked) != 1 || len(f.launched) != 3 {
		t.Errorf("dropped outside the apps: asked %q, launched %q", f.candAsked, f.launched)
	}
	// A folder outside the apps, or something not a local file: nothing.
	u.peers.dropped(fyne.NewPos(20, 300), []fyne.URI{storage.NewFileURI(folder)})
	if len(f.launched) != 3 || !strings.Contains(u.peers.openNote.Text, "Drop a folder on an app") {
		t.Errorf("a folder dropped outside: launched %q, note %q", f.launched, u.peers.openNote.Text)
	}
	web, _ := storage.ParseURI("https://example.org/x.txt")
	u.peers.dropped(middle(gimp), []fyne.URI{web})
	if len(f.launched) != 3 || !strings.Contains(u.peers.openNote.Text, "not a local file") {
		t.Errorf("a URL dropped: launched %q, note %q", f.launched, u.peers.openNote.Text)
	}
}

// The host's popup says what the requester brings (names and count),
// and still that the app cannot see the host's files.
func TestPopupSaysWhatIsBrought(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"nothing", nil, ""},
		{"one file", []string{"notes.txt"}, "bob brings 1 file of their own into the app: notes.txt."},
		{"files and folders", []string{"notes.txt", "todo.md", "Pictures/ (read-only)"},
			"bob brings 2 files and 1 folder of their own into the app: notes.txt, todo.md and Pictures/ (read-only)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{time.Unix(1_800_000_000, 0)}
			u := newTestUI(t, newFake(), clock)
			u.showPrompt(dbusapi.Request{ID: "r", Peer: "SHA256:bob", PeerName: "bob", From: "192.168.1.21", App: "GIMP",
				Deadline: clock.t.Add(30 * time.Second).Unix(), Files: tc.files})
			text := joined(u.prompts["r"].win.Content())
			if !strings.Contains(text, "It cannot see your files.") {
				t.Errorf("the popup no longer says the app cannot see the host's files:\n%s", text)
			}
			if got := strings.Contains(text, "brings"); got != (tc.want != "") {
				t.Errorf("popup mentions brought files: %v, want %v:\n%s", got, tc.want != "", text)
			}
			if tc.want != "" && !strings.Contains(text, tc.want) {
				t.Errorf("popup does not say %q:\n%s", tc.want, text)
			}
		})
	}
}

// The sessions window lists what each session brought.
func TestSessionsListBroughtFiles(t *testing.T) {
	f := newFake()
	now := time.Unix(1_800_000_000, 0)
	f.sessions = []dbusapi.Session{
		{ID: "in", Direction: dbusapi.DirectionIncoming, Peer: "SHA256:bob", PeerName: "bob", App: "GIMP", Since: now.Unix(), Files: []string{"notes.txt"}},
		{ID: "out", Direction: dbusapi.DirectionOutgoing, Peer: "SHA256:alice", PeerName: "alice", App: "Inkscape", Since: now.Unix(),
			State: dbusapi.StageRunning, Files: []string{"a.svg", "Pictures/ (read-only)"}},
		{ID: "plain", Direction: dbusapi.DirectionOutgoing, Peer: "SHA256:alice", PeerName: "alice", App: "XTerm", Since: now.Unix()},
	}
	u := newTestUI(t, f, &fakeClock{now})
	u.ShowSessions()
	in, out := joined(u.sessions.incoming), joined(u.sessions.outgoing)
	if !strings.Contains(in, "With bob's files: notes.txt.") {
		t.Errorf("incoming: %q", in)
	}
	if !strings.Contains(out, "With your files: a.svg and Pictures/ (read-only).") {
		t.Errorf("outgoing: %q", out)
	}
	if strings.Count(out, "With your files") != 1 {
		t.Errorf("a session without files lists some: %q", out)
	}
}

// In the window process, opening files goes through the app: asked for
// by a second start (`ebrainpool open --gui`), the apps found through the
// app's backend, the launch recorded by the app with what it brings.
func TestOpenFilesInWindowProcess(t *testing.T) {
	file, _ := userFiles(t)
	f := newFake()
	alice := peer("alice", "alice-desk", dbusapi.TrustVerified)
	f.peers = []dbusapi.Peer{alice}
	f.candidates = []dbusapi.Candidate{{Peer: alice.Fingerprint, PeerName: "alice", App: "org.gimp.GIMP", AppName: "GIMP"}}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	app, children := newSplitUI(t, f, clock)
	app.OpenFiles([]string{file}, nil)
	if len(*children) != 1 {
		t.Fatalf("%d window processes, want 1", len(*children))
	}
	w := (*children)[0]
	w.step(t)
	if w.u.peers == nil || !w.u.shown[w.u.peers.win] {
		t.Fatal("no peer browser in the window process")
	}
	if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/org.gimp.GIMP"}) || !reflect.DeepEqual(f.brought["launch-1"].files, []string{file}) {
		t.Fatalf("launched %q bringing %+v", f.launched, f.brought)
	}
	l := app.launches.list()
	if len(l) != 1 || !reflect.DeepEqual(l[0].files, []string{"notes.txt"}) {
		t.Fatalf("the app's launch list: %+v", l)
	}
	if got := w.u.launches.list()[0].text(); !strings.Contains(got, "Bringing notes.txt.") {
		t.Errorf("the window process shows %q", got)
	}
	w.end()
}
