package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	code := testenv.Main(m, &binary)
	flatpak.remove()
	os.Exit(code)
}

// node is one simulated machine on loopback: a user, its session bus and
// its daemon.
type node struct {
	u    *testenv.User
	fp   string
	port string
	x    *testenv.Xvfb
}

// startDisplay gives the node an Xvfb display of its own and points its
// commands at it (env: more variables for them).
func (n *node) startDisplay(tb testing.TB, env ...string) {
	n.x = testenv.StartXvfb(tb, n.u.UID, n.u.GID)
	n.u = n.u.With(append([]string{"DISPLAY=" + n.x.Display, "XAUTHORITY=" + n.x.XAuthority}, env...)...)
}

// peerArg is the --peer value that adds n, named name, on loopback.
func (n *node) peerArg(name string) string {
	return fmt.Sprintf("%s@127.0.0.1:%s=%s", n.fp, n.port, name)
}

var daemonLine = regexp.MustCompile(`eBrainPool daemon: ".*" (SHA256:\S+), peers reach it on port (\d+)`)

// startDaemon runs `ebrainpool daemon` as the user until the test ends.
func startDaemon(t testing.TB, n *node, args ...string) {
	t.Helper()
	startOnLoopback(t, n, append([]string{"daemon", "--log-level", "debug"}, args...)...)
}

// startOnLoopback runs ebrainpool with args (daemon or gui) as the user,
// without discovery and on a loopback port, until the test ends; it reads
// the banner into n and returns the path of its log.
func startOnLoopback(t testing.TB, n *node, args ...string) string {
	t.Helper()
	_, log := launchOnLoopback(t, n, "127.0.0.1:0", args...)
	return log
}

// launchOnLoopback is startOnLoopback on the control address listen; it
// also returns the process (a test may kill it: the cleanup then only
// reaps it).
func launchOnLoopback(t testing.TB, n *node, listen string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := n.u.Command(t.Context(), append(args, "--no-discovery", "--listen", listen)...)
	out, _ := cmd.StdoutPipe()
	logf, _ := os.Create(filepath.Join(t.TempDir(), args[0]+".log"))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("%s of %s did not stop on SIGTERM", args[0], n.u.Name)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log of %s:\n%s", args[0], n.u.Name, b)
		}
	})
	n.fp, n.port = readBanner(t, out, n.u.Name)
	return cmd, logf.Name()
}

// readBanner reads the daemon's first line (its fingerprint and control
// port) and drains the rest of its output.
func readBanner(t testing.TB, out io.Reader, who string) (fp, port string) {
	t.Helper()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("the daemon of %s printed nothing", who)
	}
	m := daemonLine.FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("daemon banner of %s: %q", who, sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return m[1], m[2]
}

// endOnlySession checks that n lists exactly one session, in direction
// (and state, if not ""), ends it from n and waits for xlogo's window to
// leave n's display.
func endOnlySession(t *testing.T, n *node, direction, state string) {
	t.Helper()
	var ss []struct {
		ID        string  `json:"id"`
		Session   *string `json:"session"`
		Direction string  `json:"direction"`
		State     string  `json:"state"`
	}
	json.Unmarshal([]byte(n.u.MustRun(t, "sessions", "--json").Stdout), &ss)
	if len(ss) != 1 || ss[0].Direction != direction || (state != "" && ss[0].State != state) {
		t.Fatalf("sessions of %s: %+v, want one %s %s", n.u.Name, ss, direction, state)
	}
	// The host's session id is the one both sides know (on the host it is
	// also the handle).
	if s := ss[0].Session; s == nil || *s == "" || direction == "incoming" && *s != ss[0].ID {
		t.Errorf("sessions of %s: session %v for id %s", n.u.Name, s, ss[0].ID)
	}
	n.u.MustRun(t, "end", ss[0].ID)
	n.x.WaitWindow(t, "xlogo", false, 15*time.Second)
}

// sessionIDs are the "session" values of n's sessions.
func sessionIDs(t *testing.T, n *node) []string {
	t.Helper()
	var ss []struct {
		Session *string `json:"session"`
	}
	json.Unmarshal([]byte(n.u.MustRun(t, "sessions", "--json").Stdout), &ss)
	var out []string
	for _, s := range ss {
		if s.Session != nil {
			out = append(out, *s.Session)
		}
	}
	return out
}

func newNode(t testing.TB, setup bool) *node {
	u := testenv.NewUser(t, binary, setup)
	bus := testenv.SessionBus(t, u.UID, u.GID)
	return &node{u: u.With("DBUS_SESSION_BUS_ADDRESS=" + bus)}
}

// shareApp installs a desktop entry for an X client in the user's own
// applications and shares it.
func shareApp(t testing.TB, n *node, id, name, command string) {
	dir := filepath.Join(n.u.Home, ".local/share/applications")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entry := fmt.Sprintf("[Desktop Entry]\nType=Application\nName=%s\nExec=%s\n", name, command)
	if err := os.WriteFile(filepath.Join(dir, id+".desktop"), []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", n.u.Name+":", filepath.Join(n.u.Home, ".local")).Run()
	n.u.MustRun(t, "share", id)
}

// startRun starts `ebrainpool run PEER APP [FLAG...]` as u; it is stopped
// when the test ends, and its output logged if the test failed.
func startRun(t *testing.T, u *testenv.User, peer, app string, flags ...string) *exec.Cmd {
	t.Helper()
	run := u.Command(t.Context(), append([]string{"run", peer, app}, flags...)...)
	var out strings.Builder
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run.Process.Kill()
		run.Wait()
		if t.Failed() {
			t.Logf("ebrainpool run %s %s as %s:\n%s", peer, app, u.Name, out.String())
		}
	})
	return run
}

func waitPending(t testing.TB, n *node) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r := n.u.MustRun(t, "pending", "--json")
		var reqs []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &reqs); err != nil {
			t.Fatalf("pending --json: %v\n%s", err, r.Stdout)
		}
		if len(reqs) > 0 {
			return reqs[0].ID
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no pending request appeared on the host")
	return ""
}

func TestRunAppFromPeerOnLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xlogo", "xwininfo")
	host := newNode(t, true)
	req := newNode(t, false)
	req.startDisplay(t)
	shareApp(t, host, "xlogo", "X Logo", "xlogo")
	startDaemon(t, host)
	startDaemon(t, req, "--peer", host.peerArg("bob"))

	if r := req.u.MustRun(t, "peers", "--json"); !strings.Contains(r.Stdout, host.fp) {
		t.Fatalf("peers: %s", r.Stdout)
	}
	if r := req.u.MustRun(t, "apps", "bob"); !strings.Contains(r.Stdout, "X Logo") {
		t.Fatalf("apps: %s", r)
	}

	t.Run("allowed: the window appears here, the app runs in the host's sandbox", func(t *testing.T) {
		run := req.u.Command(t.Context(), "run", "bob", "xlogo")
		var runOut strings.Builder
		run.Stdout, run.Stderr = &runOut, &runOut
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		id := waitPending(t, host)
		host.u.MustRun(t, "allow", id)
		took := req.x.WaitWindow(t, "xlogo", true, 30*time.Second)
		t.Logf("window mapped %s after the answer", took)
		// The X client runs as the sandbox's guest: a subordinate uid of the host user.
		start, count := host.u.SubIDs(t)
		var inSandbox bool
		for _, pid := range testenv.PidsOfUIDs(start, start+count-1) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "xlogo" {
				inSandbox = true
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				if !strings.Contains(string(st), fmt.Sprintf("Uid:\t%d", start+1000)) {
					t.Errorf("xlogo does not run as the guest (uid %d): %s", start+1000, st)
				}
				ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
				self, _ := os.Readlink("/proc/self/ns/net")
				if ns == self {
					t.Error("xlogo shares the host's network namespace")
				}
			}
		}
		if !inSandbox {
			t.Fatal("no xlogo process runs in the host's sandbox")
		}
		// Both sides know the session by the same id.
		if h, r := sessionIDs(t, host), sessionIDs(t, req); len(h) != 1 || len(r) != 1 || h[0] != r[0] {
			t.Errorf("session ids: host %q, requester %q", h, r)
		}
		// End it from the requester's side.
		endOnlySession(t, req, "outgoing", "")
		run.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for {
			left := 0
			for _, pid := range testenv.PidsOfUIDs(start+1000, start+1000) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "xlogo" {
					left++
				}
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d xlogo processes left in the sandbox after end", left)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r := host.u.MustRun(t, "sessions", "--json"); strings.Contains(r.Stdout, "incoming") {
			t.Fatalf("host still lists the session: %s", r.Stdout)
		}
	})

	t.Run("run --detach returns once the app runs; the app stays until ended", func(t *testing.T) {
		run := req.u.Command(t.Context(), "run", "--detach", "bob", "xlogo")
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		run.Start()
		host.u.MustRun(t, "allow", waitPending(t, host))
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), "running") {
				t.Fatalf("run --detach: %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("run --detach did not return:\n%s", out.String())
		}
		req.x.WaitWindow(t, "xlogo", true, 10*time.Second)
		endOnlySession(t, req, "outgoing", "running")
	})

	t.Run("denied: a clear refusal", func(t *testing.T) {
		run := req.u.Command(t.Context(), "run", "bob", "xlogo")
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		run.Start()
		host.u.MustRun(t, "deny", waitPending(t, host))
		err := run.Wait()
		if err == nil || !strings.Contains(out.String(), "denied") || run.ProcessState.ExitCode() != cli.ExitDenied {
			t.Fatalf("run after deny: %v (want exit status %d)\n%s", err, cli.ExitDenied, out.String())
		}
	})

	t.Run("unknown app and unknown peer", func(t *testing.T) {
		if r := req.u.Run(t, "run", "bob", "gimp"); r.Code != cli.ExitNotShared || !strings.Contains(r.Stderr, "does not share") {
			t.Fatalf("unknown app: %s", r)
		}
		if r := req.u.Run(t, "apps", "nobody-here"); r.Code != cli.ExitFailure || !strings.Contains(r.Stderr, "no peer matches") {
			t.Fatalf("unknown peer: %s", r)
		}
	})
}

// A host that shares apps but never ran the one-time setup tells requesters
// so (not "sharing is turned off").
func TestHostWithoutSetupSaysSo(t *testing.T) {
	testenv.RequireRoot(t)
	host := newNode(t, false)
	shareApp(t, host, "xlogo", "X Logo", "xlogo")
	startDaemon(t, host)
	req := newNode(t, false)
	req.startDisplay(t)
	startDaemon(t, req, "--peer", host.peerArg("carol"))
	for _, tc := range []struct {
		args []string
		code int
	}{{[]string{"apps", "carol"}, cli.ExitUnavailable}, {[]string{"run", "carol", "xlogo"}, cli.ExitUnavailable}} {
		args := tc.args
		t.Run(args[0], func(t *testing.T) {
			r := req.u.Run(t, args...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, "one-time setup") || !strings.Contains(r.Stderr, "ebrainpool setup") {
				t.Fatalf("%s", r)
			}
			t.Logf("%s", strings.TrimSpace(r.Stderr))
		})
	}
}
