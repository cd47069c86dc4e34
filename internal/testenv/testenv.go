// Package testenv holds helpers for tests that use real system components:
// the root check (nothing skips under CI=true), building the ebrainpool
// binary where unprivileged users and containers can run it, and throwaway
// unprivileged users with the one-time setup done.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with a printed reason, or fails it under CI=true.
func Skip(t testing.TB, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if InCI() {
		t.Fatalf("cannot run under CI=true: %s", msg)
	}
	t.Skipf("skipping: %s", msg)
}

// RequireRoot skips (or fails under CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (user namespaces, cgroups, test users)")
	}
}

// RequireTools skips (or fails under CI) unless every tool is on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(t, "%s is not installed (make test installs it)", tool)
		}
	}
}

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildBinary builds ./ebrainpool into a fresh world-readable directory
// (containers bind-mount it, so their unprivileged root must reach it) and
// returns its path and a cleanup function. Where EBRAINPOOL_BIN names an
// installed binary (the systemd VM runs the tests against the .deb's), that
// one is used instead.
func BuildBinary() (string, func(), error) {
	if bin := os.Getenv("EBRAINPOOL_BIN"); bin != "" {
		return bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "ebp-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	bin := filepath.Join(dir, "ebrainpool")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, cleanup, nil
}

// Main runs a test package whose tests drive the ebrainpool binary: as
// root it builds the binary first (into *bin) and removes it afterwards.
// Use it as `func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &binary)) }`.
func Main(m *testing.M, bin *string) int {
	if os.Geteuid() == 0 {
		b, cleanup, err := BuildBinary()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		*bin = b
	}
	return m.Run()
}

// User is a throwaway unprivileged user.
type User struct {
	Name     string
	UID, GID int
	Home     string
	Bin      string   // the ebrainpool binary
	Env      []string // extra environment for its commands (see With)
	// Launcher, if set, runs ebrainpool instead of Bin (e.g. flatpak run
	// APP-ID): see Via.
	Launcher []string
}

// Via returns the user with ebrainpool started by launcher (its arguments
// follow), e.g. flatpak run io.github.ebrainpool.EBrainPool.
func (u *User) Via(launcher ...string) *User {
	c := *u
	c.Launcher = launcher
	return &c
}

// With returns the user with extra environment variables for its commands.
func (u *User) With(env ...string) *User {
	c := *u
	c.Env = append(append([]string(nil), u.Env...), env...)
	return &c
}

// NewUser creates an unprivileged user with a home directory and, if setup
// is true, runs `ebrainpool setup --user` for it. Everything is undone in
// t.Cleanup: the user's containers and processes, the setup, the user.
func NewUser(t testing.TB, bin string, setup bool) *User {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "useradd", "userdel", "newuidmap", "lxc-start")
	var b [3]byte
	rand.Read(b[:])
	name := "ebpt" + hex.EncodeToString(b[:])
	// A uid of its own: useradd would hand the last deleted user's uid to
	// the next, and on systemd hosts logind's delayed stop of that uid's
	// user manager would then hit the new user's.
	uid := 20000 + int(b[0])<<8 | int(b[1])
	for {
		if _, err := user.LookupId(strconv.Itoa(uid)); err != nil {
			break
		}
		uid++
	}
	if out, err := shadowTool("useradd", "-m", "-U", "-u", strconv.Itoa(uid), "-s", "/bin/sh", name); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	u := &User{Name: name, Bin: bin}
	t.Cleanup(func() { u.remove(t) })
	lu, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	u.UID, _ = strconv.Atoi(lu.Uid)
	u.GID, _ = strconv.Atoi(lu.Gid)
	u.Home = lu.HomeDir
	if SystemdHost() {
		// As on a desktop: the user has a systemd user manager.
		u.startUserManager(t)
	}
	if setup {
		// Its sandboxes' homes are FUSE file systems.
		RequireFuse(t)
		cmd := exec.Command(bin, "setup", "--user", name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ebrainpool setup --user %s: %v\n%s", name, err, out)
		}
	}
	return u
}

// SystemdHost reports whether systemd is the init system here (the VM test
// bed); the development machines and CI hosts have none.
func SystemdHost() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// RuntimeDir is the user's XDG runtime directory on a systemd host.
func (u *User) RuntimeDir() string { return fmt.Sprintf("/run/user/%d", u.UID) }

// startUserManager gives the user a running systemd user manager through
// logind's linger (what a login would start) and waits for it.
func (u *User) startUserManager(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("loginctl", "enable-linger", u.Name).CombinedOutput(); err != nil {
		t.Fatalf("loginctl enable-linger %s: %v\n%s", u.Name, err, out)
	}
	u.Env = append(u.Env, "XDG_RUNTIME_DIR="+u.RuntimeDir(), "DBUS_SESSION_BUS_ADDRESS=unix:path="+u.RuntimeDir()+"/bus")
	// A previous user with the same uid may still be on its way out: wait
	// for this user's manager to be up, not for a stale socket.
	unit := fmt.Sprintf("user@%d.service", u.UID)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := exec.Command("systemctl", "show", "-p", "ActiveState", "--value", unit).Output()
		_, err := os.Stat(filepath.Join(u.RuntimeDir(), "bus"))
		if strings.TrimSpace(string(out)) == "active" && err == nil {
			// And until it has started its default target, as after a
			// login: a request queues behind that start-up.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			u.Exec(ctx, "systemctl", "--user", "is-system-running", "--wait").Run()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the systemd user manager of %s did not start (%s is %s)", u.Name, unit, strings.TrimSpace(string(out)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopUserManager ends the user's manager and waits until its processes are
// gone (userdel refuses a user with processes).
func (u *User) stopUserManager(t testing.TB) {
	StopUserManager(t, u.Name, u.UID)
}

// StopUserManager ends a user's systemd manager (linger off, sessions
// terminated) and waits until it and the user's processes are gone.
func StopUserManager(t testing.TB, name string, uid int) {
	exec.Command("loginctl", "disable-linger", name).Run()
	exec.Command("loginctl", "terminate-user", name).Run()
	unit := fmt.Sprintf("user@%d.service", uid)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("systemctl", "show", "-p", "ActiveState", "--value", unit).Output()
		state := strings.TrimSpace(string(out))
		if (state == "inactive" || state == "failed") && len(PidsOfUIDs(uid, uid)) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s or processes of %s still running: %v", unit, name, PidsOfUIDs(uid, uid))
}

func (u *User) remove(t testing.TB) {
	if SystemdHost() {
		u.stopUserManager(t)
	}
	subStart, subCount, subErr := u.subIDs()
	// setup --remove kills the user's containers and removes cgroups and state.
	if out, err := exec.Command(u.Bin, "setup", "--remove", "--user", u.Name).CombinedOutput(); err != nil {
		t.Errorf("ebrainpool setup --remove --user %s: %v\n%s", u.Name, err, out)
	}
	// The containers' processes are gone before the next user, who may be
	// given the same subordinate range, starts (the kill is asynchronous).
	if subErr == nil {
		var left []int
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if left = PidsOfUIDs(subStart, subStart+subCount-1); len(left) == 0 {
				break
			}
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if len(left) > 0 {
			t.Errorf("%s's container processes outlived setup --remove: %v", u.Name, left)
		}
	}
	// Any process left running as the user (there should be none).
	if u.UID > 0 {
		for _, pid := range PidsOfUIDs(u.UID, u.UID) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if out, err := shadowTool("userdel", "-r", u.Name); err != nil && !strings.Contains(string(out), "not found") {
		t.Logf("userdel %s: %v\n%s", u.Name, err, out)
	}
}

// shadowTool runs useradd or userdel, again while another process holds
// the lock on /etc/passwd (other test processes adding users).
func shadowTool(name string, args ...string) ([]byte, error) {
	for i := 0; ; i++ {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err == nil || i == 50 || !bytes.Contains(out, []byte("cannot lock")) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
}

// Command returns ebrainpool ARGS as the user, with a minimal environment.
func (u *User) Command(ctx context.Context, args ...string) *exec.Cmd {
	if len(u.Launcher) > 0 {
		return u.Exec(ctx, u.Launcher[0], append(u.Launcher[1:len(u.Launcher):len(u.Launcher)], args...)...)
	}
	return u.Exec(ctx, u.Bin, args...)
}

// Exec returns any program as the user, with the same environment.
func (u *User) Exec(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, u.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}}
	return cmd
}

// Run runs ebrainpool ARGS as the user (timeout 2 minutes).
func (u *User) Run(t testing.TB, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := u.Command(ctx, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String()}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		} else {
			t.Fatalf("running ebrainpool %v as %s: %v", args, u.Name, err)
		}
	}
	return r
}

// MustRun runs ebrainpool ARGS as the user and fails the test unless it
// exits 0.
func (u *User) MustRun(t testing.TB, args ...string) Result {
	t.Helper()
	r := u.Run(t, args...)
	if r.Code != 0 {
		t.Fatalf("ebrainpool %s as %s: %s", strings.Join(args, " "), u.Name, r)
	}
	return r
}

// SubIDs is the user's first subordinate uid range from /etc/subuid.
func (u *User) SubIDs(t testing.TB) (start, count int) {
	t.Helper()
	start, count, err := u.subIDs()
	if err != nil {
		t.Fatal(err)
	}
	return start, count
}

func (u *User) subIDs() (start, count int, err error) {
	b, err := os.ReadFile("/etc/subuid")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 3 && (f[0] == u.Name || f[0] == strconv.Itoa(u.UID)) {
			s, _ := strconv.Atoi(f[1])
			c, _ := strconv.Atoi(f[2])
			return s, c, nil
		}
	}
	return 0, 0, fmt.Errorf("%s has no subordinate uids", u.Name)
}

// PidsOfUIDs lists the processes whose real uid is in [lo, hi].
func PidsOfUIDs(lo, hi int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				f := strings.Fields(line)
				if len(f) > 1 {
					uid, _ := strconv.Atoi(f[1])
					if uid >= lo && uid <= hi {
						pids = append(pids, pid)
					}
				}
				break
			}
		}
	}
	return pids
}

// BuildCache is the directory build/NAME of the repository, for what tests
// keep between runs because it is slow to make (the VM root, chroots). The
// build directory gets a go.mod of its own, so that `go ... ./...` never
// walks into those trees.
func BuildCache(t testing.TB, name string) string {
	t.Helper()
	build := filepath.Join(repoRoot(), "build")
	if err := os.MkdirAll(filepath.Join(build, name), 0o755); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(build, "go.mod")
	if _, err := os.Stat(mod); err != nil {
		content := "// Caches of the tests (VM root, chroots); this go.mod keeps `go ./...` out.\nmodule ebrainpool.invalid/build-cache\n"
		if err := os.WriteFile(mod, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(build, name)
}

// fuseLock is held shared by every test process that needs /dev/fuse
// usable by unprivileged users; the last one to let go restores its mode
// (recorded beside it).
const (
	fuseDev   = "/dev/fuse"
	fuseLock  = "/run/ebrainpool-test-fuse.lock"
	fuseSaved = "/run/ebrainpool-test-fuse.mode"
)

var fuseHeld struct {
	sync.Mutex
	n int
	f *os.File
}

// RequireFuse makes /dev/fuse usable by unprivileged users as on a desktop,
// where udev makes it 0666 (sandboxes' homes are FUSE file systems mounted
// by the containers' unprivileged root); the machines without udev that
// run the tests have it 0600. As root it changes the mode if needed, says
// so, and puts the old mode back when the last test (of every test process
// needing it) is done. NewUser calls it when it does the setup.
func RequireFuse(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	fuseHeld.Lock()
	defer fuseHeld.Unlock()
	if fuseHeld.n == 0 {
		f, err := os.OpenFile(fuseLock, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatalf("RequireFuse: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			f.Close()
			t.Fatalf("RequireFuse: locking %s: %v", fuseLock, err)
		}
		st, err := os.Stat(fuseDev)
		if err != nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
			Skip(t, "%s is missing (modprobe fuse)", fuseDev)
		}
		if mode := st.Mode().Perm(); mode&0o666 != 0o666 {
			// Record the original only once (another process may have
			// changed it already, and keeps the record).
			if _, err := os.Stat(fuseSaved); err != nil {
				os.WriteFile(fuseSaved, []byte(strconv.FormatUint(uint64(mode), 8)), 0o600)
			}
			if err := os.Chmod(fuseDev, 0o666); err != nil {
				t.Fatalf("RequireFuse: %v", err)
			}
			t.Logf("%s was mode %04o: made it 0666 as udev does on desktops (put back when the tests are done)", fuseDev, mode)
		}
		fuseHeld.f = f
	}
	fuseHeld.n++
	t.Cleanup(releaseFuse)
}

func releaseFuse() {
	fuseHeld.Lock()
	defer fuseHeld.Unlock()
	if fuseHeld.n--; fuseHeld.n > 0 {
		return
	}
	f := fuseHeld.f
	fuseHeld.f = nil
	defer f.Close()
	// The last holder of every process puts the mode back: no other
	// process holds the lock shared, and none can take it meanwhile.
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return
	}
	if b, err := os.ReadFile(fuseSaved); err == nil {
		if mode, err := strconv.ParseUint(strings.TrimSpace(string(b)), 8, 32); err == nil {
			os.Chmod(fuseDev, os.FileMode(mode))
		}
		os.Remove(fuseSaved)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// FuseMode is /dev/fuse's mode now (for tests that change it).
func FuseMode(t testing.TB) os.FileMode {
	t.Helper()
	st, err := os.Stat(fuseDev)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}
