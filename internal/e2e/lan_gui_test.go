package e2e

import (
	"context"
	"image"
	"image/color"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// The desktop app on the simulated LAN: A and B run the desktop app, each on
// its own display, C the headless daemon. A's peer browser lists B and C as
// found through avahi; A launches B's xlogo from the peer browser, B's popup
// is answered by a synthetic click on Allow, and the window appears on A's
// display.
func TestDesktopAppOnTheLAN(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "xdotool", "xwd", "setpriv")
	A, B, C := newLANNodes(t, testbed.New(t, 3), "alice", "bob")
	A.startCmd(t, "gui", "-v", "--show", "peers")
	B.startCmd(t, "gui", "-v")
	C.start(t)

	took := A.waitPeers(t, 10*time.Second, map[string]string{B.fp: "", C.fp: ""})
	t.Logf("A's desktop app lists B and C %s after they started", took.Round(time.Millisecond))
	A.x.WaitWindow(t, "eBrainPool: peers", true, 10*time.Second)
	// Select the first peer (bob, sorted by name) to show its apps, then
	// keep a screenshot of the peer browser with the test bed's peers.
	o, err := A.x.Command("xdotool", "search", "--name", "eBrainPool: peers").Output()
	if err != nil || len(strings.Fields(string(o))) == 0 {
		t.Fatalf("peer browser window: %v %q", err, o)
	}
	win := strings.Fields(string(o))[0]
	// Click bob's row until its apps show: the Launch button is the only
	// primary-coloured (blue) control in the detail pane. The list's first
	// row is below the browser's header, whose height varies: a few
	// heights are tried in turn.
	var shot image.Image
	var launch image.Point
	for found, try, deadline := false, 0, time.Now().Add(20*time.Second); !found; try++ {
		if time.Now().After(deadline) {
			t.Fatal("no Launch button in the peer browser after selecting bob (see the screenshot with EBP_SCREENSHOTS=1)")
		}
		y := strconv.Itoa([]int{70, 100, 130, 160, 190}[try%5])
		if o, err := A.x.Command("xdotool", "mousemove", "--window", win, "120", y, "click", "1").CombinedOutput(); err != nil {
			t.Fatalf("selecting a peer: %v\n%s", err, o)
		}
		time.Sleep(time.Second) // B's apps fetched and drawn
		shot = windowShot(t, A.x, win, "peer-browser-lan.png")
		b := shot.Bounds()
		launch, found = findColor(shot, image.Rect(b.Min.X+300, b.Min.Y, b.Max.X, b.Max.Y-50), color.RGBA{41, 111, 246, 255})
	}
	click := A.x.Command("xdotool", "mousemove", "--window", win, strconv.Itoa(launch.X), strconv.Itoa(launch.Y), "click", "1")
	if o, err := click.CombinedOutput(); err != nil {
		t.Fatalf("clicking Launch: %v\n%s", err, o)
	}
	clickAllow(t, B.x, "asks to run X Logo", "xvfb-request-popup.png", func() string { return "A's log: " + A.logTail() })
	took = A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	t.Logf("window on A %s after the click on Allow on B", took.Round(time.Millisecond))
	B.x.WaitWindow(t, "asks to run X Logo", false, 10*time.Second)

	// B opens its sessions window by starting the app again: the running
	// app shows it (and the second start returns).
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if o, err := B.u.Command(ctx, "gui", "--show", "sessions").CombinedOutput(); err != nil {
		t.Fatalf("starting B's desktop app again: %v\n%s", err, o)
	}
	waitVisible(t, B.x, "eBrainPool: sessions", true, 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // CPU and memory filled in
	o, _ = B.x.Command("xdotool", "search", "--onlyvisible", "--name", "eBrainPool: sessions").Output()
	windowShot(t, B.x, strings.Fields(string(o))[0], "xvfb-sessions.png")

	// A ends it from its side: the window goes, the sandboxed app too.
	start, _ := B.u.SubIDs(t)
	endOnlySession(t, &A.node, "outgoing", "")
	waitGone(t, start+1000)
}

// findColor returns the centre of the pixels of colour c inside r.
func findColor(img image.Image, r image.Rectangle, c color.RGBA) (image.Point, bool) {
	box := image.Rectangle{}
	found := false
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if uint8(cr>>8) == c.R && uint8(cg>>8) == c.G && uint8(cb>>8) == c.B {
				p := image.Rect(x, y, x+1, y+1)
				if !found {
					box, found = p, true
				} else {
					box = box.Union(p)
				}
			}
		}
	}
	return image.Pt((box.Min.X+box.Max.X)/2, (box.Min.Y+box.Max.Y)/2), found
}
