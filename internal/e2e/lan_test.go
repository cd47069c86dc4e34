package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// lanNode is one machine of the simulated LAN: a test-bed host (network
// namespace, its own system bus and avahi-daemon), a desktop user with a
// session bus, and that user's daemon running inside the host.
type lanNode struct {
	node
	h      *testbed.Host
	name   string
	daemon *exec.Cmd
	log    string
	// launcher runs ebrainpool in the host instead of the binary (e.g.
	// flatpak run APP-ID).
	launcher []string
}

// writeSettings gives the user a display name and a short consent timeout.
func writeSettings(t *testing.T, u *testenv.User, name string) {
	dir := filepath.Join(u.Home, ".config", "ebrainpool")
	os.MkdirAll(dir, 0o700)
	s := fmt.Sprintf(`{"display_name": %q, "sharing": true, "idle_stop": "5m", "consent_timeout": "5s"}`, name)
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", u.Name+":", filepath.Join(u.Home, ".config")).Run()
}

// start runs the daemon inside the host, as the user.
func (n *lanNode) start(t *testing.T) {
	t.Helper()
	n.startCmd(t, "daemon", "--log-level", "debug")
}

// startCmd runs ebrainpool with args (daemon or the desktop app) inside the
// host, as the user, and reads its banner.
func (n *lanNode) startCmd(t *testing.T, args ...string) {
	t.Helper()
	ctx := context.Background()
	launcher := n.launcher
	if len(launcher) == 0 {
		launcher = []string{binary}
	}
	args = append(append([]string{"setpriv", "--reuid=" + strconv.Itoa(n.u.UID), "--regid=" + strconv.Itoa(n.u.GID), "--clear-groups", "--"}, launcher...), args...)
	cmd := n.h.Command(ctx, args...)
	cmd.Env = append([]string{"HOME=" + n.u.Home, "USER=" + n.u.Name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket"}, n.u.Env...)
	cmd.Dir = "/"
	out, _ := cmd.StdoutPipe()
	f, err := os.CreateTemp("", "ebp-daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	n.log = f.Name()
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.daemon = cmd
	n.fp, n.port = readBanner(t, out, n.name+" on "+n.h.Name)
}

func (n *lanNode) stop() {
	if n.daemon == nil {
		return
	}
	n.daemon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.daemon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.daemon.Process.Kill()
		<-done
	}
	n.daemon = nil
}

func (n *lanNode) logTail() string {
	b, _ := os.ReadFile(n.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// peerJSON is an entry of `ebrainpool peers --json`.
type peerJSON struct {
	Fingerprint string `json:"fingerprint"`
	Name        string `json:"name"`
	Host        string `json:"host"`
	Address     string `json:"address"`
	Trust       string `json:"trust"`
}

func (n *lanNode) peers(t *testing.T) []peerJSON {
	t.Helper()
	r := n.u.Run(t, "peers", "--json")
	var ps []peerJSON
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &ps) != nil {
		return nil
	}
	return ps
}

// waitPeers waits until the node lists exactly the wanted fingerprints
// (with the given trust, if not "").
func (n *lanNode) waitPeers(t *testing.T, timeout time.Duration, want map[string]string) time.Duration {
	t.Helper()
	t0 := time.Now()
	var got []peerJSON
	for time.Since(t0) < timeout {
		got = n.peers(t)
		ok := len(got) == len(want)
		for _, p := range got {
			trust, in := want[p.Fingerprint]
			ok = ok && in && (trust == "" || trust == p.Trust)
		}
		if ok {
			return time.Since(t0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s lists %+v, want %v", n.name, got, want)
	return 0
}

// newLANNodes makes alice, bob and carol on the bed's hosts 1 to 3: bob and
// carol have the one-time setup and share xlogo; the users named in
// displays get an Xvfb display. Their logs (and the sandboxes' LXC logs) are
// shown if the test fails.
func newLANNodes(t *testing.T, bed *testbed.Bed, displays ...string) (A, B, C *lanNode) {
	var nodes []*lanNode
	for i, name := range []string{"alice", "bob", "carol"} {
		n := &lanNode{node: *newNode(t, name != "alice"), h: bed.Host(i + 1), name: name}
		writeSettings(t, n.u, name)
		if slices.Contains(displays, name) {
			n.startDisplay(t, "LIBGL_ALWAYS_SOFTWARE=1")
		}
		if name != "alice" {
			shareApp(t, &n.node, "xlogo", "X Logo", "xlogo")
		}
		nodes = append(nodes, n)
		t.Cleanup(func() {
			n.stop()
			if t.Failed() {
				t.Logf("log of %s:\n%s", n.name, n.logTail())
				logs, _ := filepath.Glob(filepath.Join("/var/lib/ebrainpool", n.u.Name, "containers", "*", "lxc.log"))
				for _, l := range logs {
					b, _ := os.ReadFile(l)
					t.Logf("%s:\n%s", l, b)
				}
			}
			os.Remove(n.log)
		})
	}
	return nodes[0], nodes[1], nodes[2]
}

func TestThreeHostsOnTheLAN(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "setpriv", "dbus-send", "avahi-publish")
	A, B, C := newLANNodes(t, testbed.New(t, 3), "alice", "bob")
	nodes := []*lanNode{A, B, C}
	t0 := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	t.Run("every host lists the other two within 2s", func(t *testing.T) {
		for _, n := range nodes {
			want := map[string]string{}
			for _, o := range nodes {
				if o != n {
					want[o.fp] = ""
				}
			}
			n.waitPeers(t, 2*time.Second-time.Since(t0), want)
		}
		t.Logf("all three listed each other %s after the daemons started", time.Since(t0).Round(time.Millisecond))
	})

	t.Run("A runs an app from B: window on A, process in B's sandbox, gone after end", func(t *testing.T) {
		run := startRun(t, A.u, "bob", "xlogo")
		B.u.MustRun(t, "allow", waitPending(t, &B.node))
		took := A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
		t.Logf("window on A %s after B allowed", took.Round(time.Millisecond))
		start, _ := B.u.SubIDs(t)
		pids := xlogoPids(start + 1000)
		if len(pids) != 1 {
			t.Fatalf("xlogo processes as B's guest: %v", pids)
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pids[0]))
		bNet, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", B.daemon.Process.Pid))
		if ns == bNet {
			t.Fatal("the app runs in B's network namespace, not in its sandbox's")
		}
		endOnlySession(t, &A.node, "outgoing", "")
		run.Wait()
		waitGone(t, start+1000)
		if A.peersTrust(t, B.fp) != "verified" {
			t.Errorf("after a session B should be a verified (pinned) peer on A: %+v", A.peers(t))
		}
	})

	t.Run("deny, timeout and block give clear refusals", func(t *testing.T) {
		tests := []struct {
			name, answer, want string
			code               int
		}{
			{"deny", "deny", "denied", cli.ExitDenied},
			{"timeout", "", "did not answer in time", cli.ExitNoAnswer},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				run := A.u.Command(t.Context(), "run", "bob", "xlogo")
				var out strings.Builder
				run.Stdout, run.Stderr = &out, &out
				run.Start()
				id := waitPending(t, &B.node)
				if tt.answer != "" {
					B.u.MustRun(t, tt.answer, id)
				}
				err := run.Wait()
				if err == nil || !strings.Contains(out.String(), tt.want) || run.ProcessState.ExitCode() != tt.code {
					t.Fatalf("run: %v (want exit status %d)\n%s", err, tt.code, out.String())
				}
			})
		}
		// Blocked (B blocks alice by name; prompts per peer are also rate
		// limited to 3 per 20s, which the two requests above used up):
		// refused at once, without a prompt.
		B.u.MustRun(t, "block", "alice")
		t0 := time.Now()
		r := A.u.Run(t, "run", "bob", "xlogo")
		if r.Code != cli.ExitBlocked || !strings.Contains(r.Stderr, "blocked") || time.Since(t0) > 5*time.Second {
			t.Fatalf("blocked peer: %s", r)
		}
		if p := B.u.MustRun(t, "pending", "--json").Stdout; strings.Contains(p, "alice") {
			t.Fatalf("a blocked peer's request was prompted: %s", p)
		}
	})

	t.Run("a flood of 500 requests leaves one prompt and C is still served at once", func(t *testing.T) {
		// A floods C through A's own D-Bus API (500 Launch calls at once).
		script := `for i in $(seq 500); do dbus-send --session --type=method_call --dest=io.github.ebrainpool.EBrainPool1 /io/github/ebrainpool/EBrainPool1 io.github.ebrainpool.EBrainPool1.Launch string:carol string:xlogo & done; wait`
		flood := A.u.Exec(t.Context(), "/bin/sh", "-c", script)
		if out, err := flood.CombinedOutput(); err != nil {
			t.Fatalf("flood: %v\n%s", err, out)
		}
		maxPending := 0
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			var reqs []struct {
				ID string `json:"id"`
			}
			json.Unmarshal([]byte(C.u.MustRun(t, "pending", "--json").Stdout), &reqs)
			maxPending = max(maxPending, len(reqs))
			time.Sleep(100 * time.Millisecond)
		}
		if maxPending != 1 {
			t.Fatalf("C showed up to %d pending prompts during the flood, want exactly 1", maxPending)
		}
		// B asks C now: C prompts at once, beside A's one prompt.
		run := B.u.Command(t.Context(), "run", "carol", "xlogo")
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		t1 := time.Now()
		run.Start()
		for {
			var reqs []struct {
				ID       string `json:"id"`
				PeerName string `json:"peer_name"`
			}
			json.Unmarshal([]byte(C.u.MustRun(t, "pending", "--json").Stdout), &reqs)
			found := ""
			for _, r := range reqs {
				if r.PeerName == "bob" {
					found = r.ID
				}
			}
			if found != "" {
				t.Logf("C prompted for B %s after B asked, during A's flood", time.Since(t1).Round(time.Millisecond))
				C.u.MustRun(t, "deny", found)
				break
			}
			if time.Since(t1) > 5*time.Second {
				t.Fatalf("C did not prompt for B within 5s during the flood: %+v", reqs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		run.Wait()
	})

	t.Run("B stops: gone from A within 5s; B's avahi restarts: B is back", func(t *testing.T) {
		B.stop()
		took := A.waitPeers(t, 5*time.Second, map[string]string{C.fp: ""})
		t.Logf("B gone from A's list %s after its daemon stopped", took.Round(time.Millisecond))
		B.start(t)
		A.waitPeers(t, 5*time.Second, map[string]string{B.fp: "", C.fp: ""})
		if err := B.h.StopAvahi(); err != nil {
			t.Fatal(err)
		}
		A.waitPeers(t, 5*time.Second, map[string]string{C.fp: ""})
		if err := B.h.StartAvahi(context.Background()); err != nil {
			t.Fatal(err)
		}
		took = A.waitPeers(t, 5*time.Second, map[string]string{B.fp: "", C.fp: ""})
		t.Logf("B back on A's list %s after its avahi-daemon restarted", took.Round(time.Millisecond))
	})

	t.Run("impostors: B's name with another key is a different untrusted peer; a pinned key mismatch is refused", func(t *testing.T) {
		// On C's host, an announcement claiming the name "bob" with C's
		// own key: listed separately, flagged as a name clash.
		fake := C.h.Command(t.Context(), "avahi-publish", "-s", "bob", "_ebrainpool._tcp", C.port, "v=1", "fp="+C.fp, "name=bob")
		fake.Start()
		t.Cleanup(func() { fake.Process.Kill(); fake.Wait() })
		deadline := time.Now().Add(5 * time.Second)
		for {
			if A.peersTrust(t, C.fp) == "name-clash" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if tr := A.peersTrust(t, B.fp); tr != "verified" {
			t.Errorf("the real bob on A: %q, want verified", tr)
		}
		// An announcement of B's pinned fingerprint that leads to C's
		// control port (C's key): A refuses to talk to it, loudly.
		spoof := C.h.Command(t.Context(), "avahi-publish", "-s", "bob-spoof", "_ebrainpool._tcp", C.port, "v=1", "fp="+B.fp, "name=bob")
		spoof.Start()
		t.Cleanup(func() { spoof.Process.Kill(); spoof.Wait() })
		B.stop() // only the spoofed announcement of B's fingerprint is left
		deadline = time.Now().Add(8 * time.Second)
		for {
			spoofed := false
			for _, p := range A.peers(t) {
				spoofed = spoofed || (p.Fingerprint == B.fp && p.Address == C.h.IP.String())
			}
			if spoofed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("A never saw the spoofed announcement alone: %+v", A.peers(t))
			}
			time.Sleep(100 * time.Millisecond)
		}
		r := A.u.Run(t, "apps", B.fp)
		if r.Code == 0 || !strings.Contains(r.Stderr, "key changed") {
			t.Fatalf("A talked to an impostor of B: %s", r)
		}
		if tr := A.peersTrust(t, B.fp); tr != "changed" {
			t.Fatalf("A lists the impostor of B as %q, want changed", tr)
		}
	})
}

func (n *lanNode) peersTrust(t *testing.T, fp string) string {
	for _, p := range n.peers(t) {
		if p.Fingerprint == fp {
			return p.Trust
		}
	}
	return ""
}

func xlogoPids(uid int) []int {
	var out []int
	for _, pid := range testenv.PidsOfUIDs(uid, uid) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "xlogo" {
			out = append(out, pid)
		}
	}
	return out
}

func waitGone(t *testing.T, uid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(xlogoPids(uid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("xlogo still runs in the sandbox: %v", xlogoPids(uid))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
