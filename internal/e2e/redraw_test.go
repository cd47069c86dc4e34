package e2e

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The peer browser redraws a launch's progress and its end at once, with
// the pointer away from it (it kept "waiting for consent… step 2 of 6"
// after a denial until the pointer moved): alice launches bob's X Logo from
// her tray with the peer browser open; its launch area shows the progress
// bar, and within a second of bob's denial the bar is gone and the
// refusal shows in red.
func TestPeerBrowserRedrawsAtOnce(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xfce4-panel", "xdotool", "xwininfo", "xwd", "xlogo")
	bob := newNode(t, true)
	shareApp(t, bob, "xlogo", "X Logo", "xlogo")
	startDaemon(t, bob)

	au := testenv.NewUser(t, binary, false)
	bus := testenv.SessionBus(t, au.UID, au.GID)
	x := testenv.StartXvfb(t, au.UID, au.GID)
	conn := testenv.BusConn(t, bus, au.UID, au.GID)
	alice := au.With("DBUS_SESSION_BUS_ADDRESS="+bus, "DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority, "NO_AT_BRIDGE=1")
	watcher, _ := startPanel(t, alice, conn)
	gui := start(t, alice.With("LIBGL_ALWAYS_SOFTWARE=1"), "desktop app", binary,
		"gui", "--no-discovery", "--listen", "127.0.0.1:"+freePort(t), "--peer", bob.peerArg("bob"))
	item := waitItem(t, conn, watcher, gui, false, 20*time.Second)
	props := map[string]dbus.Variant{}
	if err := item.Call("org.freedesktop.DBus.Properties.GetAll", 0, "org.kde.StatusNotifierItem").Store(&props); err != nil {
		t.Fatal(err)
	}
	menu := conn.Object(item.Destination(), props["Menu"].Value().(dbus.ObjectPath))
	root := waitPeerApp(t, menu, "bob", "X Logo")
	bobItem := peerLabel(root, "bob")

	click(t, menu, "Open peer browser")
	visibleAt(t, x, "eBrainPool: peers", 20*time.Second)
	win := strings.Fields(string(must(x.Command("xdotool", "search", "--onlyvisible", "--name", "eBrainPool: peers").Output())))[0]
	xdotool(t, x, "mousemove", "1000", "700") // away from the window, and kept there
	time.Sleep(time.Second)

	click(t, menu, bobItem, "X Logo")
	id := waitPending(t, bob)
	// The launch area (the bottom of the window's right pane) with its
	// progress bar.
	var before image.Image
	deadline := time.Now().Add(10 * time.Second)
	for {
		before = launchArea(t, x, win)
		if count(before, isBarBlue) > 200 {
			break
		}
		if time.Now().After(deadline) {
			saveShot(t, before, "redraw-before.png")
			t.Fatalf("no progress bar in the peer browser's launch area (%d bar pixels)", count(before, isBarBlue))
		}
		time.Sleep(100 * time.Millisecond)
	}
	bob.u.MustRun(t, "deny", id)
	t0 := time.Now()
	var after image.Image
	for {
		after = launchArea(t, x, win)
		if count(after, isBarBlue) < 20 && count(after, isRed) > 30 {
			break
		}
		if time.Since(t0) > time.Second {
			saveShot(t, after, "redraw-after.png")
			t.Fatalf("1 s after the denial the launch area still shows %d bar pixels and %d red ones", count(after, isBarBlue), count(after, isRed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the refusal drawn %s after the denial, pointer away", time.Since(t0).Round(time.Millisecond))
	if os.Getenv("EBP_SCREENSHOTS") == "1" {
		saveShot(t, after, "xvfb-peer-browser-denied.png")
	}
}

// launchArea is the bottom 110 pixels of the right 60% of the window.
func launchArea(t *testing.T, x *testenv.Xvfb, win string) image.Image {
	t.Helper()
	r := windowRect(t, x, win)
	img, err := x.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	return img.SubImage(image.Rect(r.Min.X+r.Dx()*2/5, r.Max.Y-110, r.Max.X, r.Max.Y))
}

func count(img image.Image, match func(r, g, b uint32) bool) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if match(r>>8, g>>8, bl>>8) {
				n++
			}
		}
	}
	return n
}

// isBarBlue is the progress bar's fill (Fyne's primary blue).
func isBarBlue(r, g, b uint32) bool { return b > 200 && r < 90 && g > 80 && g < 150 }

// isRed is text of danger importance.
func isRed(r, g, b uint32) bool { return r > 180 && g < 110 && b < 110 }

// saveShot keeps an image in the test's output directory for a failure.
func saveShot(t *testing.T, img image.Image, name string) {
	dir := os.TempDir() // kept for a look after a failure
	if os.Getenv("EBP_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	png.Encode(f, img)
	t.Logf("screenshot %s", f.Name())
}
