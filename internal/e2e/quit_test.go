package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// exited waits up to within for the process pid to end (a zombie, not yet
// reaped by the test's cleanup, counts) and says how long it took.
func exited(t *testing.T, pid int, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// The state is the field after the command's closing parenthesis.
		if i := strings.LastIndexByte(string(b), ')'); err != nil || i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			t.Fatalf("process %d still runs %s after SIGTERM", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Quitting the host's daemon or desktop app (SIGTERM; the tray's Quit
// ends the same way, TestTrayInXfcePanel clicks it) ends its incoming
// session, stops the sandbox it ran within a few seconds and leaves no
// process in the sandbox's ids: `sandbox list` shows it stopped. A quit
// with no sandbox running says nothing of sandboxes and takes as long as
// before (issue 12).
func TestQuitStopsSandboxes(t *testing.T) {
	for _, mode := range []string{"daemon", "gui"} {
		t.Run(mode, func(t *testing.T) {
			b := newSoakBed(t, "") // the default idle stop: minutes, not the test's
			if mode == "gui" {
				// The bed's daemon goes (a quit with no sandbox ever
				// started); the desktop app serves instead.
				syscall.Kill(b.hostCmd, syscall.SIGTERM)
				exited(t, b.hostCmd, 10*time.Second)
				b.host.startDisplay(t, "LIBGL_ALWAYS_SOFTWARE=1")
				cmd, log := launchOnLoopback(t, b.host, "127.0.0.1:"+b.hostPort, "gui", "-v", "--show", "none")
				b.hostCmd, b.hostLog = cmd.Process.Pid, log
			}
			quitMidSession(t, b)
			if mode == "gui" {
				return
			}
			// Nothing running now (the sandbox exists, stopped): the quit
			// is as quick as before, and quiet about sandboxes.
			b.startHost(t)
			if err := syscall.Kill(b.hostCmd, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			took := exited(t, b.hostCmd, 10*time.Second)
			t.Logf("with no sandbox running the daemon quit %s after SIGTERM", took.Round(time.Millisecond))
			if took > 2*time.Second {
				t.Errorf("a quit with no sandbox running took %s", took.Round(time.Millisecond))
			}
			if log := readFile(b.hostLog); strings.Contains(log, "stopping the sandboxes") {
				t.Errorf("a quit with no sandbox running stopped sandboxes:\n%s", lastLines(log, 20))
			}
		})
	}
}

// quitMidSession launches xlogo with a folder on the bed's host, sends the
// host's process SIGTERM and checks that the session and the sandbox end.
func quitMidSession(t *testing.T, b *soakBed) {
	t.Helper()
	run := b.launch(t, true, false)
	for deadline := time.Now().Add(20 * time.Second); len(shareMountHolders()) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the folder's mount did not appear")
		}
	}
	if sandboxInit(b.subStart, b.subEnd) == 0 {
		t.Fatal("no sandbox init runs during the session")
	}
	if err := syscall.Kill(b.hostCmd, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := exited(t, b.hostCmd, 15*time.Second)
	t.Logf("the host quit %s after SIGTERM", took.Round(time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("quitting took %s: want a few seconds (the stop is bounded by 5 s)", took.Round(time.Millisecond))
	}
	log := readFile(b.hostLog)
	for _, want := range []string{"quitting: stopping the sandboxes", "at_most=5s", "quitting: the sandboxes stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("the host's log does not say %q:\n%s", want, lastLines(log, 20))
		}
	}
	select {
	case err := <-run.done:
		t.Logf("the requester's run ended: %v\n%s", err, run.out)
		if !strings.Contains(run.out.String(), "eBrainPool is quitting there") {
			t.Errorf("the requester is not told the host quit:\n%s", run.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the requester's run still runs 20 s after the host quit:\n%s", run.out)
	}
	b.req.x.WaitWindow(t, "xlogo", false, 10*time.Second)
	if pid := sandboxInit(b.subStart, b.subEnd); pid != 0 {
		t.Errorf("the sandbox's init %d still runs after the host quit", pid)
	}
	if left := testenv.PidsOfUIDs(b.subStart, b.subEnd-1); len(left) != 0 {
		var names []string
		for _, pid := range left {
			names = append(names, fmt.Sprintf("%d %s", pid, commOf(pid)))
		}
		t.Errorf("processes in the sandbox's ids after the host quit: %v", names)
	}
	waitNothingLeft(t, "after the host quit")
	list := b.host.u.MustRun(t, "sandbox", "list").Stdout
	if !strings.Contains(list, "STOPPED") || strings.Contains(list, "RUNNING") {
		t.Errorf("sandbox list after the quit:\n%s", list)
	}
	t.Logf("sandbox list after the quit:\n%s", list)
}

// lastLines is the end of s, n lines at most.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
