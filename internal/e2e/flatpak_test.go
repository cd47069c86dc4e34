package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

const flatpakID = "io.github.ebrainpool.EBrainPool"

// The Flatpak, built by packaging/flatpak/build.sh and installed by an
// unprivileged user with no setup at all, runs as the desktop app inside
// Flatpak's sandbox: its tray icon works in a real tray host through
// Flatpak's bus proxy, its peer browser shows on the user's display, a
// launch through its D-Bus API opens an app of a peer here, and a peer
// asking for its apps is told that the Flatpak shares none.
func TestFlatpakRunsAppsFromPeers(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "flatpak", "flatpak-builder", "bwrap", "xlogo", "xwininfo", "xdotool", "desktop-file-validate")
	repo := flatpak.repo(t)

	// alice: no setup (no root step); her own session bus and display.
	au := testenv.NewUser(t, binary, false)
	t.Cleanup(func() { noProcessesLeft(t, au) })
	bus := testenv.SessionBus(t, au.UID, au.GID)
	x := testenv.StartXvfb(t, au.UID, au.GID)
	// These machines run no system bus; a bus of the test's stands in
	// (flatpak run sets up its proxy for Avahi on it).
	system := testenv.SessionBus(t, au.UID, au.GID)
	alice := installFlatpak(t, au.With("DBUS_SESSION_BUS_ADDRESS="+bus, "DBUS_SYSTEM_BUS_ADDRESS="+system,
		"DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority, "NO_AT_BRIDGE=1"), repo)
	// "Open with eBrainPool" in file managers: the entry is exported, its
	// Exec runs `open --gui` in the Flatpak with the files forwarded.
	openEntry := filepath.Join(au.Home, ".local/share/flatpak/exports/share/applications", flatpakID+".Open.desktop")
	if b, err := os.ReadFile(openEntry); err != nil {
		t.Errorf("the Flatpak exports no entry for file managers: %v", err)
	} else if line := regexp.MustCompile(`(?m)^Exec=.*$`).FindString(string(b)); !strings.Contains(line, "--file-forwarding") ||
		!strings.Contains(line, "open --gui @@ %F @@") || !strings.Contains(string(b), "MimeType=text/plain;") {
		t.Errorf("the exported entry for file managers:\n%s", b)
	}
	if out, err := exec.Command("desktop-file-validate", openEntry).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("desktop-file-validate %s: %v\n%s", openEntry, err, out)
	}
	fa := alice.Via("flatpak", "run", flatpakID)
	fp := strings.SplitN(fa.MustRun(t, "id").Stdout, "\n", 2)[0]
	if !strings.HasPrefix(fp, "SHA256:") {
		t.Fatalf("ebrainpool id in the Flatpak printed %q", fp)
	}
	port := freePort(t)

	// bob: a host with the package's setup, sharing X Logo, knowing alice.
	bob := newNode(t, true)
	shareApp(t, bob, "xlogo", "X Logo", "xlogo")
	startDaemon(t, bob, "--peer", fmt.Sprintf("%s@127.0.0.1:%s=alice", fp, port))

	// A tray host (xfce4-panel), then the desktop app from the Flatpak.
	conn := testenv.BusConn(t, bus, au.UID, au.GID)
	watcher, _ := startPanel(t, alice, conn)
	tApp := time.Now()
	app := start(t, alice, "flatpak desktop app", "flatpak", "run", flatpakID,
		"gui", "--no-discovery", "--listen", "127.0.0.1:"+port, "--peer", bob.peerArg("bob"))
	// Its tray icon, through Flatpak's bus proxy: registered with the
	// panel's watcher, and its menu read and clicked as the panel does.
	item := waitItem(t, conn, watcher, app, true, 60*time.Second)
	t.Logf("tray item %s%s of the Flatpak registered %s after `flatpak run`", item.Destination(), item.Path(), time.Since(tApp).Round(time.Millisecond))
	var menuPath dbus.ObjectPath
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.Menu"); err != nil || v.Store(&menuPath) != nil {
		t.Fatalf("the Flatpak's StatusNotifierItem Menu: %v %v", v, err)
	}
	menu := conn.Object(item.Destination(), menuPath)
	waitPeerApp(t, menu, "bob", "X Logo")
	// It cannot share: the off icon, and no sharing toggle.
	waitIcon(t, item, loadTrayIcons(t), "off")
	if _, ok := testenv.ReadMenu(t, menu).Find("Sharing unavailable (see Settings)"); !ok {
		t.Errorf("the Flatpak's tray menu %q offers sharing", testenv.ReadMenu(t, menu).Labels())
	}
	click(t, menu, "Open peer browser")
	x.WaitWindow(t, "eBrainPool: peers", true, 60*time.Second)
	t.Logf("peer browser of the Flatpak, opened from its tray menu, on the display %s after `flatpak run`", time.Since(tApp).Round(time.Millisecond))
	// The command line, from another instance of the Flatpak, reaches the
	// app's D-Bus API through Flatpak's bus proxy (--own-name) once the
	// daemon in it serves.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := fa.Run(t, "apps", "bob")
		if r.Code == 0 && strings.Contains(r.Stdout, "X Logo") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ebrainpool apps bob, in the Flatpak: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("bob's apps listed from the Flatpak %s after `flatpak run`", time.Since(tApp).Round(time.Millisecond))

	t.Run("runs a peer's app", func(t *testing.T) {
		startRun(t, fa, "bob", "xlogo")
		id := waitPending(t, bob)
		bob.u.MustRun(t, "allow", id)
		took := x.WaitWindow(t, "xlogo", true, 30*time.Second)
		t.Logf("xlogo's window on alice's display %s after bob allowed", took.Round(time.Millisecond))
		// The SSH client showing it runs inside the Flatpak's sandbox.
		inFlatpak := 0
		for _, pid := range testenv.PidsOfUIDs(au.UID, au.UID) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if !strings.Contains(string(cmdline), "x11-client") {
				continue
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/.flatpak-info", pid)); err != nil {
				t.Errorf("the X11 client (pid %d) runs outside the Flatpak: %v", pid, err)
			}
			inFlatpak++
		}
		if inFlatpak == 0 {
			t.Error("no X11 client process of alice found")
		}
		endOnlySession(t, &node{u: fa, x: x}, "outgoing", "")
	})
	t.Run("start at login", func(t *testing.T) {
		click(t, menu, "Settings")
		x.WaitWindow(t, "eBrainPool: settings", true, 30*time.Second)
		// By keyboard: Shift+Tab from nothing focused walks back from the
		// last field, Save, to the General tab's last, "Start eBrainPool
		// when I log in" (TestSettingsKeyboardReachesLogin pins the order);
		// Space ticks it.
		xdotool(t, x, "search", "--sync", "--name", "eBrainPool: settings", "key", "--window", "%1", "--delay", "50", "shift+Tab", "shift+Tab", "space")
		entry := filepath.Join(au.Home, ".config", "autostart", flatpakID+".desktop")
		var b []byte
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if b, err = os.ReadFile(entry); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no autostart entry in the user's own ~/.config/autostart: %v", err)
			}
		}
		if want := "Exec=flatpak run " + flatpakID + " gui --show none\n"; !strings.Contains(string(b), want) {
			t.Errorf("autostart entry:\n%s\nwant %q", b, want)
		}
		if out, err := exec.Command("desktop-file-validate", entry).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("desktop-file-validate %s: %v\n%s", entry, err, out)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(entry, &st); err != nil || int(st.Uid) != au.UID {
			t.Errorf("autostart entry owned by uid %d, want %d (%v)", st.Uid, au.UID, err)
		}
		t.Logf("%s:\n%s", entry, b)
	})
	t.Run("shares none of its own, and says why", func(t *testing.T) {
		r := bob.u.Run(t, "apps", "alice")
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "runs eBrainPool as a Flatpak") {
			t.Errorf("bob asking alice's apps: %s", r)
		}
	})
	select {
	case <-app.exited:
		t.Fatalf("the Flatpak's desktop app exited: %v", app.cmd.ProcessState)
	default:
	}
	// Stopped as at logout: flatpak run passes SIGTERM on; the app ends
	// cleanly although Flatpak's bus proxy may be gone before it.
	app.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-app.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the Flatpak's desktop app still runs 15 s after SIGTERM")
	}
	b, _ := os.ReadFile(app.log)
	if strings.Contains(string(b), "panic:") {
		t.Errorf("the desktop app panicked on the way out:\n%s", b)
	}
	// Flatpak's bus proxy (xdg-dbus-proxy, its output in the same log)
	// cut none of the app's connections (see package busrelay).
	if strings.Contains(string(b), "Invalid client serial") {
		t.Errorf("Flatpak's bus proxy closed a connection of the app:\n%s", b)
	}
	// The tray item got its well-known name (finish-args own it).
	if strings.Contains(string(b), "systray error") {
		t.Errorf("the tray reported an error:\n%s", b)
	}
	t.Logf("stopped by SIGTERM: %v", app.cmd.ProcessState)
}

// flatpakBuild is the Flatpak (runtime and app) built once for all the
// tests of the package, in a repository every test user can read.
type flatpakBuild struct {
	once sync.Once
	dir  string
	err  error
}

var flatpak flatpakBuild

// repo builds the Flatpak on first use and returns its repository.
func (f *flatpakBuild) repo(t *testing.T) string {
	t.Helper()
	f.once.Do(func() {
		if f.dir, f.err = os.MkdirTemp("", "ebp-flatpak-"); f.err != nil {
			return
		}
		if f.err = os.Chmod(f.dir, 0o755); f.err != nil {
			return
		}
		t0 := time.Now()
		out, err := exec.Command(filepath.Join("..", "..", "packaging", "flatpak", "build.sh"), f.dir).CombinedOutput()
		if err != nil {
			f.err = fmt.Errorf("packaging/flatpak/build.sh: %v\n%s", err, out)
			return
		}
		t.Logf("runtime and app built in %s", time.Since(t0).Round(time.Millisecond))
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return filepath.Join(f.dir, "repo")
}

// remove deletes the build, once every test has run.
func (f *flatpakBuild) remove() {
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// installFlatpak installs runtime and app from repo for the user, as the
// user (flatpak --user: no root), and returns the user with the runtime
// directory flatpak run needs.
func installFlatpak(t *testing.T, u *testenv.User, repo string) *testenv.User {
	t.Helper()
	runtimeDir := filepath.Join(u.Home, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(runtimeDir, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	u = u.With("XDG_RUNTIME_DIR=" + runtimeDir)
	// Flatpak asks the system bus (accounts service) for parental
	// controls before installing an app; these machines run no system
	// bus, so a bus of the test's stands in (without that service:
	// parental controls off, as on most desktops).
	inst := u.With("DBUS_SYSTEM_BUS_ADDRESS=" + testenv.SessionBus(t, u.UID, u.GID))
	t0 := time.Now()
	for _, args := range [][]string{
		{"--user", "remote-add", "--no-gpg-verify", "ebrainpool-local", repo},
		{"--user", "install", "-y", "--noninteractive", "ebrainpool-local", flatpakID},
	} {
		if out, err := inst.Exec(t.Context(), "flatpak", args...).CombinedOutput(); err != nil {
			t.Fatalf("flatpak %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Logf("installed for %s (runtime and app) in %s", u.Name, time.Since(t0).Round(time.Millisecond))
	return u
}

// The Flatpak on the three-host test bed: alice runs it (no setup) on
// host1, bob and carol the package's daemon. Discovery goes through the
// Flatpak's bus proxy to host1's avahi-daemon both ways: alice finds bob
// and carol, and they find her. Alice runs X Logo from bob across the bed's
// network, its window on her display; bob asking for alice's apps is told
// that the Flatpak shares none.
func TestFlatpakOnTheLAN(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "setpriv", "avahi-publish", "flatpak", "flatpak-builder", "bwrap")
	repo := flatpak.repo(t)
	A, B, C := newLANNodes(t, testbed.New(t, 3), "alice")
	A.u = installFlatpak(t, A.u, repo)
	// The Flatpak's settings live in its own XDG directories.
	settings := filepath.Join(A.u.Home, ".config", "ebrainpool", "settings.json")
	own := filepath.Join(A.u.Home, ".var", "app", flatpakID, "config", "ebrainpool")
	if err := os.MkdirAll(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(settings, filepath.Join(own, "settings.json")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", A.u.Name+":", filepath.Join(A.u.Home, ".var")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	A.launcher = []string{"flatpak", "run", flatpakID}
	t0 := time.Now()
	for _, n := range []*lanNode{A, B, C} {
		n.start(t)
	}
	// The command line from the Flatpak too (another flatpak run).
	A.u = A.u.Via(A.launcher...)
	t.Run("discovery both ways through the Flatpak's bus proxy", func(t *testing.T) {
		A.waitPeers(t, 10*time.Second, map[string]string{B.fp: "", C.fp: ""})
		t.Logf("the Flatpak on %s lists bob and carol %s after the daemons started", A.h.Name, time.Since(t0).Round(time.Millisecond))
		B.waitPeers(t, 10*time.Second, map[string]string{A.fp: "", C.fp: ""})
		C.waitPeers(t, 10*time.Second, map[string]string{A.fp: "", B.fp: ""})
		t.Logf("bob and carol list the Flatpak %s after the daemons started", time.Since(t0).Round(time.Millisecond))
	})
	t.Run("alice runs X Logo from bob across the LAN", func(t *testing.T) {
		startRun(t, A.u, "bob", "xlogo")
		B.u.MustRun(t, "allow", waitPending(t, &B.node))
		took := A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
		t.Logf("xlogo's window on alice's display %s after bob allowed", took.Round(time.Millisecond))
		endOnlySession(t, &A.node, "outgoing", "")
	})
	t.Run("bob is told the Flatpak shares none", func(t *testing.T) {
		r := B.u.Run(t, "apps", A.fp)
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "runs eBrainPool as a Flatpak") {
			t.Errorf("bob asking alice's apps: %s", r)
		}
	})
	if b, _ := os.ReadFile(A.log); strings.Contains(string(b), "Invalid client serial") {
		t.Errorf("Flatpak's bus proxy closed a connection of the app:\n%s", b)
	}
}
