package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
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

// With no eBrainPool running, open --gui starts the desktop app and asks
// it once it has exported its windows; an app that exits first is an
// error.
func TestOpenGUIStartsTheApp(t *testing.T) {
	bus := testenv.PrivateBus(t)
	conn := testenv.BusConn(t, bus.Addr, os.Getuid(), os.Getgid())
	app := testenv.BusConn(t, bus.Addr, os.Getuid(), os.Getgid())
	file := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(file, []byte("mine\n"), 0o600)

	t.Run("starts", func(t *testing.T) {
		w := &fakeWindows{}
		started := 0
		start := func() (<-chan error, error) {
			started++
			// As the app starts: its bus name first (the daemon),
			// its windows a moment later.
			go func() {
				app.RequestName("io.github.ebrainpool.EBrainPool1", dbus.NameFlagDoNotQueue)
				time.Sleep(300 * time.Millisecond)
				app.Export(w, "/io/github/ebrainpool/EBrainPool1/Windows", "io.github.ebrainpool.EBrainPool1.Windows")
			}()
			return make(chan error), nil
		}
		if err := askToOpen(t.Context(), conn, []string{file}, nil, start); err != nil {
			t.Fatal(err)
		}
		if started != 1 || !reflect.DeepEqual(w.opened, [][]string{{file}}) {
			t.Errorf("started %d, opened %q", started, w.opened)
		}
		// Running now: asked without a start.
		if err := askToOpen(t.Context(), conn, []string{file}, nil, start); err != nil || started != 1 || len(w.opened) != 2 {
			t.Errorf("again: err %v, started %d, opened %q", err, started, w.opened)
		}
		app.Export(nil, "/io/github/ebrainpool/EBrainPool1/Windows", "io.github.ebrainpool.EBrainPool1.Windows")
		app.ReleaseName("io.github.ebrainpool.EBrainPool1")
	})
	t.Run("exits", func(t *testing.T) {
		start := func() (<-chan error, error) {
			ch := make(chan error, 1)
			ch <- errors.New("exit status 1")
			return ch, nil
		}
		err := askToOpen(t.Context(), conn, []string{file}, nil, start)
		if err == nil || !strings.Contains(err.Error(), "the desktop app did not start: exit status 1") {
			t.Errorf("err %v", err)
		}
	})
}
