package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"golang.org/x/crypto/ssh"
)

// runTestDaemon is a test daemon (no discovery, no API) that shares one
// app, "test-app", and runs until the test ends. Sharing counts as
// available (the sandbox is never reached by what these tests ask);
// prepare, if set, runs before Run.
func runTestDaemon(t *testing.T, prepare func(d *Daemon)) *Daemon {
	t.Helper()
	d := newTestDaemon(t, Options{})
	d.sbErr = nil
	if prepare != nil {
		prepare(d)
	}
	apps := filepath.Join(d.opts.AppDirs[0], "applications")
	if err := os.MkdirAll(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	entry := "[Desktop Entry]\nType=Application\nName=Test App\nExec=/bin/true\n"
	if err := os.WriteFile(filepath.Join(apps, "test-app.desktop"), []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.SetShared("test-app", true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return d
}

// dialDaemon connects to the daemon's control port as a new peer.
func dialDaemon(t *testing.T, d *Daemon) *control.Client {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	c, err := control.Dial(context.Background(), d.ControlAddr().String(), control.ClientConfig{Identity: signer, Name: "peer", Expect: d.Identity().Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Settings apply as the settings window says, to a running daemon: the
// display name at once (peers' hellos), sharing at once, the consent
// timeout for the requests asked after the save (a prompt already shown
// keeps its deadline). The sandbox limits and the idle stop, which need
// real sandboxes, are tested by TestSettingsApplyToSandboxes.
func TestSettingsApplyWhileRunning(t *testing.T) {
	d := runTestDaemon(t, nil)
	save := func(t *testing.T, change func(s *config.Settings)) {
		t.Helper()
		s := d.Settings()
		change(&s)
		if err := d.SaveSettings(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("display name", func(t *testing.T) {
		// A client learns the host's name from the hello of a request.
		hello := func() string {
			c := dialDaemon(t, d)
			if _, err := c.Catalog(context.Background()); err != nil {
				t.Fatal(err)
			}
			return c.Name
		}
		before := hello()
		save(t, func(s *config.Settings) { s.DisplayName = "renamed host" })
		if got := hello(); got != "renamed host" || before == got {
			t.Errorf("a peer connecting after the save is told %q (before: %q), want %q", got, before, "renamed host")
		}
	})
	t.Run("sharing off and on", func(t *testing.T) {
		save(t, func(s *config.Settings) { s.Sharing = false })
		if _, err := dialDaemon(t, d).Catalog(context.Background()); !control.IsRefused(err, control.CodeSharingOff) {
			t.Errorf("catalog with sharing off: %v, want %q", err, control.CodeSharingOff)
		}
		save(t, func(s *config.Settings) { s.Sharing = true })
		if apps, err := dialDaemon(t, d).Catalog(context.Background()); err != nil || len(apps) != 1 {
			t.Errorf("catalog with sharing on again: %+v, %v", apps, err)
		}
	})
	t.Run("consent timeout", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := d.Events(ctx)
		// Asked before the save: the old timeout (60s).
		early := make(chan error, 1)
		go func() { _, err := dialDaemon(t, d).Launch(ctx, "test-app", nil); early <- err }()
		waitPending(t, events)
		save(t, func(s *config.Settings) { s.ConsentTimeout = config.Duration(5 * time.Second) })
		start := time.Now()
		_, err := dialDaemon(t, d).Launch(context.Background(), "test-app", nil)
		took := time.Since(start)
		if !control.IsRefused(err, control.CodeTimeout) {
			t.Fatalf("a request asked after the save: %v, want %q", err, control.CodeTimeout)
		}
		if took < 4*time.Second || took > 15*time.Second {
			t.Errorf("the request asked after the save waited %v for an answer, want the new 5s", took.Round(time.Millisecond))
		}
		pending := d.Pending()
		if len(pending) != 1 {
			t.Fatalf("pending %+v, want the request asked before the save", pending)
		}
		if left := time.Until(time.Unix(pending[0].Deadline, 0)); left < 40*time.Second {
			t.Errorf("the prompt asked before the save has %v left, want its own 60s deadline", left.Round(time.Second))
		}
		cancel()
		<-early
	})
}

func waitPending(t *testing.T, events <-chan Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Kind == EventRequestPending {
				return
			}
		case <-timeout:
			t.Fatal("no request pending")
		}
	}
}

// A new display name is announced at once through discovery: a peer on
// the (simulated) LAN sees it, and the renamed daemon does not announce
// its own peers gone while its discovery restarts.
func TestSettingsNameReannounced(t *testing.T) {
	testenv.RequireRoot(t)
	bed := testbed.New(t, 2)
	start := func(h *testbed.Host) *Daemon {
		dir := t.TempDir()
		d, err := New(Options{
			Dirs:   config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir},
			Listen: "127.0.0.1:0", NoAPI: true, SystemBus: h.DialBus,
			AppDirs: []string{filepath.Join(dir, "share")},
			Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}},
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		s := d.Settings()
		s.DisplayName = "daemon on " + h.Name
		if err := d.SaveSettings(s); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-ran })
		return d
	}
	a, b := start(bed.Host(1)), start(bed.Host(2))
	nameSeen := func(by *Daemon, of *Daemon) string {
		for _, p := range by.Peers() {
			if p.Fingerprint == string(of.Identity().Fingerprint()) {
				return p.Name
			}
		}
		return ""
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", what)
			}
		}
	}
	waitUntil("the peers see each other", func() bool { return nameSeen(b, a) == "daemon on host1" && nameSeen(a, b) == "daemon on host2" })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := a.Events(ctx)
	s := a.Settings()
	s.DisplayName = "renamed on host1"
	saved := time.Now()
	if err := a.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	waitUntil("the peer sees the new name", func() bool { return nameSeen(b, a) == "renamed on host1" })
	t.Logf("the peer saw the new name %v after the save", time.Since(saved).Round(time.Millisecond))
	if nameSeen(a, b) != "daemon on host2" {
		t.Errorf("the renamed daemon lost its peer (it sees %q)", nameSeen(a, b))
	}
	for len(events) > 0 {
		if ev := <-events; ev.Kind == EventPeerRemoved {
			t.Errorf("the renamed daemon announced %s gone", ev.Peer.Fingerprint)
		}
	}
}

// A request nobody answers is denied by the daemon's timeout, as "no
// answer" (not as the user's deny), and the deadline it shows, in whole
// seconds, is never before that timeout.
func TestUnansweredRequestDeadline(t *testing.T) {
	d := runTestDaemon(t, nil)
	s := d.Settings()
	s.ConsentTimeout = config.Duration(5 * time.Second)
	if err := d.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := d.Events(ctx)
	done := make(chan error, 1)
	go func() { _, err := dialDaemon(t, d).Launch(context.Background(), "test-app", nil); done <- err }()
	var deadline time.Time
	for deadline.IsZero() {
		select {
		case ev := <-events:
			if ev.Kind == EventRequestPending {
				deadline = time.Unix(ev.Request.Deadline, 0)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no request pending")
		}
	}
	var resolved Event
	for resolved.Kind == "" {
		select {
		case ev := <-events:
			if ev.Kind == EventRequestResolved {
				resolved = ev
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the request was not resolved")
		}
	}
	// A countdown to the deadline shown reaches zero at the timeout or
	// after it, never before (an unrounded Unix() did, by up to a second).
	if now := time.Now(); now.After(deadline.Add(50*time.Millisecond)) || now.Before(deadline.Add(-time.Second)) {
		t.Errorf("resolved at %v, the deadline shown was %v", now.Format(time.StampMilli), deadline.Format(time.StampMilli))
	}
	if resolved.Allowed || resolved.Reason != "no answer before the timeout" {
		t.Errorf("resolved allowed=%v reason %q, want the timeout's", resolved.Allowed, resolved.Reason)
	}
	if err := <-done; !control.IsRefused(err, control.CodeTimeout) {
		t.Errorf("the requester got %v, want %q", err, control.CodeTimeout)
	}
}
