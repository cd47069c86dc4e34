package e2e

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// notifydPath is Debian's xfce4-notifyd (package xfce4-notifyd).
const notifydPath = "/usr/lib/x86_64-linux-gnu/xfce4/notifyd/xfce4-notifyd"

// The desktop app as a host sees it, on Xvfb with xfce4-panel and
// xfce4-notifyd: alice shares X Logo, bob runs it on her computer.
//   - Keys alice types into her focused xterm while bob's request arrives
//     ("\t \t\n", again and again) neither answer the popup nor leave her
//     xterm: the request stays pending; no notification bubble of the
//     same request covers the popup.
//   - Her tray icon's IconPixmap and the Sessions entry follow the session
//     starting and ending.
//   - Once she allowed with Remember, every later session shows the
//     notification "BOB is running X Logo here (allowed by your rule)".
func TestDesktopAppHostKnowsWhoIsIn(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xfce4-panel", "xdotool", "xwininfo", "xterm", "xlogo", notifydPath)

	au := testenv.NewUser(t, binary, true)
	bus := testenv.SessionBus(t, au.UID, au.GID)
	x := testenv.StartXvfb(t, au.UID, au.GID)
	conn := testenv.BusConn(t, bus, au.UID, au.GID)
	alice := au.With("DBUS_SESSION_BUS_ADDRESS="+bus, "DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority, "NO_AT_BRIDGE=1")
	an := &node{u: alice, x: x}
	shareApp(t, an, "xlogo", "X Logo", "xlogo")
	watcher, _ := startPanel(t, alice, conn)
	start(t, alice, "xfce4-notifyd", notifydPath)
	testenv.WaitBusName(t, conn, "org.freedesktop.Notifications", 20*time.Second)

	// What alice's app asks of the notification service, as it goes by.
	notes := watchNotify(t, bus, au)

	port := freePort(t)
	gui := start(t, alice.With("LIBGL_ALWAYS_SOFTWARE=1"), "desktop app", binary, "gui", "--no-discovery", "--listen", "127.0.0.1:"+port)
	an.fp, an.port = bannerOf(t, gui.log), port
	item := waitItem(t, conn, watcher, gui, false, 20*time.Second)
	props := map[string]dbus.Variant{}
	if err := item.Call("org.freedesktop.DBus.Properties.GetAll", 0, "org.kde.StatusNotifierItem").Store(&props); err != nil {
		t.Fatal(err)
	}
	menu := conn.Object(item.Destination(), props["Menu"].Value().(dbus.ObjectPath))
	icons := loadTrayIcons(t)
	waitIcon(t, item, icons, "sharing")

	bob := newNode(t, false)
	bob.startDisplay(t)
	startDaemon(t, bob, "--peer", an.peerArg("alice"))

	// alice types in her xterm.
	start(t, alice, "xterm", "xterm", "-title", "alice-typing", "-e", "sh", "-c", "cat > \"$HOME/typed\"")
	x.WaitWindow(t, "alice-typing", true, 20*time.Second)
	termWin := strings.Fields(string(must(x.Command("xdotool", "search", "--name", "alice-typing").Output())))[0]
	xdotool(t, x, "windowfocus", "--sync", termWin)

	t.Run("typing elsewhere does not answer the popup", func(t *testing.T) {
		typing := make(chan struct{})
		stop := make(chan struct{})
		go func() {
			defer close(typing)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Into whatever has the focus, as a user's typing goes.
				x.Command("xdotool", "type", "--delay", "60", "\t \t\n").Run()
			}
		}()
		startRun(t, bob.u, "alice", "xlogo")
		id := waitPending(t, an)
		popup := visibleAt(t, x, "asks to run X Logo", 20*time.Second)
		// Typing goes on for 3 s after the popup showed.
		time.Sleep(3*time.Second - time.Since(popup))
		close(stop)
		<-typing
		time.Sleep(500 * time.Millisecond)
		if got := waitPending(t, an); got != id {
			t.Fatalf("pending request %q, want %q still waiting", got, id)
		}
		if f := strings.TrimSpace(string(must(x.Command("xdotool", "getwindowfocus").Output()))); f != termWin {
			t.Errorf("the focus moved from alice's xterm (%s) to %s", termWin, f)
		}
		// The popup alone: no notification bubble of the same request
		// covers it (one is only shown when no popup can be).
		if n := notes.count(" wants to run X Logo"); n != 0 {
			t.Errorf("%d notifications of the request beside its popup", n)
		}
		pw := strings.Fields(string(must(x.Command("xdotool", "search", "--onlyvisible", "--name", "asks to run X Logo").Output())))[0]
		pr := windowRect(t, x, pw)
		for _, bw := range strings.Fields(string(must(x.Command("xdotool", "search", "--onlyvisible", "--class", "xfce4-notifyd").Output()))) {
			if br := windowRect(t, x, bw); br.Overlaps(pr) {
				t.Errorf("the notification bubble %v covers the popup %v", br, pr)
			} else {
				t.Logf("popup at %v, notification bubble at %v", pr, br)
			}
		}
		windowShot(t, x, pw, "popup-1024x768.png")
		clickAllow(t, x, "asks to run X Logo", "", func() string { return "" })
	})

	t.Run("the tray follows the session", func(t *testing.T) {
		waitIcon(t, item, icons, "active")
		waitLabel(t, menu, "Sessions (1 running)")
		endOnlySession(t, an, "incoming", "")
		waitIcon(t, item, icons, "sharing")
		waitLabel(t, menu, "Sessions")
	})

	t.Run("a remembered rule is told every time", func(t *testing.T) {
		startRun(t, bob.u, "alice", "xlogo")
		id := waitPending(t, an)
		alice.MustRun(t, "allow", id, "--remember")
		bob.x.WaitWindow(t, "xlogo", true, 30*time.Second)
		if r := alice.MustRun(t, "rules"); !strings.Contains(r.Stdout, "X Logo") || !strings.Contains(r.Stdout, "always allow") {
			t.Errorf("rules after allow --remember:\n%s", r.Stdout)
		}
		endOnlySession(t, an, "incoming", "")
		for round := 1; round <= 2; round++ {
			startRun(t, bob.u, "alice", "xlogo")
			bob.x.WaitWindow(t, "xlogo", true, 30*time.Second)
			if r := alice.MustRun(t, "pending"); strings.Contains(r.Stdout, "X Logo") {
				t.Fatalf("a request asked despite the rule:\n%s", r.Stdout)
			}
			notes.wait(t, " is running X Logo here (allowed by your rule)", round)
			waitIcon(t, item, icons, "active")
			endOnlySession(t, an, "incoming", "")
			waitIcon(t, item, icons, "sharing")
			t.Logf("round %d: told, and the icon back to sharing", round)
		}
		if n := notes.count(" is running X Logo here (allowed by your rule)"); n != 2 {
			t.Errorf("%d rule notifications for 2 sessions", n)
		}
	})
}

// bannerOf waits for the desktop app's banner in its log and returns its
// fingerprint.
func bannerOf(t *testing.T, log string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if m := daemonLine.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner in the desktop app's log:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(b []byte, _ error) []byte { return b }

// notifyCalls are the summaries of the Notify calls dbus-monitor saw.
type notifyCalls struct {
	mu   sync.Mutex
	seen []string
}

// stringArg is a string argument in dbus-monitor's print of a call.
var stringArg = regexp.MustCompile(`^\s+string "(.*)"$`)

// watchNotify runs dbus-monitor on the session bus (as the user, who owns
// it) for Notify calls until the test ends.
func watchNotify(t *testing.T, bus string, u *testenv.User) *notifyCalls {
	t.Helper()
	n := &notifyCalls{}
	cmd := u.With("DBUS_SESSION_BUS_ADDRESS="+bus).Exec(t.Context(), "dbus-monitor",
		"type='method_call',interface='org.freedesktop.Notifications',member='Notify'")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-monitor: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		args := -1
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "method call") && strings.Contains(line, "member=Notify") {
				args = 0
				continue
			}
			if args < 0 {
				continue
			}
			if m := stringArg.FindStringSubmatch(line); m != nil {
				args++
				if args == 3 { // app name, icon, summary
					n.mu.Lock()
					n.seen = append(n.seen, m[1])
					n.mu.Unlock()
					args = -1
				}
			}
		}
	}()
	return n
}

// count counts the notifications whose summary ends so.
func (n *notifyCalls) count(summary string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.seen {
		if strings.HasSuffix(s, summary) {
			c++
		}
	}
	return c
}

// wait waits for the nth notification whose summary ends so (the peer's
// name comes first).
func (n *notifyCalls) wait(t *testing.T, summary string, nth int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.count(summary) < nth {
		if time.Now().After(deadline) {
			n.mu.Lock()
			seen := append([]string(nil), n.seen...)
			n.mu.Unlock()
			t.Fatalf("no notification %q; seen %q", summary, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
