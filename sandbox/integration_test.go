package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

var binary string

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &binary)) }

// newUser is a fresh unprivileged user with setup done.
func newUser(t *testing.T) *testenv.User {
	t.Helper()
	testenv.RequireRoot(t)
	return testenv.NewUser(t, binary, true)
}

// sh runs a shell script in the peer's sandbox as the guest.
func sh(t *testing.T, u *testenv.User, peer, script string) testenv.Result {
	t.Helper()
	return u.Run(t, "sandbox", "exec", peer, "--", "/bin/sh", "-c", script)
}

// list is sandbox list --json.
func list(t *testing.T, u *testenv.User) []sandbox.Info {
	t.Helper()
	r := u.MustRun(t, "sandbox", "list", "--json")
	var list []sandbox.Info
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("sandbox list --json: %v\n%s", err, r.Stdout)
	}
	return list
}

func containerOf(t *testing.T, u *testenv.User, peer string) sandbox.Info {
	t.Helper()
	for _, i := range list(t, u) {
		if i.Peer == peer {
			return i
		}
	}
	t.Fatalf("peer %s not in sandbox list", peer)
	return sandbox.Info{}
}

// payloadDir is the container's cgroup directory for controller ctrl,
// wherever this host keeps it: below setup's per-user directories (cgroup
// v1 or v2 without systemd), or below the user's systemd manager.
func payloadDir(t *testing.T, u *testenv.User, name, ctrl string) string {
	t.Helper()
	for _, pat := range []string{
		filepath.Join("/sys/fs/cgroup", ctrl, "ebrainpool", u.Name, "lxc.payload."+name),
		filepath.Join("/sys/fs/cgroup/ebrainpool", u.Name, "lxc.payload."+name),
		fmt.Sprintf("/sys/fs/cgroup/user.slice/user-%d.slice/user@%d.service/app.slice/app-ebrainpool.slice/*/lxc.payload.%s", u.UID, u.UID, name),
	} {
		if m, _ := filepath.Glob(pat); len(m) == 1 {
			return m[0]
		}
	}
	t.Fatalf("no %s cgroup of container %s found", ctrl, name)
	return ""
}

func TestSandboxIsolation(t *testing.T) {
	u := newUser(t)
	if err := os.WriteFile(filepath.Join(u.Home, "secret.txt"), []byte("host user's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.MustRun(t, "sandbox", "start", "alice")

	t.Run("runs as the guest user", func(t *testing.T) {
		r := sh(t, u, "alice", "id -u; id -un; echo $HOME")
		if r.Code != 0 || r.Stdout != "1000\nguest\n/home/guest\n" {
			t.Fatalf("id inside: %s", r)
		}
	})
	t.Run("host processes see an unprivileged subordinate uid", func(t *testing.T) {
		start, count := u.SubIDs(t)
		// A process started inside, seen from the host while it runs.
		ctx, cancel := context.WithCancel(t.Context())
		cmd := u.Command(ctx, "sandbox", "exec", "alice", "--", "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		seen := 0
		for deadline := time.Now().Add(20 * time.Second); seen == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			for _, pid := range testenv.PidsOfUIDs(start, start+count-1) {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
					seen = pid
				}
			}
		}
		if seen == 0 {
			t.Fatalf("the sleep started inside does not run with a uid in %d..%d on the host", start, start+count-1)
		}
		syscall.Kill(seen, syscall.SIGKILL)
		if own := testenv.PidsOfUIDs(0, 0); len(own) == 0 {
			t.Fatal("cannot read /proc")
		}
	})
	t.Run("usr is read-only", func(t *testing.T) {
		r := sh(t, u, "alice", "touch /usr/ebp-write-test")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Fatalf("writing /usr inside: %s", r)
		}
		if _, err := os.Stat("/usr/ebp-write-test"); err == nil {
			os.Remove("/usr/ebp-write-test")
			t.Fatal("a file written inside appeared in the host's /usr")
		}
	})
	t.Run("host secrets are not visible", func(t *testing.T) {
		for _, p := range []string{u.Home + "/secret.txt", "/root", "/etc/ssh/ssh_host_ed25519_key", "/var/lib/ebrainpool"} {
			r := sh(t, u, "alice", "ls -la "+p+" && cat "+p)
			if r.Code == 0 {
				t.Errorf("%s is visible inside: %s", p, r)
			}
		}
		hostShadow, err := os.ReadFile("/etc/shadow")
		if err != nil {
			t.Fatal(err)
		}
		r := sh(t, u, "alice", "cat /etc/shadow")
		if r.Code == 0 && strings.Contains(r.Stdout, strings.SplitN(string(hostShadow), "\n", 2)[0]) {
			t.Fatalf("the host's /etc/shadow is readable inside: %s", r)
		}
		r = sh(t, u, "alice", "grep -c . /etc/passwd; grep "+u.Name+" /etc/passwd")
		if strings.Contains(r.Stdout, u.Name) {
			t.Fatalf("the host's passwd leaks into the container: %s", r)
		}
	})
	t.Run("only loopback, and it is up", func(t *testing.T) {
		r := sh(t, u, "alice", "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags")
		lines := strings.Fields(r.Stdout)
		if r.Code != 0 || len(lines) != 3 || lines[0] != "lo" || lines[2] != "0x9" {
			t.Fatalf("network devices inside (want only lo, flags 0x9 = UP|LOOPBACK): %s", r)
		}
	})
	t.Run("host addresses are unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var accepted atomic.Int32
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		targets := []string{"127.0.0.1"}
		if ip := hostAddress(); ip != "" {
			targets = append(targets, ip)
		}
		for _, ip := range targets {
			r := sh(t, u, "alice", fmt.Sprintf("timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d' && echo CONNECTED", ip, port))
			if strings.Contains(r.Stdout, "CONNECTED") {
				t.Errorf("connected from the sandbox to the host's %s:%d: %s", ip, port, r)
			}
		}
		if n := accepted.Load(); n != 0 {
			t.Fatalf("the host listener accepted %d connections from the sandbox", n)
		}
	})
	t.Run("no capabilities and no_new_privs", func(t *testing.T) {
		r := sh(t, u, "alice", "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status")
		if !strings.Contains(r.Stdout, "CapEff:\t0000000000000000") || !strings.Contains(r.Stdout, "NoNewPrivs:\t1") {
			t.Fatalf("guest privileges: %s", r)
		}
	})
}

// hostAddress is one of the host's own non-loopback IPv4 addresses, or "".
func hostAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

func TestSandboxLimits(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "--pids", "64", "--memory", "96M", "--cpus", "0.5", "bomb")
	info := containerOf(t, u, "bomb")
	cg := func(ctrl, file string) string {
		b, err := os.ReadFile(filepath.Join(payloadDir(t, u, info.Name, ctrl), file))
		if err != nil {
			t.Fatalf("reading the container's %s: %v", file, err)
		}
		return strings.TrimSpace(string(b))
	}
	_, v2 := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if got := cg("pids", "pids.max"); got != "64" {
		t.Fatalf("pids.max = %s, want 64", got)
	}

	t.Run("fork bomb stopped by the pids limit, host responsive", func(t *testing.T) {
		bomb := u.Command(t.Context(), "sandbox", "exec", "bomb", "--", "/bin/sh", "-c", "f() { f | f & }; f; sleep 20")
		if err := bomb.Start(); err != nil {
			t.Fatal(err)
		}
		defer bomb.Process.Kill()
		// Until the bomb hits the limit (seconds here, longer in the
		// emulated VM) and then 2 s more, the host must stay responsive.
		var worst time.Duration
		var hit time.Time
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) && (hit.IsZero() || time.Since(hit) < 2*time.Second) {
			t0 := time.Now()
			if err := exec.Command("/bin/true").Run(); err != nil {
				t.Fatalf("host cannot run /bin/true during the fork bomb: %v", err)
			}
			worst = max(worst, time.Since(t0))
			if hit.IsZero() && cg("pids", "pids.events") != "max 0" {
				hit = time.Now()
			}
			time.Sleep(100 * time.Millisecond)
		}
		events := cg("pids", "pids.events")
		cur, _ := strconv.Atoi(cg("pids", "pids.current"))
		t.Logf("pids.events: %s, pids.current: %d, slowest host /bin/true: %s", events, cur, worst)
		if !strings.HasPrefix(events, "max ") || events == "max 0" {
			t.Fatalf("the pids limit was never hit: pids.events %q", events)
		}
		if cur > 64 {
			t.Fatalf("pids.current %d exceeds the limit 64", cur)
		}
		if worst > 2*time.Second {
			t.Fatalf("host unresponsive during the fork bomb: /bin/true took %s", worst)
		}
		u.MustRun(t, "sandbox", "stop", "bomb")
		bomb.Wait()
		start, count := u.SubIDs(t)
		if left := testenv.PidsOfUIDs(start, start+count-1); len(left) > 0 {
			t.Fatalf("processes left after stop: %v", left)
		}
	})

	t.Run("memory hog stopped by the memory limit", func(t *testing.T) {
		u.MustRun(t, "sandbox", "start", "--pids", "64", "--memory", "96M", "bomb")
		r := sh(t, u, "bomb", "head -c 400M /dev/zero | tail; echo status=$?")
		var hits string
		var peak int64
		if v2 == nil {
			hits = cg("memory", "memory.events")
			peak, _ = strconv.ParseInt(cg("memory", "memory.peak"), 10, 64)
		} else {
			hits = "failcnt " + cg("memory", "memory.failcnt")
			peak, _ = strconv.ParseInt(cg("memory", "memory.max_usage_in_bytes"), 10, 64)
		}
		t.Logf("%s; %s, peak %d MiB", strings.TrimSpace(r.Stdout), strings.ReplaceAll(hits, "\n", ", "), peak>>20)
		if !strings.Contains(r.Stdout, "status=137") {
			t.Fatalf("the memory hog was not killed (want status=137): %s", r)
		}
		if peak > 96<<20 {
			t.Fatalf("peak memory %d exceeds the 96 MiB limit", peak)
		}
		if r := sh(t, u, "bomb", "echo alive"); r.Stdout != "alive\n" {
			t.Fatalf("the sandbox is unusable after the OOM kill: %s", r)
		}
	})

	t.Run("entering a sandbox at its pids limit says so", func(t *testing.T) {
		// Sleeps hold the slots (the loop's shell exits when a fork fails,
		// leaving one, which entering needs fewer than).
		before := cg("pids", "pids.events")
		flood := u.Command(t.Context(), "sandbox", "exec", "bomb", "--", "/bin/sh", "-c",
			"i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); done")
		if err := flood.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { flood.Process.Kill(); flood.Wait() }()
		for deadline := time.Now().Add(60 * time.Second); cg("pids", "pids.events") == before; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the flood did not reach the limit: pids.current %s", cg("pids", "pids.current"))
			}
		}
		r := u.Run(t, "sandbox", "exec", "bomb", "--", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "the sandbox is at its process limit (64 processes)") {
			t.Fatalf("entering the sandbox at its pids limit (pids.current %s): %s", cg("pids", "pids.current"), r)
		}
		t.Logf("said: %s", r.Stderr)
		u.MustRun(t, "sandbox", "stop", "bomb")
	})
}

func TestSandboxPeersSeparated(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "p1")
	u.MustRun(t, "sandbox", "start", "p2")
	if r := sh(t, u, "p1", "echo p1-private > ~/p1file; setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo started"); r.Code != 0 {
		t.Fatalf("p1: %s", r)
	}
	// The patterns are written so that the scripts' own command lines
	// cannot match them.
	r := sh(t, u, "p2", "ls -a ~; find / -xdev -name 'p1[f]ile' 2>/dev/null; true")
	if r.Code != 0 || strings.Contains(r.Stdout, "p1file") {
		t.Fatalf("p2 sees p1's file: %s", r)
	}
	r = sh(t, u, "p2", "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'slee[p] 300'; true")
	if strings.TrimSpace(r.Stdout) != "0" {
		t.Fatalf("p2 sees p1's process: %s", r)
	}
	if r := sh(t, u, "p1", "cat ~/p1file; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"); !strings.Contains(r.Stdout, "p1-private") || !strings.Contains(r.Stdout, "sleep 300") {
		t.Fatalf("p1 lost its own file or process: %s", r)
	}
	p1, p2 := containerOf(t, u, "p1"), containerOf(t, u, "p2")
	if p1.Name == p2.Name {
		t.Fatal("two peers share one container")
	}
	// CPU time is counted per sandbox: a busy loop in p1 shows in p1 only.
	before1, before2 := p1.CPU, p2.CPU
	if r := sh(t, u, "p1", "end=$(($(date +%s)+1)); while [ $(date +%s) -le $end ]; do :; done"); r.Code != 0 {
		t.Fatalf("busy loop: %s", r)
	}
	p1, p2 = containerOf(t, u, "p1"), containerOf(t, u, "p2")
	if p1.CPU-before1 < 500*time.Millisecond || p2.CPU-before2 > 200*time.Millisecond {
		t.Fatalf("CPU time after a busy second in p1: p1 %v -> %v, p2 %v -> %v", before1, p1.CPU, before2, p2.CPU)
	}
}

func TestSandboxResetAndExport(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "r")
	if r := sh(t, u, "r", "mkdir -p ~/docs && echo hello from r > ~/docs/a.txt"); r.Code != 0 {
		t.Fatalf("writing in the sandbox: %s", r)
	}
	dir, err := os.MkdirTemp("", "ebp-export-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chown(dir, u.UID, u.GID)
	out := filepath.Join(dir, "r-home.tar.gz")
	u.MustRun(t, "sandbox", "export", "r", out)
	list, err := exec.Command("tar", "-tzf", out).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "./docs/a.txt") {
		t.Fatalf("archive listing: %v\n%s", err, list)
	}
	content, err := exec.Command("tar", "-xzOf", out, "./docs/a.txt").Output()
	if err != nil || string(content) != "hello from r\n" {
		t.Fatalf("archived file content %q: %v", content, err)
	}

	u.MustRun(t, "sandbox", "reset", "r")
	r := sh(t, u, "r", "ls -A ~; test -e ~/docs/a.txt && echo STILL-THERE; id -un")
	if r.Code != 0 || strings.Contains(r.Stdout, "STILL-THERE") || strings.Contains(r.Stdout, "docs") || !strings.Contains(r.Stdout, "guest") {
		t.Fatalf("after reset: %s", r)
	}
	u.MustRun(t, "sandbox", "remove", "r")
	if r := u.MustRun(t, "sandbox", "list"); strings.Contains(r.Stdout, "\nr ") {
		t.Fatalf("removed sandbox still listed: %s", r.Stdout)
	}
}

func TestSandboxStopWhenIdle(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "idle")
	busy := u.Command(t.Context(), "sandbox", "exec", "idle", "--", "sleep", "3")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	// The program runs inside before the stop is asked for (under
	// emulation the exec itself can take seconds).
	start, count := u.SubIDs(t)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		running := false
		for _, pid := range testenv.PidsOfUIDs(start, start+count-1) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				running = true
			}
		}
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the program did not start inside within 30 s")
		}
	}
	t0 := time.Now()
	u.MustRun(t, "sandbox", "stop", "--when-idle", "1s", "idle")
	waited := time.Since(t0)
	if err := busy.Wait(); err != nil {
		t.Fatalf("the running program was disturbed: %v", err)
	}
	if waited < time.Second {
		t.Fatalf("stopped after %s, before the program had ended and 1s of idling passed", waited)
	}
	if st := containerOf(t, u, "idle").State; st != "STOPPED" {
		t.Fatalf("state after stop --when-idle: %s", st)
	}
}

func TestSandboxCyclesLeakNothing(t *testing.T) {
	// 50 cycles; 15 with -short (the run in the VM, under software
	// emulation, where each cycle takes seconds).
	cycles := 50
	if testing.Short() {
		cycles = 15
	}
	u := newUser(t)
	hostMounts := sandbox.SandboxMounts()
	r := u.MustRun(t, "sandbox", "bench", "--cycles", strconv.Itoa(cycles), "--warm", "1", "--json", "soak")
	var res sandbox.BenchResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("bench output: %v\n%s", err, r.Stdout)
	}
	if len(res.ColdStart) != cycles {
		t.Fatalf("ran %d cycles, want %d", len(res.ColdStart), cycles)
	}
	if res.FDsAfter != res.FDsBefore || res.MountsAfter != res.MountsBefore || res.CgroupsAfter != res.CgroupsBefore {
		t.Fatalf("leak after %d cycles: fds %d->%d, mounts %d->%d, cgroups %d->%d",
			cycles, res.FDsBefore, res.FDsAfter, res.MountsBefore, res.MountsAfter, res.CgroupsBefore, res.CgroupsAfter)
	}
	if got := sandbox.SandboxMounts(); got != hostMounts {
		t.Fatalf("host mount table changed: %d -> %d entries", hostMounts, got)
	}
	start, count := u.SubIDs(t)
	if left := testenv.PidsOfUIDs(start, start+count-1); len(left) > 0 {
		t.Fatalf("container processes left: %v", left)
	}
	t.Logf("%d cycles: cold start median %s, warm exec median %s", cycles, sandbox.Median(res.ColdStart), sandbox.Median(res.WarmExec))
}

func TestSandboxErrors(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("without setup the message names the fix", func(t *testing.T) {
		u := testenv.NewUser(t, binary, false)
		r := u.Run(t, "sandbox", "list")
		if r.Code == 0 || !strings.Contains(r.Stderr, "sudo ebrainpool setup --user "+u.Name) {
			t.Fatalf("want an error naming `sudo ebrainpool setup --user %s`: %s", u.Name, r)
		}
	})
	t.Run("setup as a normal user asks for root", func(t *testing.T) {
		u := testenv.NewUser(t, binary, false)
		r := u.Run(t, "setup", "--user", u.Name)
		if r.Code == 0 || !strings.Contains(r.Stderr, "needs root") {
			t.Fatalf("setup without root: %s", r)
		}
	})
	t.Run("a container that fails to start shows liblxc's errors", func(t *testing.T) {
		u := newUser(t)
		u.MustRun(t, "sandbox", "start", "broken")
		u.MustRun(t, "sandbox", "stop", "broken")
		info := containerOf(t, u, "broken")
		// Corrupt the container the way a stray tool could: its /run mount
		// point becomes a symlink, which liblxc refuses to mount over.
		run := filepath.Join("/var/lib/ebrainpool", u.Name, "containers", info.Name, "rootfs", "run")
		if err := os.RemoveAll(run); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/tmp", run); err != nil {
			t.Fatal(err)
		}
		r := u.Run(t, "sandbox", "start", "broken")
		if r.Code == 0 || !strings.Contains(r.Stderr, "liblxc said:") {
			t.Fatalf("want liblxc's own error lines: %s", r)
		}
		t.Logf("error shown: %s", r.Stderr)
	})
	t.Run("setup is idempotent and remove undoes it", func(t *testing.T) {
		u := testenv.NewUser(t, binary, true)
		before, _ := os.ReadFile("/etc/subuid")
		if out, err := exec.Command(binary, "setup", "--user", u.Name).CombinedOutput(); err != nil || !strings.Contains(string(out), "already") {
			t.Fatalf("second setup: %v\n%s", err, out)
		}
		after, _ := os.ReadFile("/etc/subuid")
		if string(before) != string(after) {
			t.Fatal("second setup changed /etc/subuid")
		}
		if out, err := exec.Command(binary, "setup", "--remove", "--user", u.Name).CombinedOutput(); err != nil {
			t.Fatalf("setup --remove: %v\n%s", err, out)
		}
		for _, p := range []string{"/var/lib/ebrainpool/" + u.Name, "/sys/fs/cgroup/pids/ebrainpool/" + u.Name} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s still exists after setup --remove", p)
			}
		}
	})
}

// hostFree is the free space of the host file system holding the sandboxes.
func hostFree(t *testing.T) int64 {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/var/lib/ebrainpool", &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * fs.Bsize
}

// homeImage is the host path of the peer's home image.
func homeImage(t *testing.T, u *testenv.User, peer string) string {
	t.Helper()
	return filepath.Join("/var/lib/ebrainpool", u.Name, "containers", containerOf(t, u, peer).Name, "rootfs/home/.ebp-store/home.img")
}

// dfHome is the size and free space of the guest's home as df shows them
// inside.
func dfHome(t *testing.T, u *testenv.User, peer string) (size, avail int64) {
	t.Helper()
	r := sh(t, u, peer, "df -B1 --output=size,avail,target ~ | tail -1")
	f := strings.Fields(r.Stdout)
	if r.Code != 0 || len(f) != 3 || f[2] != "/home/guest" {
		t.Fatalf("df inside: %s", r)
	}
	size, _ = strconv.ParseInt(f[0], 10, 64)
	avail, _ = strconv.ParseInt(f[1], 10, 64)
	return size, avail
}

// imageCleanlyUnmounted reads the ext4 superblock's state of a stopped
// sandbox's image (root reads it; the desktop user cannot).
func imageCleanlyUnmounted(t *testing.T, img string) bool {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 1024+56); err != nil {
		t.Fatal(err)
	}
	return b[0] == 0x53 && b[1] == 0xef && b[2]&1 == 1 && b[2]&2 == 0
}

// TestSandboxDiskLimit: the guest's home is all it can write to the host's
// disk, and it is as big as the limit: writing past it fails inside with
// ENOSPC while the host loses at most the limit; df inside shows it; the
// use shows in sandbox list; the data survives a stop; a reset frees it.
func TestSandboxDiskLimit(t *testing.T) {
	u := newUser(t)
	const limit = 128 << 20
	u.MustRun(t, "sandbox", "start", "--disk", "128M", "disk")
	if info := containerOf(t, u, "disk"); info.DiskLimit != limit || info.DiskBytes <= 0 || info.DiskBytes > 16<<20 {
		t.Fatalf("a fresh home: %d bytes used of %d, want a few MiB of %d", info.DiskBytes, info.DiskLimit, limit)
	}

	t.Run("df inside shows the limit", func(t *testing.T) {
		size, avail := dfHome(t, u, "disk")
		t.Logf("df inside: size %d, available %d (limit %d)", size, avail, limit)
		if size > limit || size < limit*9/10 || avail < limit*8/10 {
			t.Fatalf("df inside: size %d, available %d; want about %d", size, avail, limit)
		}
	})

	var written int64
	t.Run("writing past the limit fails with ENOSPC and the host loses at most the limit", func(t *testing.T) {
		before := hostFree(t)
		t0 := time.Now()
		r := sh(t, u, "disk", "dd if=/dev/zero of=$HOME/fill bs=1M count=256 conv=fsync; echo status=$?; stat -c %s $HOME/fill")
		took := time.Since(t0)
		lost := before - hostFree(t)
		if !strings.Contains(r.Stderr, "No space left on device") || strings.Contains(r.Stdout, "status=0") {
			t.Fatalf("dd past the limit: %s", r)
		}
		lines := strings.Fields(r.Stdout)
		written, _ = strconv.ParseInt(lines[len(lines)-1], 10, 64)
		info := containerOf(t, u, "disk")
		t.Logf("ENOSPC after %d bytes (%.0f%% of the limit) in %s, %.0f MB/s; the image takes %d bytes; the host's free space fell by %d bytes",
			written, 100*float64(written)/limit, took.Round(time.Millisecond), float64(written)/took.Seconds()/1e6, info.DiskBytes, lost)
		if written < limit*8/10 {
			t.Errorf("only %d bytes fit in a %d-byte home", written, limit)
		}
		if info.DiskBytes > limit || info.DiskBytes < written {
			t.Errorf("the image takes %d bytes, want between %d written and the limit %d", info.DiskBytes, written, limit)
		}
		// Other programs on this host may write meanwhile: some slack.
		if lost > limit+32<<20 {
			t.Errorf("the host's free space fell by %d bytes, more than the %d-byte limit", lost, limit)
		}
	})

	t.Run("the guest can write nothing else to the host's disk", func(t *testing.T) {
		for _, p := range []string{"/home/x", "/x", "/var/lib/x", "/etc/x", "/root/x", "/mnt/x", "/run/ebp-store/x"} {
			if r := sh(t, u, "disk", "echo x > "+p); r.Code == 0 {
				t.Errorf("the guest wrote %s: %s", p, r)
			}
		}
		if r := sh(t, u, "disk", "head -c 1 /run/ebp-store/home.img"); r.Code == 0 {
			t.Errorf("the guest reads its home's image: %s", r)
		}
		if r := sh(t, u, "disk", "ls -A /home"); r.Stdout != "guest\n" {
			t.Errorf("/home inside: %s", r)
		}
	})

	t.Run("sandbox list shows the use", func(t *testing.T) {
		r := u.MustRun(t, "sandbox", "list", "--json")
		var list []struct {
			Peer      string `json:"peer"`
			DiskBytes *int64 `json:"disk_bytes"`
			DiskLimit *int64 `json:"disk_limit_bytes"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list) != 1 || list[0].DiskBytes == nil || list[0].DiskLimit == nil {
			t.Fatalf("sandbox list --json: %v\n%s", err, r.Stdout)
		}
		if l := list[0]; *l.DiskBytes < written || *l.DiskLimit != limit {
			t.Fatalf("sandbox list --json: disk_bytes %d, disk_limit_bytes %d; want at least %d of %d", *l.DiskBytes, *l.DiskLimit, written, limit)
		}
		if r := u.MustRun(t, "sandbox", "list"); !strings.Contains(r.Stdout, "of 128 MiB") {
			t.Fatalf("sandbox list: %s", r.Stdout)
		}
	})

	t.Run("data survives stop and start", func(t *testing.T) {
		r := sh(t, u, "disk", "rm ~/fill && mkdir -p ~/d && head -c 8M /dev/urandom > ~/d/r && md5sum ~/d/r")
		if r.Code != 0 {
			t.Fatalf("writing: %s", r)
		}
		sum := strings.Fields(r.Stdout)[0]
		u.MustRun(t, "sandbox", "stop", "disk")
		if !imageCleanlyUnmounted(t, homeImage(t, u, "disk")) {
			t.Error("the home's file system was not cleanly unmounted by the stop")
		}
		u.MustRun(t, "sandbox", "start", "--disk", "128M", "disk")
		if r := sh(t, u, "disk", "md5sum ~/d/r"); r.Code != 0 || strings.Fields(r.Stdout)[0] != sum {
			t.Fatalf("after stop and start: %s (want %s)", r, sum)
		}
		if _, avail := dfHome(t, u, "disk"); avail < limit/2 {
			t.Errorf("the deleted file's space did not come back inside: %d available", avail)
		}
	})

	t.Run("reset frees it", func(t *testing.T) {
		img := homeImage(t, u, "disk")
		u.MustRun(t, "sandbox", "stop", "disk")
		u.MustRun(t, "sandbox", "reset", "disk")
		if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the home's image is still there after reset: %v", err)
		}
		if info := containerOf(t, u, "disk"); info.DiskBytes != 0 || info.DiskLimit != 0 {
			t.Fatalf("after reset: %d bytes of %d", info.DiskBytes, info.DiskLimit)
		}
		if r := sh(t, u, "disk", "ls -A ~"); r.Code != 0 || r.Stdout != "" {
			t.Fatalf("a fresh home after reset: %s", r)
		}
	})
}

// TestSandboxDiskLimitChanges: a larger limit grows the home, keeping its
// files; a smaller one keeps it as it is, and says so.
func TestSandboxDiskLimitChanges(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "--disk", "64M", "grow")
	if r := sh(t, u, "grow", "echo kept > ~/f"); r.Code != 0 {
		t.Fatal(r)
	}
	u.MustRun(t, "sandbox", "stop", "grow")
	u.MustRun(t, "sandbox", "start", "--disk", "96M", "grow")
	if size, _ := dfHome(t, u, "grow"); size < 90<<20 || size > 96<<20 {
		t.Fatalf("after growing to 96 MiB, df shows %d", size)
	}
	if r := sh(t, u, "grow", "cat ~/f"); r.Stdout != "kept\n" {
		t.Fatalf("the file after growing: %s", r)
	}
	u.MustRun(t, "sandbox", "stop", "grow")
	r := u.MustRun(t, "sandbox", "start", "--disk", "64M", "grow")
	if !strings.Contains(r.Stderr, "keeps its larger home until it is reset") {
		t.Errorf("no word that the home keeps its size: %s", r)
	}
	if size, _ := dfHome(t, u, "grow"); size < 90<<20 {
		t.Fatalf("a smaller limit shrank the home: df shows %d", size)
	}
	if info := containerOf(t, u, "grow"); info.DiskLimit != 96<<20 {
		t.Fatalf("sandbox list: limit %d, want the image's 96 MiB", info.DiskLimit)
	}

	// A home from before the storage limit (a directory in the rootfs,
	// the guest's) is hidden, and the start says it still takes room.
	u.MustRun(t, "sandbox", "stop", "grow")
	old := filepath.Join("/var/lib/ebrainpool", u.Name, "containers", containerOf(t, u, "grow").Name, "rootfs/home/guest")
	start, _ := u.SubIDs(t)
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(old, "old.txt"), []byte("before"), 0o600)
	for _, p := range []string{old, filepath.Join(old, "old.txt")} {
		os.Chown(p, start+1000, start+1000)
	}
	r = u.MustRun(t, "sandbox", "start", "grow")
	if !strings.Contains(r.Stderr, "home from before its storage limit is hidden now but still takes room on the host's disk: a reset frees it") {
		t.Errorf("no word on the old home: %s", r)
	}
	if r := sh(t, u, "grow", "cat ~/f; ls ~"); r.Stdout != "kept\nf\n" {
		t.Errorf("the home with an old one below: %s", r)
	}
}

// TestSandboxDiskLimitRefused: where the home cannot get its limit, the
// sandbox does not start (ErrNoLimits, with the cause and the fix) and
// nothing of it runs.
func TestSandboxDiskLimitRefused(t *testing.T) {
	u := newUser(t)
	nothingRuns := func(t *testing.T, peer string) {
		t.Helper()
		for _, i := range list(t, u) {
			if i.Peer == peer && i.State != "STOPPED" {
				t.Errorf("the sandbox is %s", i.State)
			}
		}
		// (Zombies do not run: those of earlier tests' containers, whose
		// subordinate ids this user got again, may wait for the host's
		// init to reap them.)
		start, count := u.SubIDs(t)
		var running []string
		for _, pid := range testenv.PidsOfUIDs(start, start+count-1) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if s := string(st); !strings.Contains(s, ") Z ") {
				running = append(running, s)
			}
		}
		if len(running) > 0 {
			t.Errorf("container processes run: %s", strings.Join(running, "; "))
		}
	}
	t.Run("/dev/fuse not usable by unprivileged users", func(t *testing.T) {
		mode := testenv.FuseMode(t)
		if err := os.Chmod("/dev/fuse", 0o600); err != nil {
			t.Fatal(err)
		}
		r := u.Run(t, "sandbox", "start", "nofuse")
		os.Chmod("/dev/fuse", mode)
		t.Logf("refused with: %s", r.Stderr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "this host cannot limit sandboxes: /dev/fuse is not usable by unprivileged users (mode 0600") ||
			!strings.Contains(r.Stderr, "fix: sudo chmod 0666 /dev/fuse") {
			t.Fatalf("want ErrNoLimits naming /dev/fuse and the fix: %s", r)
		}
		nothingRuns(t, "nofuse")
	})
	t.Run("a home damaged beyond repair", func(t *testing.T) {
		u.MustRun(t, "sandbox", "start", "--disk", "64M", "broken")
		u.MustRun(t, "sandbox", "stop", "broken")
		img := homeImage(t, u, "broken")
		if err := os.Truncate(img, 0); err != nil { // all zeros: no superblock anywhere
			t.Fatal(err)
		}
		os.Truncate(img, 64<<20)
		r := u.Run(t, "sandbox", "start", "--disk", "64M", "broken")
		t.Logf("refused with: %s", r.Stderr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "the home's file system is damaged") || !strings.Contains(r.Stderr, "reset the sandbox") {
			t.Fatalf("want the init's word on the damaged home: %s", r)
		}
		nothingRuns(t, "broken")
		u.MustRun(t, "sandbox", "reset", "broken")
		if r := sh(t, u, "broken", "echo fine > ~/f && cat ~/f"); r.Stdout != "fine\n" {
			t.Fatalf("after reset: %s", r)
		}
	})
}
