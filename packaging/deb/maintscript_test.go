package deb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The maintainer scripts' functions (maintscript.sh, inlined into postinst,
// prerm and postrm) run here against temporary directories, under set -e
// as in the scripts.

// record is a setup record as sandbox.Setup writes it (json.MarshalIndent
// of its setupRecord). Zero starts leave the range out (setup found one
// already).
func record(user string, uidStart, gidStart int, cgroups ...string) string {
	type idRange struct {
		Start uint32 `json:"start"`
		Count uint32 `json:"count"`
	}
	rec := struct {
		User       string   `json:"user"`
		AddedUIDs  *idRange `json:"added_subuids,omitempty"`
		AddedGIDs  *idRange `json:"added_subgids,omitempty"`
		CgroupDirs []string `json:"cgroup_dirs"`
	}{User: user, CgroupDirs: cgroups}
	if uidStart != 0 {
		rec.AddedUIDs = &idRange{uint32(uidStart), 65536}
	}
	if gidStart != 0 {
		rec.AddedGIDs = &idRange{uint32(gidStart), 65536}
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	return string(b)
}

// sh runs script after sourcing maintscript.sh, with set -e, and returns
// its output; a non-zero exit fails the test.
func sh(t *testing.T, script string, args ...string) string {
	t.Helper()
	lib, _ := filepath.Abs("maintscript.sh")
	cmd := exec.Command("sh", append([]string{"-c", "set -e; . \"$EBP_LIB\"; " + script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "EBP_LIB="+lib)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh -c %q %q: %v\n%s", script, args, err, out.String())
	}
	return out.String()
}

func TestDebMaintscriptParseRecord(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, rec, want string }{
		{"go", record("alice", 100000, 165536, "/sys/fs/cgroup/memory/ebrainpool/alice", "/sys/fs/cgroup/cpu,cpuacct/ebrainpool/alice"),
			"user alice\nsubuid 100000 65536\nsubgid 165536 65536\ncgroup /sys/fs/cgroup/memory/ebrainpool/alice\ncgroup /sys/fs/cgroup/cpu,cpuacct/ebrainpool/alice\n"},
		{"no ranges, no cgroups", record("bob", 0, 0), "user bob\n"},
		{"older record (Start/Count), trailing newline", `{
  "user": "carol",
  "added_subuids": {
    "Start": 200000,
    "Count": 65536
  },
  "cgroup_dirs": [
    "/sys/fs/cgroup/pids/ebrainpool/carol"
  ]
}
`, "user carol\nsubuid 200000 65536\ncgroup /sys/fs/cgroup/pids/ebrainpool/carol\n"},
		{"unreadable range", "{\n  \"user\": \"dave\",\n  \"added_subuids\": {\n    \"Start\": \"x\",\n    \"Count\": 65536\n  }\n}",
			"user dave\nebrainpool: warning: " + filepath.Join(dir, "unreadable range") + ": unreadable subuid range\n"},
	} {
		p := filepath.Join(dir, c.name)
		writeFile(t, p, c.rec)
		if got := sh(t, `ebp_parse_record "$1"`, p); got != c.want {
			t.Errorf("%s: parsed\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// purgeFixture is a fake system: state directory with records, subuid and
// subgid files, a cgroup tree of plain directories.
type purgeFixture struct {
	state, subuid, subgid, cg string
}

func newPurgeFixture(t *testing.T) *purgeFixture {
	d := t.TempDir()
	f := &purgeFixture{state: filepath.Join(d, "var/lib/ebrainpool"), subuid: filepath.Join(d, "etc/subuid"),
		subgid: filepath.Join(d, "etc/subgid"), cg: filepath.Join(d, "sys/fs/cgroup")}
	mkdir(t, f.state)
	mkdir(t, f.cg)
	return f
}

func (f *purgeFixture) purge(t *testing.T) string {
	t.Helper()
	return sh(t, `ebp_purge "$@"; echo purge returned $?`, f.state, f.subuid, f.subgid, f.cg)
}

func TestDebMaintscriptPurge(t *testing.T) {
	f := newPurgeFixture(t)
	others := "root:100000:65536\nalicex:165536:65536\n  bob:231072:65536\nalice:296608:65536\n"
	writeFile(t, f.subuid, others+"alice:362144:65536\n")
	writeFile(t, f.subgid, "alice:362144:65536\n"+others)
	os.Chmod(f.subuid, 0o640)
	alice := []string{filepath.Join(f.cg, "memory/ebrainpool/alice"), filepath.Join(f.cg, "cpu,cpuacct/ebrainpool/alice")}
	for _, d := range alice {
		mkdir(t, filepath.Join(d, "lxc.payload.ebp-0011223344556677/init.scope"))
		mkdir(t, filepath.Join(d, "lxc.monitor.ebp-0011223344556677"))
	}
	// Another user's cgroup in the same base stays, and so does the base.
	mkdir(t, filepath.Join(f.cg, "memory/ebrainpool/bob"))
	// A record cannot make the purge touch directories outside the
	// cgroup tree.
	outside := filepath.Join(filepath.Dir(f.cg), "outside")
	mkdir(t, outside)
	writeFile(t, filepath.Join(f.state, ".setup-alice.json"), record("alice", 362144, 362144, append(alice, outside, f.cg+"/../../outside")...))
	mkdir(t, filepath.Join(f.state, "alice/containers/ebp-0011223344556677/rootfs/home/guest"))
	writeFile(t, filepath.Join(f.state, "alice/containers/ebp-0011223344556677/rootfs/home/guest/x"), "x")

	out := f.purge(t)
	if !strings.Contains(out, "purge returned 0") || !strings.Contains(out, "removed the setup of alice") {
		t.Errorf("purge said:\n%s", out)
	}
	if got := readFile(t, f.subuid); got != others {
		t.Errorf("subuid after purge:\n%s\nwant only the recorded line gone:\n%s", got, others)
	}
	if got := readFile(t, f.subgid); got != others {
		t.Errorf("subgid after purge:\n%s\nwant\n%s", got, others)
	}
	if st, _ := os.Stat(f.subuid); st.Mode().Perm() != 0o640 {
		t.Errorf("subuid mode changed to %v", st.Mode().Perm())
	}
	for _, d := range alice {
		if fileExists(d) {
			t.Errorf("%s left", d)
		}
	}
	if fileExists(filepath.Join(f.cg, "cpu,cpuacct/ebrainpool")) {
		t.Error("empty cpu,cpuacct/ebrainpool base left")
	}
	if !fileExists(filepath.Join(f.cg, "memory/ebrainpool/bob")) {
		t.Error("another user's cgroup removed")
	}
	if !fileExists(outside) {
		t.Error("a directory outside the cgroup tree was removed")
	}
	if fileExists(f.state) {
		t.Errorf("%s left", f.state)
	}
}

func TestDebMaintscriptPurgeNoRanges(t *testing.T) {
	f := newPurgeFixture(t)
	content := "alice:100000:65536\nbob:165536:65536\n"
	writeFile(t, f.subuid, content)
	writeFile(t, f.subgid, content)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(f.subuid, old, old)
	os.Chtimes(f.subgid, old, old)
	// Setup used alice's existing ranges: it added none.
	writeFile(t, filepath.Join(f.state, ".setup-alice.json"), record("alice", 0, 0))
	mkdir(t, filepath.Join(f.state, "alice/containers"))
	f.purge(t)
	for _, p := range []string{f.subuid, f.subgid} {
		st, err := os.Stat(p)
		if got := readFile(t, p); got != content || err != nil || !st.ModTime().Equal(old) {
			t.Errorf("%s changed (mtime %v): %q", p, st.ModTime(), got)
		}
	}
	if fileExists(f.state) {
		t.Errorf("%s left", f.state)
	}
}

func TestDebMaintscriptPurgeNothingSetUp(t *testing.T) {
	f := newPurgeFixture(t)
	writeFile(t, f.subuid, "alice:100000:65536\n")
	if out := f.purge(t); strings.Contains(out, "removed the setup") {
		t.Errorf("purge without records said:\n%s", out)
	}
	if got := readFile(t, f.subuid); got != "alice:100000:65536\n" {
		t.Errorf("subuid changed: %q", got)
	}
	os.RemoveAll(f.state)
	f.purge(t) // no state directory at all
}

// TestDebMaintscriptPurgeKills: processes in the user's sandbox cgroups are
// killed, in the recorded directories and wherever LXC made cgroups for
// our containers in a cgroup the user owns (a systemd user scope); others'
// are not. The cgroup tree is a plain directory tree here (the real one:
// TestDebPurgeRealCgroups).
func TestDebMaintscriptPurgeKills(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f := newPurgeFixture(t)
	scope := filepath.Join(f.cg, "unified/user.slice/user-1.slice/user@1.service/app.slice/ebp.scope")
	mine := filepath.Join(scope, "lxc.payload.ebp-aaaaaaaaaaaaaaaa")
	monitor := filepath.Join(scope, "lxc.monitor.ebp-aaaaaaaaaaaaaaaa")
	notOurs := filepath.Join(scope, "lxc.payload.other")
	for _, d := range []string{mine + "/init.scope", monitor, notOurs} {
		mkdir(t, d)
	}
	kill1, kill2, kill3, keep := sleeper(t), sleeper(t), sleeper(t), sleeper(t)
	writeFile(t, filepath.Join(mine, "cgroup.procs"), fmt.Sprintf("%d\n", kill1.Process.Pid))
	writeFile(t, filepath.Join(mine, "init.scope/cgroup.procs"), fmt.Sprintf("%d\n", kill2.Process.Pid))
	writeFile(t, filepath.Join(monitor, "cgroup.procs"), fmt.Sprintf("%d\n", kill3.Process.Pid))
	writeFile(t, filepath.Join(notOurs, "cgroup.procs"), fmt.Sprintf("%d\n", keep.Process.Pid))
	if os.Geteuid() == 0 {
		// As root, also one of our containers in a cgroup of another user.
		other := filepath.Join(f.cg, "unified/user.slice/user-2.slice/lxc.payload.ebp-bbbbbbbbbbbbbbbb")
		mkdir(t, other)
		os.Chown(other, 65534, 65534)
		os.Chown(filepath.Dir(other), 65534, 65534)
		writeFile(t, filepath.Join(other, "cgroup.procs"), fmt.Sprintf("%d\n", keep.Process.Pid))
	}
	writeFile(t, filepath.Join(f.state, ".setup-"+me.Username+".json"), record(me.Username, 0, 0))
	f.purge(t)
	for _, c := range []*proc{kill1, kill2, kill3} {
		if !killed(c) {
			t.Errorf("sandbox process %d was not killed", c.Process.Pid)
		}
	}
	if !survived(keep) {
		t.Error("a process outside the user's sandbox cgroups was killed")
	}
}

// proc is a process that lives until killed (or the test ends).
type proc struct {
	*exec.Cmd
	done chan struct{}
}

func sleeper(t *testing.T) *proc {
	t.Helper()
	p := &proc{Cmd: exec.Command("sleep", "600"), done: make(chan struct{})}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Process.Kill(); <-p.done })
	return p
}

// killed reports whether p died of SIGKILL within a few seconds.
func killed(p *proc) bool {
	select {
	case <-p.done:
		ws, ok := p.ProcessState.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	case <-time.After(3 * time.Second):
		return false
	}
}

// survived reports whether p still runs (a kill, sent before, has had time
// to land).
func survived(p *proc) bool {
	select {
	case <-p.done:
		return false
	case <-time.After(200 * time.Millisecond):
		return true
	}
}

// TestDebPurgeRealCgroups runs the purge on the real cgroup tree: sandbox
// processes moved into cgroups named as LXC names ours, below the user's
// recorded directory and below a cgroup the user owns, are killed and the
// recorded directories removed; a process in another user's cgroup lives.
func TestDebPurgeRealCgroups(t *testing.T) {
	testenv.RequireRoot(t)
	h := writableHierarchy(t)
	name := fmt.Sprintf("ebpdeb%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)

	top := filepath.Join(h, "ebp-debtest-"+strconv.Itoa(os.Getpid()))
	recorded := filepath.Join(top, "ebrainpool", name)
	payload := filepath.Join(recorded, "lxc.payload.ebp-1111111111111111")
	scope := filepath.Join(top, "scope")
	monitor := filepath.Join(scope, "lxc.monitor.ebp-2222222222222222")
	foreign := filepath.Join(top, "foreign/lxc.payload.ebp-3333333333333333")
	t.Cleanup(func() {
		// Whatever is left, deepest first (rmdir only: it is cgroupfs).
		out, _ := exec.Command("find", top, "-depth", "-type", "d").Output()
		for _, d := range strings.Fields(string(out)) {
			for i := 0; i < 50 && syscall.Rmdir(d) != nil && fileExists(d); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	for _, d := range []string{payload, monitor, foreign} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(recorded, uid, uid)
	os.Chown(scope, uid, uid)
	inPayload, inMonitor, inForeign := sleeper(t), sleeper(t), sleeper(t)
	for c, d := range map[*proc]string{inPayload: payload, inMonitor: monitor, inForeign: foreign} {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)), 0); err != nil {
			t.Fatalf("moving %d into %s: %v", c.Process.Pid, d, err)
		}
	}
	f := newPurgeFixture(t)
	f.cg = "/sys/fs/cgroup"
	writeFile(t, filepath.Join(f.state, ".setup-"+name+".json"), record(name, 0, 0, recorded))
	out := f.purge(t)
	t.Logf("purge: %s", out)
	if !killed(inPayload) || !killed(inMonitor) {
		t.Errorf("sandbox processes not killed (payload %v, monitor %v)", killed(inPayload), killed(inMonitor))
	}
	if !survived(inForeign) {
		t.Error("a process in another user's container cgroup was killed")
	}
	if fileExists(recorded) || fileExists(filepath.Dir(recorded)) {
		t.Errorf("%s (or its ebrainpool parent) left", recorded)
	}
	if !fileExists(foreign) {
		t.Error("another user's cgroup removed")
	}
}

// writableHierarchy is a cgroup hierarchy to make test cgroups in: the
// unified one on a cgroup v2 host, else the v1 pids (or memory) one.
func writableHierarchy(t *testing.T) string {
	t.Helper()
	for _, h := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"} {
		if fileExists(filepath.Join(h, "cgroup.procs")) {
			return h
		}
	}
	testenv.Skip(t, "no cgroup hierarchy mounted at /sys/fs/cgroup")
	return ""
}

func TestDebMaintscriptAppArmor(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	mkdir(t, bin)
	log := filepath.Join(dir, "parser.log")
	// A stand-in apparmor_parser that logs its arguments; AppArmor counts as
	// enabled (the function is redefined after sourcing).
	writeFile(t, filepath.Join(bin, "apparmor_parser"), "#!/bin/sh\necho \"$*\" >>"+log+"\n")
	os.Chmod(filepath.Join(bin, "apparmor_parser"), 0o755)
	etc := filepath.Join(dir, "etc/apparmor.d")
	cache := filepath.Join(dir, "cache")
	mkdir(t, etc)
	mkdir(t, filepath.Join(cache, "deadbeef.0"))
	src, _ := filepath.Abs("apparmor/ebrainpool")
	sum := sha256File(t, src)
	dst := filepath.Join(etc, "ebrainpool")
	run := func(script string, args ...string) string {
		t.Helper()
		return sh(t, "PATH=\""+bin+":$PATH\"; ebp_apparmor_enabled() { return 0; }; "+script, args...)
	}

	// No ABI 4.0 (Debian 12): nothing installed or loaded.
	run(`ebp_apparmor_install "$1" "$2"`, src, etc)
	if fileExists(dst) || fileExists(log) {
		t.Fatal("profile installed or loaded without /etc/apparmor.d/abi/4.0")
	}
	// ABI 4.0 (Ubuntu 23.10+): copied and loaded.
	mkdir(t, filepath.Join(etc, "abi/4.0"))
	run(`ebp_apparmor_install "$1" "$2"`, src, etc)
	if readFile(t, dst) != readFile(t, src) {
		t.Error("profile not copied")
	}
	if got := readFile(t, log); got != "-r -W "+dst+"\n" {
		t.Errorf("apparmor_parser called with %q", got)
	}
	// A parser that fails does not fail the install.
	writeFile(t, filepath.Join(bin, "apparmor_parser"), "#!/bin/sh\necho \"$*\" >>"+log+"\nexit 1\n")
	if out := run(`ebp_apparmor_install "$1" "$2"; echo ok`, src, etc); !strings.Contains(out, "warning: could not load") || !strings.Contains(out, "ok") {
		t.Errorf("a failing apparmor_parser: %s", out)
	}
	os.Remove(log)

	// Remove: unloaded and deleted with its cache when unchanged.
	writeFile(t, filepath.Join(cache, "deadbeef.0/ebrainpool"), "compiled")
	run(`ebp_apparmor_remove remove "$1" "$2" "$3"`, dst, sum, cache)
	if fileExists(dst) || fileExists(filepath.Join(cache, "deadbeef.0/ebrainpool")) {
		t.Error("unchanged profile (or its cache) left after remove")
	}
	if got := readFile(t, log); got != "-R "+dst+"\n" {
		t.Errorf("apparmor_parser called with %q", got)
	}
	// Changed locally: kept on remove, deleted on purge.
	writeFile(t, dst, readFile(t, src)+"# local\n")
	run(`ebp_apparmor_remove remove "$1" "$2" "$3"`, dst, sum, cache)
	if !fileExists(dst) {
		t.Error("locally changed profile deleted on remove")
	}
	run(`ebp_apparmor_remove purge "$1" "$2" "$3"`, dst, sum, cache)
	if fileExists(dst) {
		t.Error("profile left after purge")
	}
	run(`ebp_apparmor_remove purge "$1" "$2" "$3"`, dst, sum, cache) // nothing there: fine
}

func TestDebMaintscriptUsers(t *testing.T) {
	dir := t.TempDir()
	if got := sh(t, `ebp_setup_users "$1"`, dir); got != "" {
		t.Errorf("no records: %q", got)
	}
	writeFile(t, filepath.Join(dir, ".setup-alice.json"), record("alice", 0, 0))
	writeFile(t, filepath.Join(dir, ".setup-bob.json"), record("bob", 0, 0))
	mkdir(t, filepath.Join(dir, "alice"))
	if got := sh(t, `ebp_setup_users "$1"`, dir); got != "alice\nbob\n" {
		t.Errorf("users: %q", got)
	}
	if got := sh(t, `ebp_setup_users "$1"`, filepath.Join(dir, "missing")); got != "" {
		t.Errorf("missing directory: %q", got)
	}
}

// TestDebPurgeRealSandbox: a user set up by `ebrainpool setup` (which adds
// its subordinate ids: a system user gets none from useradd) with a running
// sandbox, a real unprivileged LXC container. The purge, given that user's
// record as setup wrote it, kills the container and its LXC monitor,
// removes the cgroup directories setup made and exactly the id lines it
// added. The state directory and id files are copies: the real ones are
// left to `setup --remove` at the end.
func TestDebPurgeRealSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "useradd", "userdel", "newuidmap", "runuser")
	// The sandbox has a FUSE home.
	testenv.RequireFuse(t)
	bin, cleanup, err := testenv.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	var name string
	var uid int
	if testenv.SystemdHost() {
		// The sandbox starts through the user's systemd manager, which
		// testenv's users have; useradd gave it id ranges already.
		u := testenv.NewUser(t, bin, true)
		name, uid = u.Name, u.UID
		u.MustRun(t, "sandbox", "start", "purge-test-peer")
	} else {
		name = fmt.Sprintf("ebpdebs%d", os.Getpid()%100000)
		home := "/home/" + name
		if out, err := exec.Command("useradd", "--system", "--create-home", "--home-dir", home, "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command(bin, "setup", "--remove", "--user", name).CombinedOutput(); err != nil {
				t.Errorf("setup --remove: %v\n%s", err, out)
			}
			exec.Command("userdel", "-r", name).Run()
		})
		if out, err := exec.Command(bin, "setup", "--user", name).CombinedOutput(); err != nil || !strings.Contains(string(out), "added") {
			t.Fatalf("setup (adding id ranges): %v\n%s", err, out)
		}
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		start := exec.Command("runuser", "-u", name, "--", bin, "sandbox", "start", "purge-test-peer")
		start.Dir, start.Env = "/", []string{"HOME=" + home, "PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
		if out, err := start.CombinedOutput(); err != nil {
			t.Fatalf("sandbox start: %v\n%s", err, out)
		}
	}
	rec := readFile(t, "/var/lib/ebrainpool/.setup-"+name+".json")
	var parsed struct {
		UIDs       struct{ Start, Count int } `json:"added_subuids"`
		GIDs       struct{ Start, Count int } `json:"added_subgids"`
		CgroupDirs []string                   `json:"cgroup_dirs"`
	}
	if err := json.Unmarshal([]byte(rec), &parsed); err != nil {
		t.Fatalf("setup's record: %v\n%s", err, rec)
	}
	added := parsed.UIDs.Count > 0 && parsed.GIDs.Count > 0
	if !added && !testenv.SystemdHost() {
		t.Fatalf("setup's record has no added ranges:\n%s", rec)
	}
	first, n := parsed.UIDs.Start, parsed.UIDs.Count
	if !added {
		first, n = subIDs(t, name)
	}
	sub := func() []int { return testenv.PidsOfUIDs(first, first+n-1) }
	if len(sub()) == 0 || len(testenv.PidsOfUIDs(uid, uid)) == 0 {
		t.Fatalf("after sandbox start: container processes %v, LXC monitor %v", sub(), testenv.PidsOfUIDs(uid, uid))
	}

	f := newPurgeFixture(t)
	f.cg = "/sys/fs/cgroup"
	writeFile(t, filepath.Join(f.state, ".setup-"+name+".json"), rec)
	subuid, subgid := readFile(t, "/etc/subuid"), readFile(t, "/etc/subgid")
	writeFile(t, f.subuid, subuid)
	writeFile(t, f.subgid, subgid)
	t.Logf("purge: %s", f.purge(t))
	deadline := time.Now().Add(5 * time.Second)
	for len(sub())+len(testenv.PidsOfUIDs(uid, uid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still running after the purge: container %v, user %v", sub(), testenv.PidsOfUIDs(uid, uid))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range parsed.CgroupDirs {
		if fileExists(d) {
			t.Errorf("cgroup %s left after the purge", d)
		}
	}
	if !added {
		return
	}
	for _, c := range []struct {
		file, before string
		start, count int
	}{{f.subuid, subuid, parsed.UIDs.Start, parsed.UIDs.Count}, {f.subgid, subgid, parsed.GIDs.Start, parsed.GIDs.Count}} {
		line := fmt.Sprintf("%s:%d:%d\n", name, c.start, c.count)
		if got, want := readFile(t, c.file), strings.Replace(c.before, line, "", 1); got != want || !strings.Contains(c.before, line) {
			t.Errorf("%s after the purge:\n%s\nwant only %q gone from:\n%s", c.file, got, line, c.before)
		}
	}
}

// subIDs is user's first subordinate uid range in /etc/subuid.
func subIDs(t *testing.T, user string) (start, count int) {
	t.Helper()
	for _, l := range strings.Split(readFile(t, "/etc/subuid"), "\n") {
		if f := strings.Split(l, ":"); len(f) == 3 && f[0] == user {
			start, _ = strconv.Atoi(f[1])
			count, _ = strconv.Atoi(f[2])
			return start, count
		}
	}
	t.Fatalf("%s has no subordinate uids", user)
	return 0, 0
}
