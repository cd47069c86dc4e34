package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// childSettingsEnv switches the test binary into settingsChild (see
// TestMain), run as a throwaway user whose setup is done.
const childSettingsEnv = "EBP_DAEMON_TEST_SETTINGS"

// New sandbox limits saved while the daemon runs apply to the sandboxes
// started afterwards (read from the kernel's cgroup files and the home's
// image, not from the daemon), and a new idle stop to the sessions that end afterwards. On the
// way, a grant's forward into a real sandbox (guest-sshd through attach,
// its claim on stderr) survives a connection with a wrong key.
func TestSettingsApplyToSandboxes(t *testing.T) {
	testenv.RequireRoot(t)
	bin, cleanup, err := testenv.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	u := testenv.NewUser(t, bin, true)
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
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := u.Exec(ctx, child, "-test.run=^$")
	cmd.Env = append(cmd.Env, childSettingsEnv+"=1", childBinEnv+"="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the daemon as %s: %v\n%s", u.Name, err, out)
	}
	t.Logf("the daemon as %s:\n%s", u.Name, lastLinesOf(out, 15))
}

// settingsChild is the daemon side of TestSettingsApplyToSandboxes.
func settingsChild(bin string) int {
	if err := runSettingsChild(bin); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "child: all checks held")
	return 0
}

func runSettingsChild(bin string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
	// Before: default limits, an idle stop far away.
	st := config.Defaults("tester", "test")
	st.IdleStop = config.Duration(time.Hour)
	if err := os.MkdirAll(dirs.Config, 0o700); err != nil {
		return err
	}
	if err := config.Save(dirs.SettingsFile(), st); err != nil {
		return err
	}
	d, err := New(Options{
		Dirs: dirs, Listen: "127.0.0.1:0", NoDiscovery: true, NoAPI: true,
		AppDirs: []string{apps}, Sandbox: sandbox.Config{GuestBinary: bin}, Logger: log,
	})
	if err != nil {
		return err
	}
	if d.SandboxError() != nil {
		return fmt.Errorf("no sandboxes for a user whose setup is done: %w", d.SandboxError())
	}
	if err := d.SetShared("test-app", true); err != nil {
		return err
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	key := signer.PublicKey()
	peer := control.Peer{Fingerprint: identity.FingerprintOf(key), Key: key, Name: "tester",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ev := range d.Events(ctx) {
			if ev.Kind == EventRequestPending {
				d.AnswerFull(ev.Request.ID, true, false, false)
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()

	// launch starts the peer's sandbox and returns its grant and pids.max.
	launch := func() (*control.Grant, string, error) {
		g, err := d.host.Launch(ctx, peer, "test-app", func(string) {})
		if err != nil {
			return nil, "", fmt.Errorf("launch: %w", err)
		}
		d.mu.Lock()
		m := d.sandbox
		d.mu.Unlock()
		pid, err := m.InitPid(string(peer.Fingerprint))
		if err != nil {
			return nil, "", err
		}
		pids, err := cgroupFile(pid, "pids", "pids.max")
		return g, pids, err
	}
	for n, want := range []int{345, 456} {
		disk := 64 + 32*n // MB: the second start grows the home
		s := d.Settings()
		s.Pids = want
		s.DiskMB = disk
		s.IdleStop = config.Duration(2 * time.Second)
		if err := d.SaveSettings(s); err != nil {
			return err
		}
		g, pids, err := launch()
		if err != nil {
			return err
		}
		if pids != fmt.Sprint(want) {
			return fmt.Errorf("a sandbox started after saving %d processes has pids.max %s", want, pids)
		}
		// The home's size, read from its image as the sessions window shows it.
		if u := usageOf(d, string(peer.Fingerprint)); u.DiskLimit != int64(disk)<<20 {
			return fmt.Errorf("a sandbox started after saving %d MB of disk has a home of %d bytes", disk, u.DiskLimit)
		}
		// The session ends: the new idle stop (2s, not an hour) stops it.
		if n == 0 {
			// Through the real endpoint in the sandbox: a connection with
			// a wrong key does not use up the grant, the requester's key
			// is the session, and the app's exit ends it.
			if err := wrongThenRightKey(g, signer); err != nil {
				return err
			}
		} else if err := d.EndSession(g.Session); err != nil {
			return err
		}
		start := time.Now()
		for running(d, string(peer.Fingerprint)) {
			if time.Since(start) > 30*time.Second {
				return errors.New("the sandbox still runs 30s after its session ended, with an idle stop of 2s saved")
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "child: pids.max %s and a %d MB home as saved; stopped %v after its session ended\n", pids, disk, time.Since(start).Round(100*time.Millisecond))
	}
	cancel()
	select {
	case err := <-ran:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not end")
	}
}

func running(d *Daemon, peer string) bool { return usageOf(d, peer).Running }

func usageOf(d *Daemon, peer string) SandboxUsage {
	for _, i := range d.SandboxUsage() {
		if i.Peer == peer {
			return i
		}
	}
	return SandboxUsage{}
}

// cgroupFile reads a file of pid's cgroup of controller (cgroup v1), or
// of its v2 cgroup.
func cgroupFile(pid int, controller, file string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	var v2 string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2 = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == controller {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, f[2], file))
				return strings.TrimSpace(string(v)), err
			}
		}
	}
	if v2 == "" {
		return "", fmt.Errorf("pid %d has no %s cgroup", pid, controller)
	}
	v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", v2, file))
	return strings.TrimSpace(string(v)), err
}

// wrongThenRightKey connects to a grant's forward with another key, then
// with the requester's, whose app (/bin/true) must run and exit 0.
func wrongThenRightKey(g *control.Grant, requester ssh.Signer) error {
	hostKey, err := tunnel.ParseAuthorizedKey(g.HostKey)
	if err != nil {
		return err
	}
	run := func(id ssh.Signer) (int, error) {
		return tunnel.RunApp(context.Background(), tunnel.ClientConfig{
			Addr: net.JoinHostPort(g.Host, fmt.Sprint(g.Port)), HostKey: hostKey, Identity: id,
			User: g.User, Command: g.Command, NoX11: true,
		})
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(priv)
	if _, err := run(other); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		return fmt.Errorf("another key on the grant: %v, want an authentication error", err)
	}
	if st, err := run(requester); err != nil || st != 0 {
		return fmt.Errorf("the requester's key after another one: status %d, %v", st, err)
	}
	fmt.Fprintln(os.Stderr, "child: a wrong key was refused and the requester's key still ran the app in the sandbox")
	return nil
}
