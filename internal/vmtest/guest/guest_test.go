//go:build vmguest

// Package guest holds the tests that run inside the booted Debian 12 VM
// (see internal/vmtest), as root, against the installed .deb. They are
// built with -tags vmguest by TestDebian12Desktop and never run on the
// host.
package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

const bin = "/usr/bin/ebrainpool"

// desktopUser is a test user as a desktop has it: a running systemd user
// manager (linger) and its user bus.
type desktopUser struct {
	*testenv.User
}

func newDesktopUser(t *testing.T, setup bool) desktopUser {
	t.Helper()
	return desktopUser{testenv.NewUser(t, bin, setup)}
}

// systemdRun starts ebrainpool ARGS as a unit of the user's systemd manager,
// the way a desktop starts an application: a transient service in app.slice
// without delegation (an XDG autostart entry runs as app-NAME@autostart.service,
// a menu launch in an app-*.scope). It returns the unit's output file.
func (u desktopUser) systemdRun(t *testing.T, unit string, env []string, args ...string) string {
	t.Helper()
	out := filepath.Join(u.Home, unit+".log")
	os.WriteFile(out, nil, 0o644)
	os.Chown(out, u.UID, u.GID)
	run := []string{"systemd-run", "--user", "--quiet", "--unit=" + unit, "--collect",
		"--property=StandardOutput=file:" + out, "--property=StandardError=file:" + out}
	for _, e := range env {
		run = append(run, "--setenv="+e)
	}
	run = append(run, append([]string{bin}, args...)...)
	if b, err := u.Exec(t.Context(), run[0], run[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(run, " "), err, b)
	}
	t.Cleanup(func() {
		u.Exec(context.Background(), "systemctl", "--user", "stop", unit).Run()
		if t.Failed() {
			b, _ := os.ReadFile(out)
			t.Logf("output of %s (%s):\n%s", unit, u.Name, b)
		}
	})
	return out
}

// login runs a shell command as the user in a login session (su -: a
// session-N.scope of logind, outside the user manager), as a terminal does.
func (u desktopUser) login(t *testing.T, script string) testenv.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "su", "-", u.Name, "-c", script)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := testenv.Result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("su - %s: %v", u.Name, err)
	}
	return r
}

var banner = regexp.MustCompile(`eBrainPool daemon: ".*" (SHA256:\S+), peers reach it on port (\d+)`)

// waitBanner reads the daemon's fingerprint and port from its output.
func waitBanner(t *testing.T, logFile string) (fp, port string, text string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logFile)
		if m := banner.FindStringSubmatch(string(b)); m != nil {
			return m[1], m[2], string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(logFile)
	t.Fatalf("no daemon banner in %s:\n%s", logFile, b)
	return "", "", ""
}

func writeSettings(t *testing.T, u desktopUser, settings string) {
	t.Helper()
	dir := filepath.Join(u.Home, ".config", "ebrainpool")
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", u.Name+":", filepath.Join(u.Home, ".config")).Run()
}

func shareApp(t *testing.T, u desktopUser, id, name, command string) {
	t.Helper()
	dir := filepath.Join(u.Home, ".local/share/applications")
	os.MkdirAll(dir, 0o755)
	entry := fmt.Sprintf("[Desktop Entry]\nType=Application\nName=%s\nExec=%s\n", name, command)
	if err := os.WriteFile(filepath.Join(dir, id+".desktop"), []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", u.Name+":", filepath.Join(u.Home, ".local")).Run()
	u.MustRun(t, "share", id)
}

// shareFileApps shares the files test's apps (scripts in /usr/local/bin,
// the host's /usr being the sandbox's): ebp-append opens a text file (%f)
// and appends a line; ebp-readonly reads the folder brought read-only and
// exits 3 if a write into it works.
func shareFileApps(t *testing.T, u desktopUser) {
	t.Helper()
	for name, script := range map[string]string{
		"ebp-test-append": "#!/bin/sh\necho 'edited in the sandbox' >> \"$1\"\n",
		"ebp-test-readonly": "#!/bin/sh\nfor d in \"$HOME\"/*\"'s Docs\"; do\n\tcat \"$d/keep.txt\" >/dev/null || exit 4\n" +
			"\t(echo x >> \"$d/keep.txt\") 2>/dev/null && exit 3\n\t(echo x > \"$d/new.txt\") 2>/dev/null && exit 3\n\texit 0\ndone\nexit 5\n",
	} {
		p := filepath.Join("/usr/local/bin", name)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	dir := filepath.Join(u.Home, ".local/share/applications")
	os.MkdirAll(dir, 0o755)
	for id, entry := range map[string]string{
		"ebp-append":   "Name=Appender\nExec=/usr/local/bin/ebp-test-append %f\nMimeType=text/plain;\n",
		"ebp-readonly": "Name=Reader\nExec=/usr/local/bin/ebp-test-readonly\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, id+".desktop"), []byte("[Desktop Entry]\nType=Application\n"+entry), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("chown", "-R", u.Name+":", filepath.Join(u.Home, ".local")).Run()
	u.MustRun(t, "share", "ebp-append", "ebp-readonly")
}

// writeAs writes a file of the user's below their home.
func writeAs(t *testing.T, u desktopUser, name, content string) string {
	t.Helper()
	p := filepath.Join(u.Home, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, u.UID, u.GID)
	return p
}

func waitPending(t *testing.T, u desktopUser) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := u.MustRun(t, "pending", "--json")
		var reqs []struct{ ID string }
		json.Unmarshal([]byte(r.Stdout), &reqs)
		if len(reqs) > 0 {
			return reqs[0].ID
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no pending request appeared on the host")
	return ""
}

// payloadDirs are the cgroups of the user's running sandboxes, found from
// outside as an administrator would: below the user manager's
// app-ebrainpool.slice.
func payloadDirs(t *testing.T, u desktopUser) []string {
	t.Helper()
	slice := fmt.Sprintf("/sys/fs/cgroup/user.slice/user-%d.slice/user@%d.service/app.slice/app-ebrainpool.slice", u.UID, u.UID)
	dirs, _ := filepath.Glob(filepath.Join(slice, "*.scope", "lxc.payload.*"))
	return dirs
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// TestDesktopLaunch is the whole flow on a systemd desktop: the host's
// daemon started by its user manager as a desktop starts an app, a
// requester on its own X display asking over loopback, the host allowing,
// the window on the requester's display, the limits in force, and the
// debug CLI working from a login shell.
func TestDesktopLaunch(t *testing.T) {
	host := newDesktopUser(t, true)
	req := newDesktopUser(t, false)
	writeSettings(t, host, `{"display_name": "hana", "sharing": true, "idle_stop": "5m", "consent_timeout": "60s", "memory_mb": 256, "cpus": 0.5, "pids": 128}`)
	shareApp(t, host, "xlogo", "X Logo", "xlogo")
	shareFileApps(t, host)
	hostLog := host.systemdRun(t, "app-ebrainpool@autostart", nil, "daemon", "--no-discovery", "--listen", "127.0.0.1:0")
	hostFP, hostPort, text := waitBanner(t, hostLog)
	if strings.Contains(text, "not sharing") {
		t.Fatalf("the host's daemon does not share:\n%s", text)
	}

	x := testenv.StartXvfb(t, req.UID, req.GID)
	reqLog := req.systemdRun(t, "app-ebrainpool@autostart", []string{"DISPLAY=" + x.Display, "XAUTHORITY=" + x.XAuthority},
		"daemon", "--no-discovery", "--listen", "127.0.0.1:0", "--peer", fmt.Sprintf("%s@127.0.0.1:%s=hana", hostFP, hostPort))
	reqFP, _, _ := waitBanner(t, reqLog)

	run := req.Command(t.Context(), "run", "hana", "xlogo")
	var runOut strings.Builder
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		run.Process.Kill()
		run.Wait()
		if t.Failed() {
			t.Logf("ebrainpool run:\n%s", runOut.String())
		}
	}()
	id := waitPending(t, host)
	host.MustRun(t, "allow", id)
	took := x.WaitWindow(t, "xlogo", true, 90*time.Second)
	t.Logf("window on the requester's display %s after the answer", took)

	t.Run("the sandbox's limits are in force, read from outside", func(t *testing.T) {
		dirs := payloadDirs(t, host)
		if len(dirs) != 1 {
			t.Fatalf("want one sandbox cgroup below app-ebrainpool.slice, found %v", dirs)
		}
		page := int64(os.Getpagesize())
		for file, want := range map[string]string{
			"memory.max":      strconv.FormatInt((256<<20)/page*page, 10),
			"memory.swap.max": "0",
			"pids.max":        "128",
			"cpu.max":         "50000 100000",
		} {
			if got := readTrim(t, filepath.Join(dirs[0], file)); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
		// The app itself is in there.
		found := false
		filepath.WalkDir(dirs[0], func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				for _, pid := range strings.Fields(readTrim(t, filepath.Join(p, "cgroup.procs"))) {
					if b, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(b)) == "xlogo" {
						found = true
					}
				}
			}
			return nil
		})
		if !found {
			t.Errorf("xlogo is not in the sandbox's cgroup %s", dirs[0])
		}
	})

	t.Run("sandbox exec from a login shell enters the daemon's sandbox", func(t *testing.T) {
		r := host.login(t, fmt.Sprintf("%s sandbox exec %s -- sh -c 'id -un; pgrep -c xlogo'", bin, reqFP))
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "guest\n1") {
			t.Fatalf("sandbox exec from a login shell: %s", r)
		}
	})

	t.Run("sandbox list shows processes, memory and CPU from the v2 files", func(t *testing.T) {
		r := host.login(t, bin+" sandbox list --json")
		var list []struct {
			Peer   string `json:"peer"`
			Procs  int    `json:"processes"`
			Memory int64  `json:"memory_bytes"`
			CPU    int64  `json:"cpu_ns"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("sandbox list --json: %v\n%s", err, r)
		}
		if l := list[0]; l.Procs < 2 || l.Memory <= 0 || l.CPU <= 0 {
			t.Fatalf("sandbox list: %+v (want init + xlogo, memory and CPU in use)", l)
		}
	})

	// Before the fork flood, which leaves the sandbox at its pids limit
	// for a while (its sleeps outlive a refused pkill).
	t.Run("the requester's files: opened, saved back, read-only kept, an unknown type said", func(t *testing.T) {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			logs, _ := filepath.Glob(filepath.Join("/var/lib/ebrainpool", host.Name, "containers", "*", "lxc.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("%s, its last lines:\n%s", l, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		})
		notes := writeAs(t, req, "notes.txt", "line 1\n")
		open := req.Command(t.Context(), "open", "--app", "ebp-append", notes)
		var out strings.Builder
		open.Stdout, open.Stderr = &out, &out
		if err := open.Start(); err != nil {
			t.Fatal(err)
		}
		host.MustRun(t, "allow", waitPending(t, host))
		if err := open.Wait(); err != nil {
			t.Fatalf("open: %v\n%s", err, out.String())
		}
		if b, _ := os.ReadFile(notes); string(b) != "line 1\nedited in the sandbox\n" {
			t.Fatalf("the requester's file after the app: %q (open said:\n%s)", b, out.String())
		}
		docs := filepath.Join(req.Home, "Docs")
		os.MkdirAll(docs, 0o755)
		keep := writeAs(t, req, "Docs/keep.txt", "keep\n")
		exec.Command("chown", req.Name+":", docs).Run()
		run := req.Command(t.Context(), "run", "--folder", docs+":ro", "hana", "ebp-readonly")
		out.Reset()
		run.Stdout, run.Stderr = &out, &out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		host.MustRun(t, "allow", waitPending(t, host))
		if err := run.Wait(); err != nil {
			t.Fatalf("run --folder %s:ro (exit status 3: a write worked): %v\n%s", docs, err, out.String())
		}
		if b, _ := os.ReadFile(keep); string(b) != "keep\n" {
			t.Errorf("the read-only folder's file changed: %q", b)
		}
		blob := writeAs(t, req, "blob.bin", "\x00\x01\x02")
		if r := req.Run(t, "open", blob); r.Code == 0 || !strings.Contains(r.Stderr, "no app shared by any peer opens blob.bin") {
			t.Errorf("open of a file no app opens: %s", r)
		}
	})

	t.Run("a fork flood stops at pids.max", func(t *testing.T) {
		r := host.login(t, fmt.Sprintf("%s sandbox exec %s -- sh -c 'i=0; while [ $i -lt 400 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; echo started'", bin, reqFP))
		t.Logf("flood: %s", r)
		dir := payloadDirs(t, host)[0]
		events := readTrim(t, filepath.Join(dir, "pids.events"))
		cur, _ := strconv.Atoi(readTrim(t, filepath.Join(dir, "pids.current")))
		t.Logf("pids.events %q, pids.current %d", events, cur)
		if events == "max 0" || !strings.HasPrefix(events, "max ") {
			t.Errorf("the pids limit was never hit: pids.events %q", events)
		}
		if cur > 128 {
			t.Errorf("pids.current %d is above pids.max 128", cur)
		}
		// An app asked for now cannot start (the flood's sleeps hold every
		// slot for a minute): the requester is told so, not that the
		// connection broke.
		run := req.Command(t.Context(), "run", "hana", "ebp-readonly")
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		host.MustRun(t, "allow", waitPending(t, host))
		if err := run.Wait(); err == nil || !strings.Contains(out.String(), "your sandbox on this host is at its process limit (128 processes)") {
			t.Errorf("a launch into the full sandbox: %v\n%s", err, out.String())
		}
		host.login(t, fmt.Sprintf("%s sandbox exec %s -- pkill sleep", bin, reqFP))
	})

	t.Run("the session ends and the window goes", func(t *testing.T) {
		var ss []struct{ ID string }
		json.Unmarshal([]byte(req.MustRun(t, "sessions", "--json").Stdout), &ss)
		if len(ss) != 1 {
			t.Fatalf("sessions: %+v", ss)
		}
		req.MustRun(t, "end", ss[0].ID)
		x.WaitWindow(t, "xlogo", false, 60*time.Second)
	})
}

// TestWithoutUserManager: a user with no login session and no linger has
// no systemd user manager, so no delegated cgroup: sharing is refused with
// the cause and the fix, never started without limits.
func TestWithoutUserManager(t *testing.T) {
	u := newDesktopUser(t, true)
	testenv.StopUserManager(t, u.Name, u.UID)
	r := u.Run(t, "sandbox", "start", "somepeer")
	want := "this host cannot limit sandboxes: no systemd user manager runs for " + u.Name
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, "loginctl enable-linger "+u.Name) {
		t.Fatalf("want %q and the fix: %s", want, r)
	}
	if dirs := payloadDirs(t, u); len(dirs) != 0 {
		t.Fatalf("a sandbox was started anyway: %v", dirs)
	}
}

// TestAppArmor: with AppArmor on, sandboxes run under LXC's profile when it
// is loaded, and still start (unconfined by AppArmor) when it is not.
func TestAppArmor(t *testing.T) {
	u := newDesktopUser(t, true)
	initProfile := func(peer string) string {
		t.Helper()
		r := u.MustRun(t, "sandbox", "exec", "--root", peer, "--", "cat", "/proc/1/attr/current")
		return strings.TrimSpace(r.Stdout)
	}
	t.Run("LXC's profile loaded", func(t *testing.T) {
		u.MustRun(t, "sandbox", "start", "aa1")
		if got := initProfile("aa1"); !strings.HasPrefix(got, "lxc-container-default-cgns") {
			t.Fatalf("the container's init runs under %q, want lxc-container-default-cgns", got)
		}
		u.MustRun(t, "sandbox", "stop", "aa1")
	})
	t.Run("LXC's profile not loaded", func(t *testing.T) {
		if out, err := exec.Command("apparmor_parser", "-R", "/etc/apparmor.d/lxc-containers").CombinedOutput(); err != nil {
			t.Fatalf("unloading LXC's profiles: %v\n%s", err, out)
		}
		defer exec.Command("apparmor_parser", "-r", "/etc/apparmor.d/lxc-containers").Run()
		r := u.Run(t, "sandbox", "start", "aa2")
		if r.Code != 0 {
			t.Fatalf("start without LXC's AppArmor profile: %s", r)
		}
		if !strings.Contains(r.Stderr, "AppArmor") {
			t.Errorf("no warning that the sandbox runs without AppArmor confinement: %s", r)
		}
		if got := initProfile("aa2"); got != "unconfined" {
			t.Errorf("init runs under %q, want unconfined", got)
		}
		u.MustRun(t, "sandbox", "stop", "aa2")
	})
}

// TestSetupOnSystemd: setup says what it does on a systemd host, --check
// --user tells a set-up user from one that is not, and --remove stops the
// user's sandboxes and removes its state.
func TestSetupOnSystemd(t *testing.T) {
	u := newDesktopUser(t, false)
	r := u.Run(t, "setup", "--check", "--user", u.Name)
	if r.Code == 0 || !strings.Contains(r.Stdout, "/var/lib/ebrainpool/"+u.Name) {
		t.Fatalf("setup --check --user for a user without setup: %s", r)
	}
	out, err := exec.Command(bin, "setup", "--user", u.Name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "delegated scope") {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if r := u.Run(t, "setup", "--check", "--user", u.Name); r.Code != 0 {
		t.Fatalf("setup --check --user after setup: %s", r)
	}
	u.MustRun(t, "sandbox", "start", "p1")
	if len(payloadDirs(t, u)) != 1 {
		t.Fatal("no running sandbox")
	}
	if out, err := exec.Command(bin, "setup", "--remove", "--user", u.Name).CombinedOutput(); err != nil {
		t.Fatalf("setup --remove: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(payloadDirs(t, u)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes still running after setup --remove: %v", payloadDirs(t, u))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat("/var/lib/ebrainpool/" + u.Name); err == nil {
		t.Fatal("the state directory is still there")
	}
}
