package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// panelConfig is xfce4-panel's xfconf channel: one panel along the top of
// the screen holding only the status tray plugin ("systray", which since
// xfce4-panel 4.16 is also the StatusNotifierWatcher and host).
const panelConfig = `<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
`

// panelHeight bounds the strip of the screen the panel occupies.
const panelHeight = 40

// The desktop app in a real tray host: xfce4-panel on Xvfb with its own
// session bus. The app's StatusNotifierItem is registered with the panel's
// watcher and drawn in the panel; its menu is read over
// com.canonical.dbusmenu as the panel reads it and its items are activated
// as the panel activates them.
func TestTrayInXfcePanel(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xfce4-panel", "xdotool", "xwd", "xwininfo")
	t0 := time.Now()

	// bob: a headless peer sharing X Logo.
	bob := newNode(t, true)
	shareApp(t, bob, "xlogo", "X Logo", "xlogo")
	startDaemon(t, bob)

	// alice: the desktop user, with a display, a session bus and a panel.
	au := testenv.NewUser(t, binary, true)
	t.Cleanup(func() { noProcessesLeft(t, au) }) // runs after everything below is stopped
	bus := testenv.SessionBus(t, au.UID, au.GID)
	x := testenv.StartXvfb(t, au.UID, au.GID)
	conn := testenv.BusConn(t, bus, au.UID, au.GID)
	// NO_AT_BRIDGE: GTK would start the accessibility bus and registry,
	// which nobody here stops.
	alice := au.With("DBUS_SESSION_BUS_ADDRESS="+bus, "DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority, "NO_AT_BRIDGE=1")

	watcher, panel := startPanel(t, alice, conn)

	// The desktop app, knowing bob.
	port := freePort(t)
	tGUI := time.Now()
	gui := start(t, alice.With("LIBGL_ALWAYS_SOFTWARE=1"), "desktop app", binary,
		"gui", "--no-discovery", "--listen", "127.0.0.1:"+port, "--peer", bob.peerArg("bob"))

	// Registered with the panel's watcher, by the app's own connection.
	item := waitItem(t, conn, watcher, gui, false, 20*time.Second)
	t.Logf("item %s%s registered %s after the app started", item.Destination(), item.Path(), time.Since(tGUI).Round(time.Millisecond))
	props := map[string]dbus.Variant{}
	if err := item.Call("org.freedesktop.DBus.Properties.GetAll", 0, "org.kde.StatusNotifierItem").Store(&props); err != nil {
		t.Fatalf("StatusNotifierItem properties: %v", err)
	}
	menuPath, ok := props["Menu"].Value().(dbus.ObjectPath)
	if !ok || !menuPath.IsValid() {
		t.Fatalf("StatusNotifierItem Menu = %v", props["Menu"])
	}
	if s := props["Status"].Value(); s != "Active" {
		t.Errorf("StatusNotifierItem Status = %v, want Active", s)
	}
	t.Logf("StatusNotifierItem: Id %v, Title %v, Menu %s", props["Id"], props["Title"], menuPath)
	menu := conn.Object(item.Destination(), menuPath)
	icons := loadTrayIcons(t)
	waitIcon(t, item, icons, "sharing")

	// The menu as the panel reads it, once bob's apps are in.
	root := waitPeerApp(t, menu, "bob", "X Logo")
	bobItem := peerLabel(root, "bob")
	want := []string{bobItem, "---", "Open peer browser", "Sessions", "[x] Share my apps", "Settings", "---", "Quit"}
	if got := root.Labels(); !reflect.DeepEqual(got, want) {
		t.Errorf("tray menu = %q\nwant %q", got, want)
	}
	sub, _ := root.Find(bobItem)
	if got, want := sub.Labels(), []string{"X Logo", "---", "Show in peer browser"}; !reflect.DeepEqual(got, want) {
		t.Errorf("bob's submenu = %q, want %q", got, want)
	}
	t.Logf("tray menu read over com.canonical.dbusmenu: %q, bob: %q", root.Labels(), sub.Labels())

	// The icon in the panel, and the panel's own menu from a real click.
	box := iconInPanel(t, x, icons["sharing"].main)
	shootTray(t, x, box)

	// Activating items as the panel does: com.canonical.dbusmenu.Event.
	t.Run("sharing toggle", func(t *testing.T) {
		for _, tc := range []struct {
			label, after, icon string
		}{
			{"[x] Share my apps", "[ ] Share my apps", "off"},
			{"[ ] Share my apps", "[x] Share my apps", "sharing"},
		} {
			t0 := time.Now()
			click(t, menu, tc.label)
			waitIcon(t, item, icons, tc.icon)
			waitLabel(t, menu, tc.after)
			iconInPanel(t, x, icons[tc.icon].main)
			t.Logf("%q: icon %s, in the panel and the menu %s after the click", tc.label, tc.icon, time.Since(t0).Round(time.Millisecond))
		}
	})
	t.Run("launch from a peer's submenu", func(t *testing.T) {
		t0 := time.Now()
		click(t, menu, bobItem, "X Logo")
		id := waitPending(t, bob)
		if r := bob.u.MustRun(t, "pending"); !strings.Contains(r.Stdout, "X Logo") && !strings.Contains(r.Stdout, "xlogo") {
			t.Errorf("bob's pending request is not for X Logo:\n%s", r.Stdout)
		}
		t.Logf("request pending on bob %s after the click", time.Since(t0).Round(time.Millisecond))
		waitIcon(t, item, icons, "active")
		bob.u.MustRun(t, "deny", id)
		waitIcon(t, item, icons, "sharing")
	})
	t.Run("windows", func(t *testing.T) {
		for _, tc := range []struct{ label, window string }{
			{"Open peer browser", "eBrainPool: peers"},
			{"Sessions", "eBrainPool: sessions"},
			{"Settings", "eBrainPool: settings"},
		} {
			t.Run(tc.label, func(t *testing.T) {
				click(t, menu, tc.label)
				took := x.WaitWindow(t, tc.window, true, 20*time.Second)
				t.Logf("window %q %s after the click", tc.window, took.Round(time.Millisecond))
			})
		}
	})
	t.Run("quit", func(t *testing.T) {
		t0 := time.Now()
		click(t, menu, "Quit")
		select {
		case <-gui.exited:
		case <-time.After(20 * time.Second):
			t.Fatal("the desktop app is still running 20 s after Quit")
		}
		if code := gui.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("the desktop app exited with %d after Quit", code)
		}
		t.Logf("exited %s after Quit", time.Since(t0).Round(time.Millisecond))
		deadline := time.Now().Add(10 * time.Second)
		for len(registered(t, watcher)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the watcher still lists %q after the app quit", registered(t, watcher))
			}
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case <-panel.exited:
			t.Error("xfce4-panel exited")
		default:
		}
	})
	t.Logf("whole test %s", time.Since(t0).Round(time.Millisecond))
}

// startPanel starts xfce4-panel (with its xfconfd) as the user, on the
// display and session bus of its environment, and returns its
// StatusNotifierWatcher once a host is registered.
func startPanel(t *testing.T, u *testenv.User, conn *dbus.Conn) (watcher dbus.BusObject, panel *proc) {
	t.Helper()
	testenv.RequireTools(t, "xfce4-panel")
	xfconfd := findXfconfd(t)
	// The panel reads its layout from xfconf. xfconfd is started here
	// rather than activated by the bus, which would start it with the
	// bus's own environment (and so another XDG_CONFIG_HOME).
	cfg := filepath.Join(u.Home, "panel-config")
	channel := filepath.Join(cfg, "xfce4", "xfconf", "xfce-perchannel-xml")
	if err := os.MkdirAll(channel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(channel, "xfce4-panel.xml"), []byte(panelConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", u.Name+":", cfg).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	xfce := u.With("XDG_CONFIG_HOME=" + cfg)
	start(t, xfce, "xfconfd", xfconfd)
	testenv.WaitBusName(t, conn, "org.xfce.Xfconf", 10*time.Second)
	// Without a window manager the panel would wait 5 s for one.
	panel = start(t, xfce, "xfce4-panel", "xfce4-panel", "--disable-wm-check")
	took := testenv.WaitBusName(t, conn, "org.kde.StatusNotifierWatcher", 20*time.Second)
	t.Logf("xfce4-panel's StatusNotifierWatcher up %s after the panel started", took.Round(time.Millisecond))
	watcher = conn.Object("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher")
	if v, err := watcher.GetProperty("org.kde.StatusNotifierWatcher.IsStatusNotifierHostRegistered"); err != nil || v.Value() != true {
		t.Fatalf("the panel registered no StatusNotifierHost: %v %v", v, err)
	}
	return watcher, panel
}

// findXfconfd locates the xfconf daemon (an architecture-specific path).
func findXfconfd(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/*/xfce4/xfconf/xfconfd")
	if len(m) == 0 {
		testenv.Skip(t, "xfconfd is not installed (make test installs xfconf)")
	}
	return m[0]
}

// proc is a process the test started and stops at cleanup.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string // its output
}

// start runs a program as the user until the test ends, its output in a
// log shown if the test fails.
func start(t *testing.T, u *testenv.User, what, name string, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), strings.ReplaceAll(what, " ", "-")+".log"))
	if err != nil {
		t.Fatal(err)
	}
	// Stopped by the cleanup below, in the reverse order of starting.
	cmd := u.Exec(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", what, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: logf.Name()}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not stop on SIGTERM", what, cmd.Process.Pid)
				cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", what, b)
		}
		logf.Close()
	})
	return p
}

// noProcessesLeft fails the test if anything still runs as the user once
// everything the test started is stopped. The panel's plugin process exits
// after the panel: that may take a moment.
func noProcessesLeft(t *testing.T, u *testenv.User) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		zombies := 0
		for _, pid := range testenv.PidsOfUIDs(u.UID, u.UID) {
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if bytes.Contains(status, []byte("\nState:\tZ")) {
				zombies++
				continue
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			left = append(left, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
		if len(left) == 0 {
			if zombies > 0 {
				// Exited; only their parent (init here) has not collected
				// their status.
				t.Logf("%d exited processes of %s not yet reaped by init", zombies, u.Name)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left running as %s: %q", u.Name, left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// registered is the watcher's RegisteredStatusNotifierItems.
func registered(t *testing.T, watcher dbus.BusObject) []string {
	t.Helper()
	v, err := watcher.GetProperty("org.kde.StatusNotifierWatcher.RegisteredStatusNotifierItems")
	if err != nil {
		t.Fatalf("RegisteredStatusNotifierItems: %v", err)
	}
	items, _ := v.Value().([]string)
	return items
}

// waitItem waits until the watcher lists an item owned by the process and
// returns it. Entries are "BUS-NAME" or "BUS-NAME/OBJECT/PATH" (an item
// that registered its path only). A Flatpak's connection belongs to its
// bus proxy, not to the app: with inFlatpak any item is taken.
func waitItem(t *testing.T, conn *dbus.Conn, watcher dbus.BusObject, p *proc, inFlatpak bool, timeout time.Duration) dbus.BusObject {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range registered(t, watcher) {
			name, path := e, "/StatusNotifierItem"
			if i := strings.Index(e, "/"); i >= 0 {
				name, path = e[:i], e[i:]
			}
			var pid uint32
			if inFlatpak || conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, name).Store(&pid) == nil && int(pid) == p.cmd.Process.Pid {
				return conn.Object(name, dbus.ObjectPath(path))
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the desktop app exited (%v) before its tray icon was registered", p.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no StatusNotifierItem of pid %d registered after %s; the watcher lists %q", p.cmd.Process.Pid, timeout, registered(t, watcher))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// peerLabel is the label of a peer's item: its name and host.
func peerLabel(root testenv.MenuItem, name string) string {
	for _, c := range root.Children {
		if c.Label == name || strings.HasPrefix(c.Label, name+" (") {
			return c.Label
		}
	}
	return name
}

// waitPeerApp waits until the tray menu lists the peer with app first in
// its submenu, and returns the menu.
func waitPeerApp(t *testing.T, menu dbus.BusObject, peer, app string) testenv.MenuItem {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		root := testenv.ReadMenu(t, menu)
		if sub, ok := root.Find(peerLabel(root, peer)); ok && len(sub.Children) > 0 && sub.Children[0].Label == app {
			return root
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's apps never reached the tray menu: %q", peer, root.Labels())
		}
	}
}

// freePort is a loopback TCP port free a moment ago, for a --listen.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// click activates an item as a tray host does, by the id it has just read
// (the menu is rebuilt, with new ids, when its shape changes).
func click(t *testing.T, menu dbus.BusObject, path ...string) {
	t.Helper()
	root := testenv.ReadMenu(t, menu)
	it, ok := root.Find(path...)
	if !ok {
		t.Fatalf("no item %q in the tray menu %q", path, root.Labels())
	}
	if !it.Enabled {
		t.Fatalf("menu item %q is disabled", path)
	}
	call := menu.Call("com.canonical.dbusmenu.Event", 0, it.ID, "clicked", dbus.MakeVariant(int32(0)), uint32(time.Now().Unix()))
	if call.Err != nil {
		t.Fatalf("com.canonical.dbusmenu.Event(%d %q, clicked): %v", it.ID, path, call.Err)
	}
}

// waitLabel waits until the top level of the menu has an item labelled so.
func waitLabel(t *testing.T, menu dbus.BusObject, label string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		root := testenv.ReadMenu(t, menu)
		if _, ok := root.Find(label); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the tray menu %q", label, root.Labels())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// trayIcon is one of assets/tray/*.png and its main colour.
type trayIcon struct {
	img  *image.NRGBA
	main color.NRGBA // the most common opaque colour but white
}

func loadTrayIcons(t *testing.T) map[string]trayIcon {
	t.Helper()
	icons := map[string]trayIcon{}
	for _, state := range []string{"off", "sharing", "active"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "assets", "tray", state+".png"))
		if err != nil {
			t.Fatal(err)
		}
		src, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("assets/tray/%s.png: %v", state, err)
		}
		img := image.NewNRGBA(src.Bounds())
		counts := map[color.NRGBA]int{}
		for y := src.Bounds().Min.Y; y < src.Bounds().Max.Y; y++ {
			for x := src.Bounds().Min.X; x < src.Bounds().Max.X; x++ {
				c := color.NRGBAModel.Convert(src.At(x, y)).(color.NRGBA)
				img.SetNRGBA(x, y, c)
				if c.A == 0xff && c != (color.NRGBA{0xff, 0xff, 0xff, 0xff}) {
					counts[c]++
				}
			}
		}
		ti := trayIcon{img: img}
		for c, n := range counts {
			if n > counts[ti.main] {
				ti.main = c
			}
		}
		icons[state] = ti
	}
	return icons
}

// iconState names the tray icon the item's IconPixmap (ARGB32, straight
// alpha, network byte order) shows pixel for pixel, antialiased edges
// included; "" if none.
func iconState(t *testing.T, item dbus.BusObject, icons map[string]trayIcon) string {
	t.Helper()
	v, err := item.GetProperty("org.kde.StatusNotifierItem.IconPixmap")
	if err != nil {
		t.Fatalf("IconPixmap: %v", err)
	}
	var pixmaps []struct {
		W, H int32
		Pix  []byte
	}
	if err := v.Store(&pixmaps); err != nil {
		t.Fatalf("IconPixmap %s: %v", v.Signature(), err)
	}
	for _, pm := range pixmaps {
	icon:
		for state, ic := range icons {
			b := ic.img.Bounds()
			if int(pm.W) != b.Dx() || int(pm.H) != b.Dy() || len(pm.Pix) != 4*b.Dx()*b.Dy() {
				continue
			}
			for y := range b.Dy() {
				for x := range b.Dx() {
					c := ic.img.NRGBAAt(b.Min.X+x, b.Min.Y+y)
					p := pm.Pix[4*(y*b.Dx()+x):]
					if p[0] != c.A || (c.A != 0 && (p[1] != c.R || p[2] != c.G || p[3] != c.B)) {
						continue icon
					}
				}
			}
			return state
		}
	}
	return ""
}

func waitIcon(t *testing.T, item dbus.BusObject, icons map[string]trayIcon, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := iconState(t, item, icons)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tray icon shows %q, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// iconInPanel waits until the panel strip shows the icon (enough pixels of
// its main colour) and returns where.
func iconInPanel(t *testing.T, x *testenv.Xvfb, main color.NRGBA) image.Rectangle {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		img, err := x.Screenshot()
		if err != nil {
			t.Fatal(err)
		}
		box, n := image.Rectangle{}, 0
		for y := 0; y < panelHeight && y < img.Bounds().Dy(); y++ {
			for px := range img.Bounds().Dx() {
				c := img.RGBAAt(px, y)
				if near(c.R, main.R) && near(c.G, main.G) && near(c.B, main.B) {
					box = box.Union(image.Rect(px, y, px+1, y+1))
					n++
				}
			}
		}
		// A 64-pixel icon scaled into a 32-pixel panel: at least a ring of
		// colour, and nothing bigger than the panel.
		if n >= 40 && box.Dx() <= panelHeight && box.Dy() <= panelHeight {
			return box
		}
		if time.Now().After(deadline) {
			t.Fatalf("the panel does not show the icon (colour %v): %d pixels in %v", main, n, box)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func near(a, b uint8) bool { d := int(a) - int(b); return d > -24 && d < 24 }

// shootTray clicks the icon in the panel, which opens the menu the panel
// built from com.canonical.dbusmenu, hovers the first item (the peer) to
// open its submenu, checks both are drawn, writes the screenshot to
// docs/screenshots/tray.png when EBP_SCREENSHOTS=1, and closes the menu.
func shootTray(t *testing.T, x *testenv.Xvfb, icon image.Rectangle) {
	t.Helper()
	c := icon.Min.Add(icon.Max).Div(2)
	// The menu opens below the icon, over the black root window. The panel
	// pops it up only once its dbusmenu client has built the items from
	// the last LayoutUpdated (bob's apps arrived just before); a click
	// before that opens nothing, as a user would see it: then click again.
	// Each attempt starts from a known state: Escape closes a menu that
	// opened too late to be seen, and the pointer enters the icon anew.
	below := image.Rect(icon.Min.X, panelHeight+20, icon.Min.X+120, panelHeight+120)
	opened := func(img *image.RGBA) bool { return lit(img, below) > below.Dx()*below.Dy()/2 }
	const attempts = 5
	var img *image.RGBA
	for attempt := 1; img == nil; attempt++ {
		if attempt > 1 {
			xdotool(t, x, "key", "Escape")
		}
		xdotool(t, x, "mousemove", strconv.Itoa(c.X), strconv.Itoa(panelHeight+200), "sleep", "0.1",
			"mousemove", strconv.Itoa(c.X), strconv.Itoa(c.Y), "sleep", "0.2", "click", "1")
		img = tryScreen(t, x, 4*time.Second, opened)
		switch {
		case img != nil && attempt > 1:
			t.Logf("the panel's menu opened on click %d on the icon", attempt)
		case img == nil && attempt == attempts:
			last, err := x.Screenshot()
			if err != nil {
				t.Fatal(err)
			}
			t.Fatalf("the panel's menu did not open below the tray icon %v on %d clicks; drawn below the panel: %v",
				icon, attempts, drawnBelow(last, panelHeight))
		}
	}
	// The panel ends at the first black row (far right, away from the
	// menu); the menu's first item is just below, and the menu ends at the
	// first black pixel to its right.
	bottom := 0
	for bottom < panelHeight && lit(img, image.Rect(img.Bounds().Dx()-2, bottom, img.Bounds().Dx()-1, bottom+1)) > 0 {
		bottom++
	}
	hover := image.Pt(icon.Min.X+60, bottom+14)
	edge := hover.X
	for edge < img.Bounds().Dx() && lit(img, image.Rect(edge, hover.Y, edge+1, hover.Y+1)) > 0 {
		edge++
	}
	xdotool(t, x, "mousemove", strconv.Itoa(hover.X), strconv.Itoa(hover.Y))
	right := image.Rect(edge+10, hover.Y-5, edge+110, hover.Y+25)
	waitScreen(t, x, "the peer's submenu right of the menu", func(img *image.RGBA) bool {
		return lit(img, right) > right.Dx()*right.Dy()/2
	})
	time.Sleep(300 * time.Millisecond) // fully drawn
	img, err := x.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("EBP_SCREENSHOTS") == "1" {
		// The menus and the panel around them.
		drawn := drawnBelow(img, bottom)
		crop := image.Rect(0, 0, drawn.Max.X+40, drawn.Max.Y+20).Intersect(img.Bounds())
		var buf bytes.Buffer
		if err := png.Encode(&buf, img.SubImage(crop)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "screenshots", "tray.png"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/screenshots/tray.png")
	} else {
		t.Logf("tray menu drawn by xfce4-panel; set EBP_SCREENSHOTS=1 to write docs/screenshots/tray.png")
	}
	// Escape closes the submenu, then the menu.
	for range 3 {
		xdotool(t, x, "key", "Escape")
		time.Sleep(200 * time.Millisecond)
		if img, err = x.Screenshot(); err == nil && lit(img, below) == 0 {
			return
		}
	}
	t.Fatal("the tray menu did not close on Escape")
}

func xdotool(t *testing.T, x *testenv.Xvfb, args ...string) {
	t.Helper()
	if out, err := x.Command("xdotool", args...).CombinedOutput(); err != nil {
		t.Fatalf("xdotool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitScreen waits until the display shows what ok looks for.
func waitScreen(t *testing.T, x *testenv.Xvfb, what string, ok func(*image.RGBA) bool) *image.RGBA {
	t.Helper()
	img := tryScreen(t, x, 10*time.Second, ok)
	if img == nil {
		t.Fatalf("%s did not appear on the display", what)
	}
	return img
}

// tryScreen is waitScreen returning nil after the timeout.
func tryScreen(t *testing.T, x *testenv.Xvfb, timeout time.Duration, ok func(*image.RGBA) bool) *image.RGBA {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		img, err := x.Screenshot()
		if err != nil {
			t.Fatal(err)
		}
		if ok(img) {
			return img
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drawnBelow is the bounding box of what is drawn on the screen below the
// panel (the root window is black), for failure messages.
func drawnBelow(img *image.RGBA, top int) image.Rectangle {
	drawn := image.Rectangle{}
	for y := top; y < img.Bounds().Dy(); y++ {
		for x := range img.Bounds().Dx() {
			if c := img.RGBAAt(x, y); c.R|c.G|c.B != 0 {
				drawn = drawn.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return drawn
}

// lit counts the pixels in r that are not black.
func lit(img *image.RGBA, r image.Rectangle) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c := img.RGBAAt(x, y); c.R|c.G|c.B != 0 {
				n++
			}
		}
	}
	return n
}
