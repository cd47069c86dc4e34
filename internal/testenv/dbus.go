package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// BusConn connects the test (root) to a session bus of SessionBus as the
// user uid, the only user that bus lets in, and closes the connection at
// cleanup.
//
// The socket is connected from a thread whose effective ids alone are
// switched to the user's for the connect and authentication (the kernel
// records the connecting thread's credentials, which dbus-daemon checks)
// and switched back before the thread is released.
func BusConn(t testing.TB, addr string, uid, gid int) *dbus.Conn {
	t.Helper()
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Raw syscalls change this thread only (syscall.Setresuid would
		// change every thread of the process). The real and saved ids
		// stay root's, so the effective ones can be switched back.
		keep := ^uintptr(0)
		setEffective := func(uid, gid int) error {
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, 0, keep); e != 0 {
				return e
			}
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keep, uintptr(gid), keep); e != 0 {
				return e
			}
			if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
				return e
			}
			return nil
		}
		var r result
		if r.err = setEffective(uid, gid); r.err == nil {
			r.conn, r.err = dbus.Dial(addr)
			if r.err == nil {
				if r.err = r.conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(uid))}); r.err == nil {
					r.err = r.conn.Hello()
				}
				if r.err != nil {
					r.conn.Close()
				}
			}
		}
		if err := setEffective(0, 0); err != nil {
			// Keep the thread locked: it ends with this goroutine (or,
			// the main thread, is parked for good) and runs nothing else.
			if r.conn != nil {
				r.conn.Close()
			}
			done <- result{err: fmt.Errorf("switching back to root: %v", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("connecting to the session bus %s as uid %d: %v", addr, uid, r.err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}

// WaitBusName waits until a well-known name has an owner on the bus.
func WaitBusName(t testing.TB, conn *dbus.Conn, name string, timeout time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	for {
		var has bool
		err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
		if err == nil && has {
			return time.Since(t0)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nobody owns %s on the session bus after %s (last error: %v)", name, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Bus is a private dbus-daemon the test started as its own user.
type Bus struct {
	Addr string
	cmd  *exec.Cmd
}

// PrivateBus starts a session-type dbus-daemon as the test's own user,
// stopped when the test ends (or earlier by Kill).
func PrivateBus(t testing.TB) *Bus {
	t.Helper()
	RequireTools(t, "dbus-daemon")
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1",
		"--address=unix:path="+filepath.Join(t.TempDir(), "bus"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	b := &Bus{cmd: cmd}
	t.Cleanup(b.Kill)
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the bus address from dbus-daemon: %v", err)
	}
	b.Addr = strings.TrimSpace(addr)
	return b
}

// Kill stops the bus at once, as when a session ends.
func (b *Bus) Kill() {
	if b.cmd.ProcessState == nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
	}
}
