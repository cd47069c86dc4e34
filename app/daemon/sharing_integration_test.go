package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"golang.org/x/crypto/ssh"
)

// The integration test runs a daemon as a throwaway user in a copy of this
// test binary ("child mode", below), because a sandbox manager is made for
// the process's own user. Its Elevate asks the test (root) over a socket,
// standing in for pkexec and polkit.
const (
	childPolkitEnv = "EBP_DAEMON_TEST_POLKIT" // the socket: child mode
	childBinEnv    = "EBP_DAEMON_TEST_BIN"    // the ebrainpool binary
)

func TestMain(m *testing.M) {
	if sock := os.Getenv(childPolkitEnv); sock != "" {
		os.Exit(sharingChild(sock, os.Getenv(childBinEnv)))
	}
	if os.Getenv(childSettingsEnv) != "" {
		os.Exit(settingsChild(os.Getenv(childBinEnv)))
	}
	os.Exit(m.Run())
}

// elevation is one request of the child's Elevate and its answer.
type elevation struct {
	Argv   []string
	Output []byte
	Status int
}

// Sharing that was unavailable for missing setup becomes available
// through SetUpSharing without a restart: the real `ebrainpool setup` runs
// as root where pkexec would run it, the daemon swaps in a sandbox manager,
// announces it, and a peer's request that was refused is granted in a
// sandbox that really starts.
func TestSetUpSharingWithoutRestart(t *testing.T) {
	testenv.RequireRoot(t)
	// The sandbox started after the setup has a FUSE home.
	testenv.RequireFuse(t)
	bin, cleanup, err := testenv.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	u := testenv.NewUser(t, bin, false)

	// A copy of this test binary the user can run, and the "polkit" socket.
	dir, err := os.MkdirTemp("", "ebp-daemon-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(dir, "daemon.test")
	if err := copyFile(self, child); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "polkit.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls [][]string
	want := []string{"pkexec", child, "setup", "--user", u.Name}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var e elevation
			if err := json.NewDecoder(c).Decode(&e); err == nil {
				mu.Lock()
				calls = append(calls, e.Argv)
				mu.Unlock()
				e.Status = 127 // pkexec: could not run it
				if reflect.DeepEqual(e.Argv, want) {
					// argv[1] is this test binary (the child's
					// executable): the real one stands in for it.
					cmd := exec.Command(bin, e.Argv[2:]...)
					e.Output, err = cmd.CombinedOutput()
					e.Status = cmd.ProcessState.ExitCode()
					if err != nil && e.Status <= 0 {
						e.Output, e.Status = []byte(err.Error()), 127
					}
				}
				json.NewEncoder(c).Encode(e)
			}
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := u.Exec(ctx, child, "-test.run=^$")
	cmd.Env = append(cmd.Env, childPolkitEnv+"="+sock, childBinEnv+"="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the daemon as %s: %v\n%s", u.Name, err, out)
	}
	t.Logf("the daemon as %s:\n%s", u.Name, lastLinesOf(out, 15))
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(calls, [][]string{want}) {
		t.Errorf("elevated %q, want exactly once %q", calls, want)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

func lastLinesOf(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sharingChild is the daemon side of TestSetUpSharingWithoutRestart, run
// as the throwaway user: it returns 0 when everything held, else prints
// what did not and returns 1.
func sharingChild(sock, bin string) int {
	if err := runSharingChild(sock, bin); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "child: all checks held")
	return 0
}

func runSharingChild(sock, bin string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	apps := filepath.Join(home, "share")
	if err := os.MkdirAll(filepath.Join(apps, "applications"), 0o755); err != nil {
		return err
	}
	entry := "[Desktop Entry]\nType=Application\nName=Test App\nExec=/bin/true\n"
	if err := os.WriteFile(filepath.Join(apps, "applications", "test-app.desktop"), []byte(entry), 0o644); err != nil {
		return err
	}
	dirs := config.Dirs{Config: filepath.Join(home, ".config", "ebrainpool"), State: filepath.Join(home, ".local", "state", "ebrainpool"), Home: home}
	// No idle stop: the sandbox stays until the test user is removed (an
	// idle stop scheduled as Run ends would keep the host's Close waiting).
	st := config.Defaults("tester", "test")
	st.IdleStop = 0
	if err := os.MkdirAll(dirs.Config, 0o700); err != nil {
		return err
	}
	if err := config.Save(dirs.SettingsFile(), st); err != nil {
		return err
	}
	d, err := New(Options{
		Dirs:        dirs,
		Listen:      "127.0.0.1:0",
		NoDiscovery: true, NoAPI: true,
		AppDirs: []string{apps},
		Sandbox: sandbox.Config{GuestBinary: bin},
		Logger:  log,
		Elevate: func(ctx context.Context, argv []string) ([]byte, error) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			if err := json.NewEncoder(c).Encode(elevation{Argv: argv}); err != nil {
				return nil, err
			}
			var e elevation
			if err := json.NewDecoder(c).Decode(&e); err != nil {
				return nil, err
			}
			if e.Status != 0 {
				return e.Output, exitStatus(e.Status)
			}
			return e.Output, nil
		},
	})
	if err != nil {
		return err
	}
	if err := d.SetShared("test-app", true); err != nil {
		return err
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	peer := control.Peer{Fingerprint: identity.FingerprintOf(key), Key: key, Name: "tester",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}

	// Before: unavailable for missing setup, and peers are refused.
	if err := d.SandboxError(); !errors.Is(err, sandbox.ErrNotSetUp) || !d.CanSetUpSharing() {
		return fmt.Errorf("before setup: sharing error %v, can set up %v; want missing setup", err, d.CanSetUpSharing())
	}
	var r *control.RefusedError
	if _, err := d.host.Catalog(context.Background(), peer); !errors.As(err, &r) || !strings.Contains(r.Reason, "one-time setup has not been done") {
		return fmt.Errorf("before setup, a peer asking for the catalog got %v, want the setup refusal", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := d.Events(ctx)
	changed := make(chan Event, 4)
	go func() {
		for ev := range events {
			switch ev.Kind {
			case EventSharingChanged:
				changed <- ev
			case EventRequestPending:
				d.AnswerFull(ev.Request.ID, true, false, false)
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()

	if err := d.SetUpSharing(ctx); err != nil {
		return fmt.Errorf("SetUpSharing: %w", err)
	}
	select {
	case ev := <-changed:
		if ev.Err != "" {
			return fmt.Errorf("sharing-changed says sharing is still unavailable: %s", ev.Err)
		}
	case <-time.After(30 * time.Second):
		return errors.New("no sharing-changed event after the setup")
	}
	if err := d.SandboxError(); err != nil || d.CanSetUpSharing() || d.notSharing() != nil {
		return fmt.Errorf("after setup: sharing error %v, can set up %v, peers told %v", err, d.CanSetUpSharing(), d.notSharing())
	}

	// After, without a restart: the catalog, and a launch whose sandbox
	// starts.
	list, err := d.host.Catalog(ctx, peer)
	if err != nil || len(list) != 1 || list[0].ID != "test-app" {
		return fmt.Errorf("after setup, the catalog: %+v, %v", list, err)
	}
	grant, err := d.host.Launch(ctx, peer, "test-app", func(string) {})
	if err != nil {
		return fmt.Errorf("after setup, a launch: %w", err)
	}
	running := false
	for _, i := range d.SandboxUsage() {
		running = running || i.Peer == string(peer.Fingerprint) && i.Running
	}
	if !running {
		return fmt.Errorf("no running sandbox for the peer after its launch was granted: %+v", d.SandboxUsage())
	}
	if err := d.EndSession(grant.Session); err != nil {
		return err
	}
	// Available now: nothing more to set up, and nothing elevated again.
	if err := d.SetUpSharing(ctx); err != nil {
		return fmt.Errorf("SetUpSharing once sharing is available: %w", err)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			return fmt.Errorf("Run: %w", err)
		}
	case <-time.After(30 * time.Second):
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		return errors.New("Run did not end (its goroutines above)")
	}
	fmt.Fprintf(os.Stderr, "child: launch granted on port %d after setup, without a restart\n", grant.Port)
	return nil
}
