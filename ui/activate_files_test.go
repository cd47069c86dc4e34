package ui

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// `ebrainpool open --gui` (a file manager's "Open with eBrainPool") asks
// the running desktop app over the session bus (a real dbus-daemon); the
// peer browser opens the files. Without a desktop app it says so.
func TestOpenRunning(t *testing.T) {
	file, folder := userFiles(t)
	srv, cli := privateBus(t)
	if running, err := OpenRunning(cli, []string{file}, nil); running || err != nil {
		t.Fatalf("no eBrainPool: running %v, err %v", running, err)
	}
	if _, err := srv.RequestName(dbusapi.BusName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	// The bus name without the desktop app's object: `ebrainpool daemon`.
	if running, err := OpenRunning(cli, []string{file}, nil); !running || !errors.Is(err, ErrHeadless) {
		t.Fatalf("headless eBrainPool: running %v, err %v", running, err)
	}

	f := newFake()
	alice := peer("alice", "alice-desk", dbusapi.TrustVerified)
	f.peers = []dbusapi.Peer{alice}
	f.candidates = []dbusapi.Candidate{{Peer: alice.Fingerprint, PeerName: "alice", App: "org.gimp.GIMP", AppName: "GIMP"}}
	u := newTestUI(t, f, nil)
	if err := ExportWindows(srv, u); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files []string
		err   string
	}{
		{"a folder", []string{folder}, "Pictures is a folder"},
		{"relative", []string{"notes.txt"}, "not an absolute path"},
		{"missing", []string{file + ".gone"}, "cannot open notes.txt.gone"},
		{"none", []string{}, "no files to open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running, err := OpenRunning(cli, tc.files, nil)
			if !running || err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("running %v, err %v, want %q", running, err, tc.err)
			}
		})
	}
	if len(f.launched) != 0 || u.peers != nil {
		t.Fatalf("refused opens launched %q or showed the peer browser", f.launched)
	}
	if running, err := OpenRunning(cli, []string{file}, nil); !running || err != nil {
		t.Fatalf("open in the desktop app: running %v, err %v", running, err)
	}
	if u.peers == nil || !u.shown[u.peers.win] {
		t.Fatal("the peer browser is not shown")
	}
	if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/org.gimp.GIMP"}) || !reflect.DeepEqual(f.brought["launch-1"].files, []string{file}) {
		t.Errorf("launched %q bringing %+v", f.launched, f.brought)
	}
	if got := u.peers.openNote.Text; got != "Opening notes.txt with GIMP of alice." {
		t.Errorf("note %q", got)
	}
	// With a folder too (open --gui --folder DIR:ro).
	if running, err := OpenRunning(cli, []string{file}, []dbusapi.Folder{{Path: folder, ReadOnly: true}}); !running || err != nil {
		t.Fatalf("open with a folder: running %v, err %v", running, err)
	}
	if b := f.brought["launch-2"]; !reflect.DeepEqual(b.folders, []dbusapi.Folder{{Path: folder, ReadOnly: true}}) {
		t.Errorf("the second launch brought %+v", b)
	}
	if got := u.peers.openNote.Text; got != "Opening notes.txt and Pictures/ (read-only) with GIMP of alice." {
		t.Errorf("note %q", got)
	}
	if running, err := OpenRunning(cli, []string{file}, []dbusapi.Folder{{Path: file}}); !running || err == nil {
		t.Errorf("a file given as a folder: running %v, err %v", running, err)
	}
}

// An error of open --gui is a desktop notification.
func TestNotifyError(t *testing.T) {
	srv, cli := privateBus(t)
	n := &fakeNotifications{}
	if err := srv.Export(n, notifyPath, notifyIface); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.RequestName(notifyName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	if err := NotifyError(cli, "Could not open notes.txt with eBrainPool", ErrHeadless); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n.shown, []string{"Could not open notes.txt with eBrainPool"}) {
		t.Errorf("shown %q", n.shown)
	}
}

// The request's desktop notification, whose Allow answers without the
// popup, also says what the requester brings.
func TestNotificationSaysWhatIsBrought(t *testing.T) {
	srv, cli := privateBus(t)
	n := &fakeNotifications{}
	if err := srv.Export(n, notifyPath, notifyIface); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.RequestName(notifyName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	notifier, err := NewNotifier(cli)
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range [][]string{nil, {"notes.txt", "Pictures/ (read-only)"}} {
		if _, err := notifier.Ask(dbusapi.Request{ID: "r", PeerName: "bob", App: "GIMP", From: "10.0.0.2", Files: files}, "bob", func(bool) {}); err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.bodies) != 2 || strings.Contains(n.bodies[0], "brings") ||
		!strings.Contains(n.bodies[1], "bob brings 1 file and 1 folder of their own into the app: notes.txt and Pictures/ (read-only).") {
		t.Errorf("notification bodies %q", n.bodies)
	}
}
