package ui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// One desktop app per user: the running app answers on the session bus
// (next to the daemon's API, on the same connection), so starting it again
// (from the applications menu, say) shows its window instead of failing on
// the taken bus name. Without a tray host that is also the way back to a
// closed window.
const (
	windowsPath  = dbus.ObjectPath("/io/github/ebrainpool/EBrainPool1/Windows")
	windowsIface = "io.github.ebrainpool.EBrainPool1.Windows"
)

// windowsObject is the exported object.
type windowsObject struct{ u *UI }

// Show opens a window: peers, sessions or settings.
func (o windowsObject) Show(name string) *dbus.Error {
	if !validWindow(name) {
		return dbus.MakeFailedError(fmt.Errorf("no window %q: use peers, sessions or settings", name))
	}
	o.u.do(func() { o.u.Show(name) })
	return nil
}

// Open opens the user's files with a peer's app, as "Open a file…" in the
// peer browser does (a file manager's "Open with eBrainPool", through
// `ebrainpool open --gui`): absolute paths of regular files, and folders
// the launch brings too.
func (o windowsObject) Open(files []string, folders []dbusapi.Folder) *dbus.Error {
	if err := checkOpen(files, folders); err != nil {
		return dbus.MakeFailedError(err)
	}
	o.u.do(func() { o.u.OpenFiles(files, folders) })
	return nil
}

// checkOpen checks what Open is given: some files, each an absolute path
// of a regular file, and folders, each an absolute path of a directory.
func checkOpen(files []string, folders []dbusapi.Folder) error {
	for _, d := range folders {
		if st, err := os.Stat(d.Path); !filepath.IsAbs(d.Path) || err != nil || !st.IsDir() {
			return fmt.Errorf("cannot bring %s: not the absolute path of a folder", d.Path)
		}
	}
	if len(files) == 0 {
		return errors.New("no files to open")
	}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("%s: not an absolute path", f)
		}
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("cannot open %s in a peer's app: %w", filepath.Base(f), err)
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a folder: bring it with \"With a folder…\" beside an app in the peer browser, or drop it on the app", filepath.Base(f))
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("cannot open %s in a peer's app: not a regular file", filepath.Base(f))
		}
	}
	return nil
}

func validWindow(name string) bool {
	switch name {
	case "peers", "sessions", "settings":
		return true
	}
	return false
}

// ExportWindows lets a second start of the desktop app show u's windows.
// conn must be the connection that owns dbusapi.BusName.
func ExportWindows(conn *dbus.Conn, u *UI) error {
	if err := conn.Export(windowsObject{u}, windowsPath, windowsIface); err != nil {
		return fmt.Errorf("exporting %s on the session bus: %w", windowsIface, err)
	}
	return nil
}

// ShowRunning asks the desktop app already running for this user to show
// window name. running is false when no eBrainPool runs; an eBrainPool
// running headless (`ebrainpool daemon`) is an error that names the fix.
func ShowRunning(conn *dbus.Conn, name string) (running bool, err error) {
	has, err := nameHasOwner(conn, dbusapi.BusName)
	if err != nil {
		return false, fmt.Errorf("asking the session bus whether eBrainPool runs: %w", err)
	}
	if !has {
		return false, nil
	}
	err = conn.Object(dbusapi.BusName, windowsPath).Call(windowsIface+".Show", 0, name).Err
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.UnknownObject" || de.Name == "org.freedesktop.DBus.Error.UnknownMethod" || de.Name == "org.freedesktop.DBus.Error.UnknownInterface") {
		return true, errors.New("eBrainPool already runs for this user without its desktop app (`ebrainpool daemon`): stop that one first")
	}
	if err != nil {
		return true, fmt.Errorf("asking the running eBrainPool to show its %s window: %w", name, err)
	}
	return true, nil
}

// ErrHeadless is OpenRunning's error when eBrainPool runs without its
// desktop app (`ebrainpool daemon`): nothing can show the choice.
var ErrHeadless = errors.New("eBrainPool runs without its desktop app (`ebrainpool daemon`): open the files from a terminal with `ebrainpool open`, or start the desktop app instead")

// OpenRunning asks the desktop app running for this user to open files
// with a peer's app (its peer browser shows the choice and the outcome).
// running is false when no eBrainPool runs.
func OpenRunning(conn *dbus.Conn, files []string, folders []dbusapi.Folder) (running bool, err error) {
	has, err := nameHasOwner(conn, dbusapi.BusName)
	if err != nil {
		return false, fmt.Errorf("asking the session bus whether eBrainPool runs: %w", err)
	}
	if !has {
		return false, nil
	}
	err = conn.Object(dbusapi.BusName, windowsPath).Call(windowsIface+".Open", 0, files, append([]dbusapi.Folder{}, folders...)).Err
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.UnknownObject" || de.Name == "org.freedesktop.DBus.Error.UnknownMethod" || de.Name == "org.freedesktop.DBus.Error.UnknownInterface") {
		return true, ErrHeadless
	}
	if errors.As(err, &de) && len(de.Body) > 0 {
		if msg, ok := de.Body[0].(string); ok {
			return true, errors.New(msg)
		}
	}
	if err != nil {
		return true, fmt.Errorf("asking the running eBrainPool to open the files: %w", err)
	}
	return true, nil
}

// NotifyError shows an error as a desktop notification, for a command run
// without a terminal (a file manager's "Open with").
func NotifyError(conn *dbus.Conn, summary string, err error) error {
	call := conn.Object(notifyName, notifyPath).Call(notifyIface+".Notify", 0,
		"eBrainPool", uint32(0), AppID, summary, sentence(err.Error()), []string{}, map[string]dbus.Variant{}, int32(-1))
	if call.Err != nil {
		return fmt.Errorf("showing a desktop notification: %w", call.Err)
	}
	return nil
}

// watcherName is the bus name a tray host owns.
const watcherName = "org.kde.StatusNotifierWatcher"

// TrayWait is how long TrayHostPresent waits for a tray host: at login
// the app can start before the panel that hosts the tray.
var TrayWait = 3 * time.Second

// TrayHostPresent reports whether the desktop shows StatusNotifierItems:
// a tray host owns org.kde.StatusNotifierWatcher, or comes to own it
// within TrayWait. The tray item registers with a host whenever one
// appears, also after this returned false (see newSystemTray).
func TrayHostPresent(conn *dbus.Conn) bool {
	return WaitForTrayHost(conn, TrayWait)
}

// WaitForTrayHost waits up to timeout for a tray host and reports whether
// one is there.
func WaitForTrayHost(conn *dbus.Conn, timeout time.Duration) bool {
	match := []dbus.MatchOption{
		dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, watcherName),
	}
	// Subscribed before asking, so a host appearing in between is seen.
	if err := conn.AddMatchSignal(match...); err != nil {
		has, err := nameHasOwner(conn, watcherName)
		return err == nil && has
	}
	defer conn.RemoveMatchSignal(match...)
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)
	if has, err := nameHasOwner(conn, watcherName); err == nil && has {
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case s := <-sigs:
			if s == nil || s.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(s.Body) != 3 {
				continue
			}
			if name, _ := s.Body[0].(string); name != watcherName {
				continue
			}
			if owner, _ := s.Body[2].(string); owner != "" {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

func nameHasOwner(conn *dbus.Conn, name string) (bool, error) {
	var has bool
	err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
	return has, err
}
