package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Wayland is a Wayland desktop session the way GNOME and KDE run one: a
// compositor (weston 10, headless, with the pixman renderer so its output
// has pixels) in a private XDG_RUNTIME_DIR owned by the session's user,
// and Xwayland, which the compositor starts when the first X client
// connects (as GNOME does) and which accepts only the cookie in
// XAuthority, a file under the runtime directory written as mutter writes
// it. weston's own window manager (its xwayland module) manages the X
// windows, so a mapped X window really appears on the compositor's output.
//
// weston cannot give Xwayland an -auth file: its [xwayland] path is a
// wrapper that starts Xwayland with weston's arguments and -auth. Unlike
// mutter, nothing adds the user to Xwayland's host access list
// (si:localuser), so an X client gets in with that cookie or not at all.
type Wayland struct {
	RuntimeDir     string // XDG_RUNTIME_DIR: owned by the user, mode 0700
	WaylandDisplay string // WAYLAND_DISPLAY: the compositor's socket in RuntimeDir
	Display        string // DISPLAY: Xwayland's, ":N"
	XAuthority     string // XAUTHORITY: RuntimeDir/.mutter-Xwaylandauth.XXXXXX
	Cookie         []byte // the MIT-MAGIC-COOKIE-1 in XAuthority
	uid, gid       int
	home           string
	pid            int    // weston's
	log            string // weston's log file
}

var westonDisplayLine = regexp.MustCompile(`xserver listening on display (:\d+)`)

// StartWayland starts the session for the user uid (weston runs as that
// user) and stops it, by pid, at cleanup. As root it can run for any
// user; otherwise uid must be the caller's.
func StartWayland(t testing.TB, uid, gid int) *Wayland {
	t.Helper()
	RequireTools(t, "weston", "Xwayland", "weston-screenshooter")
	xwayland, _ := exec.LookPath("Xwayland")
	if uid != os.Getuid() {
		RequireRoot(t)
	}
	// The X socket directory, as systemd-tmpfiles or an X server leave
	// it; weston fails without it.
	if err := os.MkdirAll("/tmp/.X11-unix", 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod("/tmp/.X11-unix", 0o1777)

	w := &Wayland{WaylandDisplay: "wayland-ebp", uid: uid, gid: gid}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		w.home = u.HomeDir
	}
	var err error
	if w.RuntimeDir, err = os.MkdirTemp("", "ebp-xdg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(w.RuntimeDir) })
	if w.home == "" {
		w.home = w.RuntimeDir
	}
	if err := os.Chown(w.RuntimeDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(w.RuntimeDir, 0o700)
	// The cookie file, as mutter's prepare_auth_file writes it: a random
	// name under XDG_RUNTIME_DIR, one entry for FamilyLocal with the host
	// name and one FamilyWild, both without a display number.
	w.Cookie = make([]byte, 16)
	rand.Read(w.Cookie)
	host, _ := os.Hostname()
	auth := xauthEntry(256, host, "", w.Cookie)
	auth = append(auth, xauthEntry(65535, host, "", w.Cookie)...)
	w.XAuthority = filepath.Join(w.RuntimeDir, ".mutter-Xwaylandauth."+randomName(6))
	if err := os.WriteFile(w.XAuthority, auth, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(w.XAuthority, uid, gid)

	// weston's configuration, the Xwayland wrapper and weston's log, in a
	// directory of the user's.
	conf, err := os.MkdirTemp("", "ebp-weston-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(conf) })
	os.Chmod(conf, 0o755)
	os.Chown(conf, uid, gid)
	wrapper := filepath.Join(conf, "xwayland")
	script := fmt.Sprintf("#!/bin/sh\nexec %s \"$@\" -auth %s\n", shellQuote(xwayland), shellQuote(w.XAuthority))
	ini := fmt.Sprintf("[core]\nxwayland=true\n\n[xwayland]\npath=%s\n", wrapper)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "weston.ini"), []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	w.log = filepath.Join(conf, "weston.log")
	stderr, err := os.Create(filepath.Join(conf, "weston.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()

	// --debug exposes the screenshooter protocol (Screenshot);
	// --idle-time=0 keeps desktop-shell from blanking and locking the screen.
	cmd := exec.Command("weston", "--backend=headless-backend.so", "--use-pixman", "--width=1024", "--height=768",
		"--socket="+w.WaylandDisplay, "--config="+filepath.Join(conf, "weston.ini"), "--log="+w.log,
		"--idle-time=0", "--debug")
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=" + w.home, "PATH=/usr/local/bin:/usr/bin:/bin", "XDG_RUNTIME_DIR=" + w.RuntimeDir}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if uid != os.Getuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting weston: %v", err)
	}
	w.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { w.stop(t, cmd, exited) })

	deadline := time.Now().Add(20 * time.Second)
	for w.Display == "" {
		b, _ := os.ReadFile(w.log)
		if m := westonDisplayLine.FindSubmatch(b); m != nil {
			if _, err := os.Stat(filepath.Join(w.RuntimeDir, w.WaylandDisplay)); err == nil {
				w.Display = string(m[1])
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("weston exited at start:\n%s", w.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weston did not offer an X display within 20s:\n%s", w.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return w
}

// stop ends weston by its pid (it ends its clients and Xwayland), then
// kills, by pid, any of its children that outlived it.
func (w *Wayland) stop(t testing.TB, cmd *exec.Cmd, exited chan struct{}) {
	kids := descendants(w.pid)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("weston (pid %d) did not stop on SIGTERM", w.pid)
		cmd.Process.Kill()
		<-exited
	}
	for pid, comm := range kids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && string(b) == comm {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// A killed weston leaves its X lock file and socket.
	if n := strings.TrimPrefix(w.Display, ":"); n != "" {
		lock := fmt.Sprintf("/tmp/.X%s-lock", n)
		if b, err := os.ReadFile(lock); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(w.pid) {
			os.Remove(lock)
			os.Remove("/tmp/.X11-unix/X" + n)
		}
	}
	if t.Failed() {
		t.Logf("weston:\n%s", w.logs())
	}
}

// logs is weston's log and its children's output.
func (w *Wayland) logs() string {
	a, _ := os.ReadFile(w.log)
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(w.log), "weston.stderr"))
	return string(a) + string(b)
}

// SessionEnv is the environment of the Wayland session without its X
// display: XDG_RUNTIME_DIR, WAYLAND_DISPLAY and XDG_SESSION_TYPE.
func (w *Wayland) SessionEnv() []string {
	return []string{"XDG_RUNTIME_DIR=" + w.RuntimeDir, "WAYLAND_DISPLAY=" + w.WaylandDisplay, "XDG_SESSION_TYPE=wayland"}
}

// Env is the environment a program started in the session gets: SessionEnv
// with DISPLAY and XAUTHORITY.
func (w *Wayland) Env() []string {
	return append(w.SessionEnv(), "DISPLAY="+w.Display, "XAUTHORITY="+w.XAuthority)
}

// X is the Xwayland display for X clients run by the test (Command,
// WindowNames, WaitWindow work on any X display).
func (w *Wayland) X() *Xvfb { return &Xvfb{Display: w.Display, XAuthority: w.XAuthority} }

// XwaylandArgs is the command line of the running Xwayland, or nil if the
// compositor has not started it (yet).
func (w *Wayland) XwaylandArgs() []string {
	for pid, comm := range descendants(w.pid) {
		if comm == "Xwayland\n" {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil {
				return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
			}
		}
	}
	return nil
}

// Screenshot is the compositor's output as its user sees it, taken with
// weston-screenshooter.
func (w *Wayland) Screenshot() (*image.RGBA, error) {
	dir, err := os.MkdirTemp("", "ebp-shot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.Chown(dir, w.uid, w.gid)
	cmd := exec.Command("weston-screenshooter")
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + w.home, "PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=" + w.RuntimeDir, "WAYLAND_DISPLAY=" + w.WaylandDisplay}
	if w.uid != os.Getuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.uid), Gid: uint32(w.gid)}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("weston-screenshooter: %v: %s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(files) != 1 {
		return nil, fmt.Errorf("weston-screenshooter wrote %d PNG files", len(files))
	}
	f, err := os.Open(files[0])
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("weston-screenshooter's PNG: %v", err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	return rgba, nil
}

var (
	xwinID     = regexp.MustCompile(`Window id: (0x[0-9a-f]+)`)
	xwinRoot   = regexp.MustCompile(`Root window id: (0x[0-9a-f]+)`)
	xwinParent = regexp.MustCompile(`Parent window id: (0x[0-9a-f]+)`)
	xwinMap    = regexp.MustCompile(`Map State: (\w+)`)
)

// WaitWindowShown waits until a window named name is on the desktop as its
// user sees it: viewable on Xwayland, managed by the compositor's window
// manager (reparented into its frame, not a child of the root) and its
// pixels, as Xwayland has them, on the compositor's output. It returns how
// long that took.
func (w *Wayland) WaitWindowShown(t testing.TB, name string, timeout time.Duration) time.Duration {
	t.Helper()
	RequireTools(t, "xwininfo", "xwd")
	x := w.X()
	t0 := time.Now()
	status := "not looked for yet"
	for time.Since(t0) < timeout {
		status = w.windowShown(x, name)
		if status == "" {
			return time.Since(t0)
		}
		time.Sleep(200 * time.Millisecond)
	}
	names, _ := x.WindowNames()
	t.Fatalf("window %q not shown on the Wayland desktop within %s: %s; windows on %s: %q", name, timeout, status, w.Display, names)
	return 0
}

// windowShown is "" if the window named name is shown, else what is not so.
func (w *Wayland) windowShown(x *Xvfb, name string) string {
	out, err := x.Command("xwininfo", "-name", name, "-children", "-stats").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("xwininfo -name %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	id, root, parent, state := xwinID.FindSubmatch(out), xwinRoot.FindSubmatch(out), xwinParent.FindSubmatch(out), xwinMap.FindSubmatch(out)
	if id == nil || root == nil || parent == nil || state == nil {
		return fmt.Sprintf("xwininfo printed no window id, parent or map state:\n%s", out)
	}
	if string(state[1]) != "IsViewable" {
		return fmt.Sprintf("window %s is %s", id[1], state[1])
	}
	if string(parent[1]) == string(root[1]) {
		return fmt.Sprintf("window %s is not managed by the compositor's window manager (its parent is the root)", id[1])
	}
	xwd, err := x.Command("xwd", "-id", string(id[1]), "-silent").Output()
	if err != nil {
		return fmt.Sprintf("xwd -id %s: %v", id[1], err)
	}
	win, err := decodeXWD(xwd)
	if err != nil {
		return err.Error()
	}
	shot, err := w.Screenshot()
	if err != nil {
		return err.Error()
	}
	if _, ok := findImage(shot, win); !ok {
		return fmt.Sprintf("the pixels of window %s (%dx%d) are not on the compositor's %dx%d output", id[1], win.Bounds().Dx(), win.Bounds().Dy(), shot.Bounds().Dx(), shot.Bounds().Dy())
	}
	return ""
}

// findImage finds small in big: where nearly all (99%) of its pixels
// match, each channel within a small tolerance.
func findImage(big, small *image.RGBA) (image.Point, bool) {
	sw, sh := small.Bounds().Dx(), small.Bounds().Dy()
	bw, bh := big.Bounds().Dx(), big.Bounds().Dy()
	if sw == 0 || sh == 0 || sw > bw || sh > bh {
		return image.Point{}, false
	}
	near := func(a, b color.RGBA) bool {
		d := func(x, y uint8) bool { return int(x)-int(y) < 16 && int(y)-int(x) < 16 }
		return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B)
	}
	budget := sw * sh / 100
	first := small.RGBAAt(small.Bounds().Min.X, small.Bounds().Min.Y)
	for y := 0; y+sh <= bh; y++ {
		for x := 0; x+sw <= bw; x++ {
			p := big.Bounds().Min.Add(image.Pt(x, y))
			if !near(big.RGBAAt(p.X, p.Y), first) {
				continue
			}
			miss := 0
			for j := 0; j < sh && miss <= budget; j++ {
				for i := 0; i < sw && miss <= budget; i++ {
					if !near(big.RGBAAt(p.X+i, p.Y+j), small.RGBAAt(small.Bounds().Min.X+i, small.Bounds().Min.Y+j)) {
						miss++
					}
				}
			}
			if miss <= budget {
				return p, true
			}
		}
	}
	return image.Point{}, false
}

// descendants maps the pids of pid's descendants to their comm (with its
// newline, as /proc has it).
func descendants(pid int) map[int]string {
	parent := map[int]int{}
	comm := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
		c, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		comm[p] = string(c)
	}
	out := map[int]string{}
	for p := range parent {
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				out[p] = comm[p]
				break
			}
		}
	}
	return out
}

// xauthEntry is one Xauthority entry (X11/Xauth.h's file format).
func xauthEntry(family uint16, address, number string, cookie []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, family)
	for _, f := range [][]byte{[]byte(address), []byte(number), []byte("MIT-MAGIC-COOKIE-1"), cookie} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// randomName is n random letters and digits, like mkstemp's XXXXXX.
func randomName(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
