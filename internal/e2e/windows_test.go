package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The desktop app's windows are drawn by a window process it starts when
// one opens and that ends a few seconds after the last one closed, so the
// app itself never loads the GL driver: in a real tray host (xfce4-panel)
// the peer browser opened from the tray, closed, leaves the app under
// 60 MB of resident memory within 10 s, the tray still working; a request
// from a peer opens its popup promptly in a new window process, and one
// killed while the popup is up is started again with the popup, whose
// Allow still works by a click; killing the window process leaves the
// daemon serving.
func TestDesktopAppWindowProcess(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xfce4-panel", "xdotool", "xlogo", "xwininfo")

	// alice: the desktop user, in a panel, sharing X Logo.
	au := testenv.NewUser(t, binary, true)
	bus := testenv.SessionBus(t, au.UID, au.GID)
	x := testenv.StartXvfb(t, au.UID, au.GID)
	conn := testenv.BusConn(t, bus, au.UID, au.GID)
	alice := au.With("DBUS_SESSION_BUS_ADDRESS="+bus, "DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority, "NO_AT_BRIDGE=1")
	host := &node{u: alice, x: x}
	shareApp(t, host, "xlogo", "X Logo", "xlogo")
	watcher, _ := startPanel(t, alice, conn)

	port := freePort(t)
	gui := start(t, alice.With("LIBGL_ALWAYS_SOFTWARE=1"), "desktop app", binary,
		"gui", "-v", "--no-discovery", "--listen", "127.0.0.1:"+port)
	item := waitItem(t, conn, watcher, gui, false, 20*time.Second)
	host.fp, host.port = bannerIn(t, gui.log)
	menu := trayMenu(t, conn, item)
	app := gui.cmd.Process.Pid
	time.Sleep(2 * time.Second) // settled
	idle := appRSS(app)
	t.Logf("tray only: %s", idle)

	// The peer browser from the tray, then closed.
	t0 := time.Now()
	click(t, menu, "Open peer browser")
	t.Logf("peer browser on screen %s after the click (a window process started)", visibleAt(t, x, "eBrainPool: peers", 20*time.Second).Sub(t0).Round(time.Millisecond))
	open := appRSS(app)
	t.Logf("with the peer browser open: %s", open)
	if len(open.windows) != 1 {
		t.Fatalf("%d window processes run with the peer browser open, want 1", len(open.windows))
	}
	if libs := glLibraries(app); len(libs) > 0 {
		t.Errorf("the app's own process maps the GL driver: %q", libs)
	}
	closeWindow(t, x, "eBrainPool: peers")
	waitVisible(t, x, "eBrainPool: peers", false, 10*time.Second)
	back := waitRSS(t, app, 60<<20, 10*time.Second)
	t.Logf("peer browser closed: %s", back)

	// The tray goes on: registered, and its items work.
	if !contains(registered(t, watcher), item.Destination()) {
		t.Errorf("the watcher lists %q, not the app's item %s", registered(t, watcher), item.Destination())
	}
	click(t, menu, "Sessions")
	waitVisible(t, x, "eBrainPool: sessions", true, 20*time.Second)

	// A window process killed: the daemon serves, the tray still opens
	// windows.
	w := appRSS(app).windows
	if len(w) != 1 {
		t.Fatalf("%d window processes with the sessions window open, want 1", len(w))
	}
	syscall.Kill(w[0], syscall.SIGKILL)
	waitVisible(t, x, "eBrainPool: sessions", false, 10*time.Second)
	if r := alice.Run(t, "sessions"); r.Code != 0 {
		t.Errorf("the daemon does not answer after the window process was killed: %s", r)
	}
	click(t, menu, "Settings")
	waitVisible(t, x, "eBrainPool: settings", true, 20*time.Second)
	closeWindow(t, x, "eBrainPool: settings")
	waitRSS(t, app, 60<<20, 10*time.Second)

	// A request from bob, with no window process running: the popup.
	bob := newNode(t, false)
	bob.startDisplay(t)
	startDaemon(t, bob, "--peer", host.peerArg("alice"))
	pending := watchRequests(t, conn)
	run := startRun(t, bob.u, "alice", "xlogo")
	asked := <-pending
	shown := visibleAt(t, x, "asks to run X Logo", 20*time.Second)
	t.Logf("request popup on screen %s after the daemon announced the request (no window process was running)", shown.Sub(asked).Round(time.Millisecond))

	// Its window process killed: the popup comes back in a new one.
	w = appRSS(app).windows
	if len(w) != 1 {
		t.Fatalf("%d window processes with the popup open, want 1", len(w))
	}
	syscall.Kill(w[0], syscall.SIGKILL)
	waitVisible(t, x, "asks to run X Logo", false, 10*time.Second)
	t0 = time.Now()
	t.Logf("popup back %s after its window process was killed", visibleAt(t, x, "asks to run X Logo", 20*time.Second).Sub(t0).Round(time.Millisecond))
	clickAllow(t, x, "asks to run X Logo", "", func() string { return fmt.Sprintf("run: %v", run.ProcessState) })
	bob.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	waitVisible(t, x, "asks to run X Logo", false, 10*time.Second)
	t.Logf("popup answered: %s", waitRSS(t, app, 60<<20, 10*time.Second))
	endOnlySession(t, bob, "outgoing", "")
}

// rss is the resident memory of the desktop app and its window processes.
type rss struct {
	app, total int64 // bytes
	windows    []int // pids of the window processes
}

func (r rss) String() string {
	return fmt.Sprintf("%.1f MB resident (the app %.1f MB, %d window processes)", mb(r.total), mb(r.app), len(r.windows))
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// appRSS measures the app (pid) and its window processes.
func appRSS(pid int) rss {
	r := rss{app: vmRSS(pid)}
	r.total = r.app
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("gui-windows")) {
			r.windows = append(r.windows, child)
			r.total += vmRSS(child)
		}
	}
	return r
}

func vmRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// waitRSS waits until the app and its window processes are below limit
// (no window process left) and returns the measure.
func waitRSS(t *testing.T, pid int, limit int64, timeout time.Duration) rss {
	t.Helper()
	t0 := time.Now()
	for {
		r := appRSS(pid)
		if r.total < limit && len(r.windows) == 0 {
			t.Logf("below %.0f MB %s after the last window closed", mb(limit), time.Since(t0).Round(100*time.Millisecond))
			return r
		}
		if time.Since(t0) > timeout {
			t.Fatalf("%s after %s, want under %.0f MB with no window process", r, timeout, mb(limit))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// glLibraries are the GL driver's libraries the process maps.
func glLibraries(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		name := filepath.Base(f[5])
		if (strings.HasPrefix(name, "libLLVM") || strings.HasSuffix(name, "_dri.so")) && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// bannerIn reads the daemon's banner (fingerprint and port) from a log.
func bannerIn(t *testing.T, log string) (fp, port string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(log)
		if m := daemonLine.FindSubmatch(b); m != nil {
			return string(m[1]), string(m[2])
		}
	}
	t.Fatalf("no daemon banner in %s", log)
	return "", ""
}

// trayMenu is the item's com.canonical.dbusmenu object.
func trayMenu(t *testing.T, conn *dbus.Conn, item dbus.BusObject) dbus.BusObject {
	t.Helper()
	v, err := item.GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("StatusNotifierItem Menu: %v", err)
	}
	path, ok := v.Value().(dbus.ObjectPath)
	if !ok || !path.IsValid() {
		t.Fatalf("StatusNotifierItem Menu = %v", v)
	}
	return conn.Object(item.Destination(), path)
}

// visibleAt waits for a viewable window whose name contains name and
// returns when it was seen (polling every 10 ms).
func visibleAt(t *testing.T, x *testenv.Xvfb, name string, timeout time.Duration) time.Time {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		o, _ := x.Command("xdotool", "search", "--onlyvisible", "--name", name).Output()
		if len(bytes.Fields(o)) > 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no window %q within %s; windows: %q", name, timeout, names(x))
		}
	}
}

// watchRequests sends the time each RequestPending signal of the daemon on
// conn's bus arrives.
func watchRequests(t *testing.T, conn *dbus.Conn) <-chan time.Time {
	t.Helper()
	match := []dbus.MatchOption{dbus.WithMatchInterface("io.github.ebrainpool.EBrainPool1"), dbus.WithMatchMember("RequestPending")}
	if err := conn.AddMatchSignal(match...); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	out := make(chan time.Time, 16)
	go func() {
		for s := range sigs {
			if s.Name == "io.github.ebrainpool.EBrainPool1.RequestPending" {
				out <- time.Now()
			}
		}
	}()
	t.Cleanup(func() { conn.RemoveSignal(sigs); conn.RemoveMatchSignal(match...) })
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s || strings.HasPrefix(e, s+"/") {
			return true
		}
	}
	return false
}
