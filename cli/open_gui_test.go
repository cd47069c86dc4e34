package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// fakeWindows is the desktop app's Windows object (ui.ExportWindows).
type fakeWindows struct {
	mu      sync.Mutex
	opened  [][]string
	folders []dbusapi.Folder
}

func (w *fakeWindows) Open(files []string, folders []dbusapi.Folder) *dbus.Error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opened = append(w.opened, files)
	w.folders = append(w.folders, folders...)
	return nil
}

// fakeNotes is a desktop notification server.
type fakeNotes struct {
	mu    sync.Mutex
	shown []string // summary: body
}

func (n *fakeNotes) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shown = append(n.shown, summary+": "+body)
	return uint32(len(n.shown)), nil
}

// open --gui (the "Open with eBrainPool" desktop entry): the running
// desktop app gets the files; with only `ebrainpool daemon` running the
// error is also a desktop notification, as a file manager shows no
// terminal.
func TestOpenGUI(t *testing.T) {
	f := startFake(t)
	notes := &fakeNotes{}
	if err := f.conn.Export(notes, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(file, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, _, errs := run(t, "open", "--gui", file)
	if code == ExitOK || !strings.Contains(errs, "without its desktop app") {
		t.Fatalf("headless daemon: exit %d, stderr %q", code, errs)
	}
	if len(notes.shown) != 1 || !strings.Contains(notes.shown[0], "Could not open notes.txt with eBrainPool: ") ||
		!strings.Contains(notes.shown[0], "without its desktop app") {
		t.Errorf("notifications %q", notes.shown)
	}

	w := &fakeWindows{}
	if err := f.conn.Export(w, "/io/github/ebrainpool/EBrainPool1/Windows", "io.github.ebrainpool.EBrainPool1.Windows"); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(file))
	if code, _, errs := run(t, "open", "--gui", "notes.txt"); code != ExitOK {
		t.Fatalf("desktop app running: exit %d, stderr %q", code, errs)
	}
	if !reflect.DeepEqual(w.opened, [][]string{{file}}) {
		t.Errorf("the desktop app was asked to open %q, want [[%s]]", w.opened, file)
	}
	pics := filepath.Join(filepath.Dir(file), "Pictures")
	os.Mkdir(pics, 0o700)
	if code, _, errs := run(t, "open", "--gui", "--folder", "Pictures:ro", "notes.txt"); code != ExitOK {
		t.Fatalf("with a folder: exit %d, stderr %q", code, errs)
	}
	if !reflect.DeepEqual(w.folders, []dbusapi.Folder{{Path: pics, ReadOnly: true}}) {
		t.Errorf("folders %+v", w.folders)
	}
	if code, _, errs := run(t, "open", "--gui", "--peer", "bob", "notes.txt"); code != ExitUsage || !strings.Contains(errs, "--gui takes only files") {
		t.Errorf("--gui --peer: exit %d, stderr %q", code, errs)
	}
	if len(notes.shown) != 1 {
		t.Errorf("notifications after the successful open: %q", notes.shown)
	}
}
