package e2e

import (
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The desktop app opens the user's files as a file manager's "Open with
// eBrainPool" asks it (`ebrainpool open --gui`, the entry's Exec): on real
// Xvfb displays, the host's popup is answered by a click, the peer's app
// (a %f app that records what it sees, then shows a window) gets the
// file and the folder, the requester's peer browser shows the launch with
// what it brings, and the sessions window lists it. Screenshots of the
// popup, the launch and the sessions go to docs/screenshots with
// EBP_SCREENSHOTS=1.
func TestDesktopAppOpensFilesWithPeersApp(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "sshfs", "xdotool", "xlogo", "xwininfo")
	host := newNode(t, true)
	host.startDisplay(t, "LIBGL_ALWAYS_SOFTWARE=1")
	req := newNode(t, false)
	req.startDisplay(t, "LIBGL_ALWAYS_SOFTWARE=1")

	// The host's app: records its argument and its home, then shows a
	// window.
	script := "/usr/local/bin/ebp-test-view"
	if err := os.WriteFile(script, []byte(`#!/bin/sh
for d in "$HOME"/*"'s Pictures"; do
	{ echo "arg: $(basename "$1")"; cat "$1"; echo "home: $(ls -A "$HOME" | tr '\n' ' ')"; echo "folder: $(ls -A "$d" | tr '\n' ' ')"; } > "$d/seen.txt"
done
exec xlogo
`), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(script) })
	dir := filepath.Join(host.u.Home, ".local/share/applications")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "ebp-view.desktop"),
		[]byte("[Desktop Entry]\nType=Application\nName=Viewer\nExec="+script+" %f\nMimeType=text/plain;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", host.u.Name+":", filepath.Join(host.u.Home, ".local")).Run()
	host.u.MustRun(t, "share", "ebp-view")

	notes := writeAs(t, req.u, "notes.txt", "my notes\n", 0o644)
	writeAs(t, req.u, "Pictures/cat.txt", "a cat\n", 0o644)
	pics := filepath.Join(req.u.Home, "Pictures")

	startOnLoopback(t, host, "gui", "-v")
	reqLog := startOnLoopback(t, req, "gui", "-v", "--peer", host.peerArg("bob"))
	waitVisible(t, req.x, "eBrainPool: peers", true, 20*time.Second)

	// As a file manager runs the desktop entry: no terminal, the
	// desktop app shows the rest.
	t0 := time.Now()
	if r := req.u.Run(t, "open", "--gui", "--folder", pics, notes); r.Code != 0 {
		t.Fatalf("open --gui: %s", r)
	}
	tOpen := time.Since(t0)
	waitVisible(t, host.x, "asks to run Viewer", true, 30*time.Second)
	tPopup := time.Since(t0)
	clickAllow(t, host.x, "asks to run Viewer", "xvfb-request-popup-files.png", func() string {
		b, _ := os.ReadFile(reqLog)
		return string(b)
	})
	tAllowed := time.Now()
	req.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	t.Logf("open --gui returned after %s, the host's popup up %s after it started, the app's window %s after the click on Allow",
		tOpen.Round(time.Millisecond), tPopup.Round(time.Millisecond), time.Since(tAllowed).Round(time.Millisecond))

	// The app saw the file (its argument) and the folder in its home,
	// nothing else of the requester's.
	b, err := os.ReadFile(filepath.Join(pics, "seen.txt"))
	if err != nil {
		t.Fatalf("the app did not write into the brought folder: %v", err)
	}
	seen := string(b)
	if !strings.Contains(seen, "arg: notes.txt\nmy notes\n") || !strings.Contains(seen, "'s Pictures") ||
		!strings.Contains(seen, "folder: cat.txt") || strings.Contains(seen, "secret") {
		t.Errorf("the app saw:\n%s", seen)
	}

	// The launch in the requester's peer browser, with what it brings
	// (the app's window moved off it: there is no window manager).
	if o, err := req.x.Command("xdotool", "search", "--name", "xlogo", "windowmove", "%@", "900", "500").CombinedOutput(); err != nil {
		t.Fatalf("moving xlogo's window: %v\n%s", err, o)
	}
	time.Sleep(time.Second) // the running state drawn
	win := firstWindow(t, req.x, "eBrainPool: peers")
	shot := windowShot(t, req.x, win, "xvfb-launch-files.png")
	checkNotBlank(t, shot, "the peer browser")

	// The sessions window lists what the session brought.
	if r := req.u.Run(t, "gui", "--show", "sessions"); r.Code != 0 {
		t.Fatalf("showing the sessions window: %s", r)
	}
	waitVisible(t, req.x, "eBrainPool: sessions", true, 10*time.Second)
	time.Sleep(time.Second)
	checkNotBlank(t, windowShot(t, req.x, firstWindow(t, req.x, "eBrainPool: sessions"), "xvfb-sessions-files.png"), "the sessions window")

	endOnlySession(t, req, "outgoing", "")
	waitNothingLeft(t, "after the session ended")
}

// firstWindow is the X id of the first viewable window named like name.
func firstWindow(t *testing.T, x *testenv.Xvfb, name string) string {
	t.Helper()
	o, err := x.Command("xdotool", "search", "--onlyvisible", "--name", name).Output()
	f := strings.Fields(string(o))
	if err != nil || len(f) == 0 {
		t.Fatalf("no window %q: %v; windows: %q", name, err, names(x))
	}
	return f[0]
}

// checkNotBlank fails when a screenshot has (almost) one colour.
func checkNotBlank(t *testing.T, img image.Image, what string) {
	t.Helper()
	b := img.Bounds()
	colours := map[color.RGBA]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 5 {
		for x := b.Min.X; x < b.Max.X; x += 5 {
			colours[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	if b.Dx() < 100 || b.Dy() < 100 || len(colours) < 5 {
		t.Errorf("%s looks blank: %v, %d colours", what, b, len(colours))
	}
}
