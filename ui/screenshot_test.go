package ui

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// lightTheme is Fyne's default theme in its light variant, for screenshots
// that look like the app rather than the test theme.
type lightTheme struct{ fyne.Theme }

func (l lightTheme) Color(n fyne.ThemeColorName, _ fyne.ThemeVariant) color.Color {
	return l.Theme.Color(n, theme.VariantLight)
}

// dotIcon is a PNG app icon: a coloured disc.
func dotIcon(t *testing.T, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 48, 48))
	for y := range 48 {
		for x := range 48 {
			if dx, dy := x-24, y-24; dx*dx+dy*dy <= 22*22 {
				img.Set(x, y, c)
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// shoot captures a window at a size, checks it is not blank, and writes it
// to docs/screenshots when EBP_SCREENSHOTS=1.
func shoot(t *testing.T, w fyne.Window, size fyne.Size, name string) {
	t.Helper()
	w.Resize(size)
	img := w.Canvas().Capture()
	b := img.Bounds()
	if b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("%s: captured %v", name, b)
	}
	colours := map[color.RGBA]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			colours[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	if len(colours) < 5 {
		t.Errorf("%s looks blank (%d colours)", name, len(colours))
	}
	if os.Getenv("EBP_SCREENSHOTS") != "1" {
		t.Logf("%s rendered; set EBP_SCREENSHOTS=1 to write docs/screenshots/%s.png", name, name)
		return
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func screenshotUI(t *testing.T) (*UI, *fakeBackend, *fakeClock) {
	f := newFake()
	alice := peer("alice", "alice-desk", "verified")
	f.peers = []dbusapi.Peer{alice, peer("bob", "lab-2", "new"), peer("eve", "eve-pc", "changed"), peer("Carol", "carol-laptop", "verified")}
	f.apps[alice.Fingerprint] = []dbusapi.App{
		{ID: "org.gimp.GIMP", Name: "GIMP", Comment: "Create images and edit photographs", Icon: dotIcon(t, color.RGBA{0x6e, 0x5a, 0x4a, 0xff})},
		{ID: "org.inkscape.Inkscape", Name: "Inkscape", Comment: "Vector graphics editor", Icon: dotIcon(t, color.RGBA{0x22, 0x22, 0x22, 0xff})},
		{ID: "libreoffice-calc", Name: "LibreOffice Calc", Comment: "Spreadsheets", Icon: dotIcon(t, color.RGBA{0x18, 0xa3, 0x03, 0xff})},
		{ID: "xterm", Name: "XTerm", Comment: "Terminal emulator"},
	}
	clock := &fakeClock{time.Date(2026, 11, 23, 10, 30, 0, 0, time.Local)}
	u := newTestUI(t, f, clock)
	u.app.Settings().SetTheme(lightTheme{theme.DefaultTheme()})
	return u, f, clock
}

func TestScreenshots(t *testing.T) {
	t.Run("peers", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		u.ShowPeers()
		u.peers.selectPeer("SHA256:alice")
		u.peers.sortAndFilter()
		test.Tap(u.peers.launchButton("Inkscape"))
		f.events <- daemon.Event{Kind: daemon.EventLaunchProgress, Launch: "launch-1", Stage: "starting sandbox"}
		f.launchErr = nil
		test.Tap(u.peers.launchButton("GIMP"))
		f.events <- daemon.Event{Kind: daemon.EventLaunchFinished, Launch: "launch-2", Exit: -1, Err: "alice: denied"}
		f.drain(u)
		shoot(t, u.peers.win, fyne.NewSize(820, 520), "peer-browser")
	})
	t.Run("peers-with-a-folder", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		u.ShowPeers()
		u.peers.selectPeer("SHA256:alice")
		u.peers.sortAndFilter()
		u.peers.chooseFolder = func(_ fyne.Window, done func(string)) { done("/home/me/Pictures") }
		test.Tap(u.peers.rowButton("GIMP", "With a folder…"))
		test.Tap(u.peers.folder.readOnly)
		f.drain(u)
		shoot(t, u.peers.win, fyne.NewSize(820, 520), "peer-browser-folder")
	})
	t.Run("peers-display-trust", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		u.opts.IsolatedDisplay = func() error { return nil }
		f.settings = f.settings.WithIsolated("SHA256:alice", "org.inkscape.Inkscape", true)
		u.ShowPeers()
		u.peers.selectPeer("SHA256:alice")
		u.peers.sortAndFilter()
		test.Tap(u.peers.rows[0].display.buttons[dbusapi.DisplayTrusted])
		shoot(t, u.peers.win, fyne.NewSize(820, 560), "peer-browser-display-trust")
	})
	t.Run("settings-display-modes", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		const alice, bob = "SHA256:WeXpogacdCqvmaxuNZFUpT1Te6ZU/j7aPAocB0T2i8o", "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"
		met := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
		f.pins = []identity.Pin{{Fingerprint: alice, Name: "alice", FirstSeen: met}, {Fingerprint: bob, Name: "bob", FirstSeen: met}}
		f.settings = f.settings.WithTrusted(alice, "GIMP", true).WithIsolated(bob, "XTerm", true)
		u.ShowSettings()
		tabs := first(u.settings.win.Content(), func(*container.AppTabs) bool { return true })
		tabs.SelectIndex(len(tabs.Items) - 1)
		shoot(t, u.settings.win, fyne.NewSize(640, 560), "settings-display-modes")
	})
	t.Run("peers-key-changed", func(t *testing.T) {
		u, _, _ := screenshotUI(t)
		u.ShowPeers()
		u.peers.selectPeer("SHA256:eve")
		u.peers.sortAndFilter()
		shoot(t, u.peers.win, fyne.NewSize(820, 520), "peer-browser-key-changed")
	})
	t.Run("popup", func(t *testing.T) {
		u, _, clock := screenshotUI(t)
		u.showPrompt(dbusapi.Request{ID: "r", Peer: "SHA256:bob", PeerName: "bob", From: "192.168.1.21",
			App: "GIMP", FirstTime: true, Deadline: clock.t.Add(30 * time.Second).Unix()})
		clock.t = clock.t.Add(8 * time.Second)
		p := u.prompts["r"]
		p.tick()
		shoot(t, p.win, fyne.NewSize(480, p.win.Content().MinSize().Height+8), "request-popup")
	})
	t.Run("sessions", func(t *testing.T) {
		u, f, clock := screenshotUI(t)
		now := clock.t
		f.sessions = []dbusapi.Session{
			{ID: "s1", Direction: "incoming", Peer: "SHA256:bob", PeerName: "bob", App: "GIMP", Since: now.Add(-12 * time.Minute).Unix()},
			{ID: "s2", Direction: "incoming", Peer: "SHA256:Carol", PeerName: "Carol", App: "XTerm", Since: now.Add(-2 * time.Minute).Unix()},
			{ID: "s3", Direction: "outgoing", Peer: "SHA256:alice", PeerName: "alice", App: "Inkscape", Since: now.Add(-75 * time.Minute).Unix(), State: "running"},
		}
		f.usage = []daemon.SandboxUsage{{Peer: "SHA256:bob", Pids: 7, Memory: 182 << 20}, {Peer: "SHA256:Carol", Pids: 2, Memory: 24 << 20}}
		u.ShowSessions()
		shoot(t, u.sessions.win, fyne.NewSize(640, 360), "sessions")
	})
	t.Run("settings", func(t *testing.T) {
		u, f, _ := screenshotUI(t)
		f.local = []catalog.App{{ID: "org.gimp.GIMP", Name: "GIMP"}, {ID: "xterm", Name: "XTerm"}}
		f.pins = []identity.Pin{{Fingerprint: "SHA256:bob", Name: "bob", FirstSeen: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}}
		f.settings.MemoryMB, f.settings.CPUs = 1024, 1
		u.ShowSettings()
		shoot(t, u.settings.win, fyne.NewSize(560, 480), "settings")
	})
}
