package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// SoakCyclesEnv sets how many session cycles TestSoakSessionCycles runs:
// a few by default (make test), 1,000 with `make soak`.
const SoakCyclesEnv = "EBP_SOAK_CYCLES"

const defaultSoakCycles = 20

// daemonStats asks a daemon for its process stats (SIGUSR1: it logs
// "process stats", see cli's logStatsOnSignal) and reads them from its log:
// goroutines, descriptors and the heap in use after a collection.
func daemonStats(t testing.TB, pid int, logPath string) (goroutines, fds, heapKiB, sysKiB, threads int) {
	t.Helper()
	re := regexp.MustCompile(`msg="process stats" goroutines=(\d+) fds=(\d+) heap_kib=(\d+) sys_kib=(\d+) threads=(\d+)`)
	before := len(re.FindAllStringSubmatch(readFile(logPath), -1))
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatalf("SIGUSR1 to daemon %d: %v", pid, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindAllStringSubmatch(readFile(logPath), -1); len(m) > before {
			g, _ := strconv.Atoi(m[len(m)-1][1])
			f, _ := strconv.Atoi(m[len(m)-1][2])
			h, _ := strconv.Atoi(m[len(m)-1][3])
			sys, _ := strconv.Atoi(m[len(m)-1][4])
			th, _ := strconv.Atoi(m[len(m)-1][5])
			return g, f, h, sys, th
		}
	}
	t.Fatalf("daemon %d logged no process stats after SIGUSR1", pid)
	return 0, 0, 0, 0, 0
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// userCgroups counts the cgroup directories below the user's directories
// that setup made (liblxc's reusable lxc.pivot excluded).
func userCgroups(user string) int {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/ebrainpool/" + user)
	if _, err := os.Stat("/sys/fs/cgroup/ebrainpool/" + user); err == nil {
		roots = append(roots, "/sys/fs/cgroup/ebrainpool/"+user)
	}
	n := 0
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != r && e.Name() != "lxc.pivot" {
				n++
			}
			return nil
		})
	}
	return n
}

// mountsOf counts the mounts in pid's mount namespace (-1: no such process).
func mountsOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return -1
	}
	return strings.Count(string(b), "\n")
}

// sandboxInit is the pid of the init (guest-init) of a sandbox whose ids
// are in [lo, hi), or 0.
func sandboxInit(lo, hi int) int {
	for _, pid := range testenv.PidsOfUIDs(lo, hi-1) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), "guest-init") {
			return pid
		}
	}
	return 0
}

// soakLevel is what a session cycle must give back.
type soakLevel struct {
	HostFDs, HostGoroutines int
	ReqFDs, ReqGoroutines   int
	HostProcs, ReqProcs     int // the desktop users' processes
	SandboxProcs            int // in the host user's subordinate range
	ShareMounts             int // processes with a share mount
	SandboxMounts           int // mounts in the sandbox init's namespace
	Cgroups                 int // below the host user's cgroup directories
	// Not compared: the heap in use (after a collection), what the Go
	// runtime holds, the threads and the RSS.
	HostHeapKiB, ReqHeapKiB int
	HostSysKiB, ReqSysKiB   int
	HostThreads, ReqThreads int
	HostRSSKiB, ReqRSSKiB   int
	// Of the RSS, the anonymous memory (heap, stacks, C allocations): the
	// rest is the binary's and libraries' pages, read in as code runs.
	HostAnonKiB, ReqAnonKiB int
}

// within reports whether l is back at base (RSS may differ).
func (l soakLevel) within(base soakLevel) bool {
	return l.HostFDs <= base.HostFDs && l.HostGoroutines <= base.HostGoroutines &&
		l.ReqFDs <= base.ReqFDs && l.ReqGoroutines <= base.ReqGoroutines &&
		l.HostProcs <= base.HostProcs && l.ReqProcs <= base.ReqProcs && l.SandboxProcs <= base.SandboxProcs &&
		l.ShareMounts <= base.ShareMounts && l.SandboxMounts <= base.SandboxMounts && l.Cgroups <= base.Cgroups
}

// rssKiB is the process's resident memory and, of it, the anonymous.
func rssKiB(pid int) (rss, anon int) {
	for _, line := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscan(v, &rss)
		} else if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			fmt.Sscan(v, &anon)
		}
	}
	return rss, anon
}

// soakBed is a host sharing xlogo and a requester with a display, on
// loopback, each daemon's process and log at hand.
type soakBed struct {
	host, req        *node
	hostCmd, reqCmd  int // pids
	hostLog, reqLog  string
	subStart, subEnd int // the host user's subordinate ids
	folder, hostPort string
	remembered       bool
}

func newSoakBed(t *testing.T, hostSettings string) *soakBed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xlogo", "xwininfo", "sshfs")
	b := &soakBed{host: newNode(t, true), req: newNode(t, false)}
	b.req.startDisplay(t)
	if hostSettings != "" {
		dir := filepath.Join(b.host.u.Home, ".config/ebrainpool")
		os.MkdirAll(dir, 0o700)
		if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(hostSettings), 0o600); err != nil {
			t.Fatal(err)
		}
		exec.Command("chown", "-R", b.host.u.Name+":", filepath.Join(b.host.u.Home, ".config")).Run()
	}
	shareApp(t, b.host, "xlogo", "X Logo", "xlogo")
	b.hostPort = strconv.Itoa(freeLoopbackPort(t))
	b.startHost(t)
	cmd, log := launchOnLoopback(t, b.req, "127.0.0.1:0", "daemon", "--log-level", "debug", "--peer", b.host.peerArg("bob"))
	b.reqCmd, b.reqLog = cmd.Process.Pid, log
	start, count := b.host.u.SubIDs(t)
	b.subStart, b.subEnd = start, start+count
	b.folder = writeAs(t, b.req.u, "soak/notes.txt", "soak\n", 0o644)
	b.folder = filepath.Dir(b.folder)
	return b
}

// startHost (re)starts the host's daemon on its fixed port.
func (b *soakBed) startHost(t *testing.T) {
	t.Helper()
	cmd, log := launchOnLoopback(t, b.host, "127.0.0.1:"+b.hostPort, "daemon", "--log-level", "debug")
	b.hostCmd, b.hostLog = cmd.Process.Pid, log
}

// launch starts xlogo on the host (with the folder if withFolder) and
// waits for its window; the first launch is allowed and remembered.
func (b *soakBed) launch(t *testing.T, withFolder, detach bool) *osProcess {
	t.Helper()
	args := []string{"run"}
	if detach {
		args = append(args, "--detach")
	}
	if withFolder {
		args = append(args, "--folder", b.folder)
	}
	run := b.req.u.Command(t.Context(), append(args, "bob", "xlogo")...)
	out := &strings.Builder{}
	run.Stdout, run.Stderr = out, out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	p := &osProcess{done: make(chan error, 1), out: out}
	go func() { p.done <- run.Wait() }()
	if !b.remembered {
		b.host.u.MustRun(t, "allow", "--remember", waitPending(t, b.host))
		b.remembered = true
	}
	if detach {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("run --detach: %v\n%s", err, out)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("run --detach did not return:\n%s", out)
		}
	}
	b.req.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	return p
}

type osProcess struct {
	done chan error
	out  *strings.Builder
}

// end ends the requester's only session and waits until neither side
// lists it.
func (b *soakBed) end(t *testing.T) {
	t.Helper()
	endOnlySession(t, b.req, "outgoing", "running")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, h := sessionIDs(t, b.req), sessionIDs(t, b.host)
		if len(r) == 0 && len(h) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still listed 15 s after the end: requester %v, host %v", r, h)
		}
	}
}

// level measures what the cycles must give back.
func (b *soakBed) level(t *testing.T) soakLevel {
	t.Helper()
	var l soakLevel
	l.HostGoroutines, l.HostFDs, l.HostHeapKiB, l.HostSysKiB, l.HostThreads = daemonStats(t, b.hostCmd, b.hostLog)
	l.ReqGoroutines, l.ReqFDs, l.ReqHeapKiB, l.ReqSysKiB, l.ReqThreads = daemonStats(t, b.reqCmd, b.reqLog)
	l.HostProcs = len(testenv.PidsOfUIDs(b.host.u.UID, b.host.u.UID))
	l.ReqProcs = len(testenv.PidsOfUIDs(b.req.u.UID, b.req.u.UID))
	l.SandboxProcs = len(testenv.PidsOfUIDs(b.subStart, b.subEnd-1))
	l.ShareMounts = len(shareMountHolders())
	l.SandboxMounts = mountsOf(sandboxInit(b.subStart, b.subEnd))
	l.Cgroups = userCgroups(b.host.u.Name)
	l.HostRSSKiB, l.HostAnonKiB = rssKiB(b.hostCmd)
	l.ReqRSSKiB, l.ReqAnonKiB = rssKiB(b.reqCmd)
	return l
}

// settle waits (up to 30 s) until the level is back at base and returns
// the last one measured.
func (b *soakBed) settle(t *testing.T, base soakLevel) (soakLevel, bool) {
	t.Helper()
	var l soakLevel
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		l = b.level(t)
		if l.within(base) || time.Now().After(deadline) {
			return l, l.within(base)
		}
	}
}

// steady is the level once two measurements half a second apart agree
// (RSS aside), or the last after 30 s.
func (b *soakBed) steady(t *testing.T) soakLevel {
	t.Helper()
	prev := b.level(t)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		l := b.level(t)
		if l.within(prev) && prev.within(l) {
			return l
		}
		prev = l
	}
	return prev
}

func soakCycles(t *testing.T) int {
	n := defaultSoakCycles
	if v := os.Getenv(SoakCyclesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of cycles", SoakCyclesEnv, v)
		}
	}
	return n
}

// Soak (issue 14): session cycles (launch, window, end; every other one
// brings a folder, so a share is mounted and unmounted) leave the host's
// and the requester's daemons with the descriptors and goroutines they
// had, and nothing behind: no process, mount or cgroup more than after
// the first cycle. EBP_SOAK_CYCLES=1000 (make soak) for the long run.
func TestSoakSessionCycles(t *testing.T) {
	cycles := soakCycles(t)
	b := newSoakBed(t, "")
	// The first cycle starts the sandbox and warms what stays (the
	// consent rule, the pin, the requester's connection state).
	b.launch(t, true, true)
	b.end(t)
	base := b.steady(t)
	t.Logf("baseline after the first cycle: %+v", base)

	var took []time.Duration
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		t0 := time.Now()
		t.Logf("cycle %d", i) // shown if it fails
		b.launch(t, i%2 == 1, true)
		b.end(t)
		took = append(took, time.Since(t0))
		if i%100 == 0 || i == cycles {
			l := b.level(t)
			t.Logf("after %d cycles (%s): %+v", i, time.Since(start).Round(time.Second), l)
		}
		if t.Failed() {
			t.Fatalf("cycle %d failed", i)
		}
	}
	end, ok := b.settle(t, base)
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d cycles in %s: cycle median %s, 95th percentile %s, slowest %s", cycles, time.Since(start).Round(time.Second),
		took[len(took)/2].Round(time.Millisecond), took[len(took)*95/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	js, _ := json.Marshal(map[string]soakLevel{"before": base, "after": end})
	t.Logf("levels: %s", js)
	if !ok {
		t.Errorf("not back to the level after the first cycle within 30 s:\n before %+v\n after  %+v", base, end)
	}
	if s := sessionIDs(t, b.host); len(s) != 0 {
		t.Errorf("the host still lists sessions: %v", s)
	}
}

// A host daemon killed mid-session (SIGKILL) takes the session with it:
// the requester's run ends, and the app, its endpoint, the mount of the
// folder it brought and the forward are gone without any daemon; the
// daemon started again adopts the sandbox left running and stops it once
// idle (its cgroups go with it); the next launch works.
func TestHostDaemonKilledMidSession(t *testing.T) {
	b := newSoakBed(t, `{"idle_stop": "3s"}`)
	cgroupsBefore := userCgroups(b.host.u.Name)
	run := b.launch(t, true, false)
	deadline := time.Now().Add(20 * time.Second)
	for len(shareMountHolders()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the folder's mount did not appear")
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := regexp.MustCompile(`msg="launch granted".* forward=(\S+)`).FindStringSubmatch(readFile(b.hostLog))
	if m == nil {
		t.Fatalf("no grant in the host's log:\n%s", readFile(b.hostLog))
	}
	forward := m[1]
	init := sandboxInit(b.subStart, b.subEnd)
	var session []int // the session's processes in the sandbox
	for _, pid := range testenv.PidsOfUIDs(b.subStart, b.subEnd-1) {
		if c := commOf(pid); c == "xlogo" || c == "sshfs" || strings.Contains(readFile(fmt.Sprintf("/proc/%d/cmdline", pid)), "guest-") && pid != init {
			session = append(session, pid)
		}
	}
	t.Logf("session processes: %v; forward %s; sandbox init %d", session, forward, init)
	if len(session) < 3 {
		t.Fatalf("session processes %v: want the app, its endpoint and sshfs", session)
	}

	if err := syscall.Kill(b.hostCmd, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case err := <-run.done:
		t.Logf("the requester's run ended %s after the kill: %v\n%s", time.Since(t0).Round(time.Millisecond), err, run.out)
	case <-time.After(20 * time.Second):
		t.Fatalf("the requester's run still runs 20 s after the host's daemon was killed:\n%s", run.out)
	}
	b.req.x.WaitWindow(t, "xlogo", false, 10*time.Second)
	waitNothingLeft(t, "after the host's daemon was killed")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var left []string
		for _, pid := range session {
			if syscall.Kill(pid, 0) == nil {
				left = append(left, fmt.Sprintf("%d %s", pid, commOf(pid)))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left of the session after the host's daemon was killed: %v", left)
		}
	}
	t.Logf("the session's processes and mount were gone %s after the kill", time.Since(t0).Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", forward, time.Second); err == nil {
		c.Close()
		t.Errorf("the forward %s still accepts connections", forward)
	}
	if sandboxInit(b.subStart, b.subEnd) != init {
		t.Fatal("the sandbox stopped without a daemon (expected it left running)")
	}

	// Started again, the daemon stops the sandbox once idle.
	b.startHost(t)
	t0 = time.Now()
	for deadline := time.Now().Add(40 * time.Second); sandboxInit(b.subStart, b.subEnd) != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox left running still runs 40 s after the daemon started again (idle stop 3 s):\n%s", readFile(b.hostLog))
		}
	}
	t.Logf("the restarted daemon stopped the sandbox left running after %s", time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(readFile(b.hostLog), "sandboxes left running by an earlier daemon") {
		t.Error("the restarted daemon did not log the sandbox it adopted")
	}
	for deadline := time.Now().Add(10 * time.Second); userCgroups(b.host.u.Name) > cgroupsBefore; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("cgroups: %d before the session, %d after the sandbox stopped", cgroupsBefore, userCgroups(b.host.u.Name))
			break
		}
	}
	if n := len(testenv.PidsOfUIDs(b.subStart, b.subEnd-1)); n != 0 {
		t.Errorf("%d processes in the sandbox's ids after it stopped", n)
	}

	// And it serves again (the rule remembered before the kill).
	b.launch(t, true, true)
	b.end(t)
}
