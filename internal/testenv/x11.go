package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Xvfb is a running virtual X server with cookie authentication.
type Xvfb struct {
	Display    string // ":N"
	XAuthority string
}

// StartXvfb starts Xvfb on a free display (no TCP) with a fresh cookie in
// an Xauthority file owned by uid (so that user's clients can connect) and
// stops it at cleanup.
func StartXvfb(t testing.TB, uid, gid int) *Xvfb {
	t.Helper()
	RequireTools(t, "Xvfb", "xauth", "xdpyinfo")
	dir, err := os.MkdirTemp("", "ebp-x-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	auth := filepath.Join(dir, "Xauthority")
	var cookie [16]byte
	rand.Read(cookie[:])
	for n := 50; n < 150; n++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		disp := fmt.Sprintf(":%d", n)
		os.Remove(auth)
		// A FamilyWild entry (any host name), as display managers write: the
		// clients may run in another UTS namespace (test-bed hosts).
		entry := fmt.Sprintf("ffff 0000 %04x %x 0012 4d49542d4d414749432d434f4f4b49452d31 0010 %s\n", len(strconv.Itoa(n)), strconv.Itoa(n), hex.EncodeToString(cookie[:]))
		merge := exec.Command("xauth", "-f", auth, "nmerge", "-")
		merge.Stdin = strings.NewReader(entry)
		if out, err := merge.CombinedOutput(); err != nil {
			t.Fatalf("xauth nmerge: %v\n%s", err, out)
		}
		os.Chown(auth, uid, gid)
		cmd := exec.Command("Xvfb", disp, "-nolisten", "tcp", "-auth", auth, "-screen", "0", "1024x768x24", "-noreset")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		x := &Xvfb{Display: disp, XAuthority: auth}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if x.Command("xdpyinfo").Run() == nil {
				t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
				return x
			}
			if cmd.ProcessState != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Fatal("could not start Xvfb on any display :50-:149")
	return nil
}

// Command runs an X client against the display.
func (x *Xvfb) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+x.Display, "XAUTHORITY="+x.XAuthority)
	return cmd
}

// WindowNames lists the names of the windows on the display.
func (x *Xvfb) WindowNames() ([]string, error) {
	out, err := x.Command("xwininfo", "-root", "-tree").Output()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, `"`); i >= 0 {
			if j := strings.Index(line[i+1:], `"`); j >= 0 {
				names = append(names, line[i+1:i+1+j])
			}
		}
	}
	return names, nil
}

// WaitWindow waits until a window named name is (or is no longer, if
// present is false) on the display.
func (x *Xvfb) WaitWindow(t testing.TB, name string, present bool, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < timeout {
		names, err := x.WindowNames()
		if err == nil {
			found := false
			for _, n := range names {
				found = found || n == name
			}
			if found == present {
				return time.Since(t0)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	names, _ := x.WindowNames()
	t.Fatalf("window %q present=%v not reached within %s; windows: %q", name, present, timeout, names)
	return 0
}

// SessionBus starts a private session dbus-daemon running as uid (D-Bus
// only lets the bus's own user connect) and returns its address.
func SessionBus(t testing.TB, uid, gid int) string {
	t.Helper()
	RequireTools(t, "dbus-daemon")
	dir, err := os.MkdirTemp("", "ebp-bus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chown(dir, uid, gid)
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1", "--address=unix:path="+filepath.Join(dir, "bus"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Dir = "/"
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lines <- l
	}()
	select {
	case l := <-lines:
		if l == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		return strings.TrimSpace(l)
	case <-ctx.Done():
		t.Fatal("dbus-daemon did not start")
	}
	return ""
}
