package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/godbus/dbus/v5"
)

// exitStatus is a process's exit status as an error, as *exec.ExitError
// carries it.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitStatus) ExitCode() int { return int(e) }

// newTestDaemon is a daemon made by New with private directories, no bus
// and no discovery, and a sandbox layout nobody set up: its sharing is
// unavailable for missing setup (sandbox.ErrNotSetUp).
func newTestDaemon(t *testing.T, opts Options) *Daemon {
	t.Helper()
	dir := t.TempDir()
	opts.Dirs = config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir}
	opts.Listen = "127.0.0.1:0"
	opts.NoDiscovery, opts.NoAPI = true, true
	opts.AppDirs = []string{filepath.Join(dir, "share")}
	opts.Sandbox.Layout = sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.ln.Close()
		d.consent.Close()
	})
	return d
}

// elevator is a fake Options.Elevate: it records each argv and answers
// with out and err.
type elevator struct {
	calls [][]string
	out   string
	err   error
}

func (e *elevator) elevate(_ context.Context, argv []string) ([]byte, error) {
	e.calls = append(e.calls, argv)
	return []byte(e.out), e.err
}

func setupArgv(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"pkexec", exe, "setup", "--user", u.Username}
}

func TestSetUpSharing(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	noLimits := fmt.Errorf("%w: systemd does not delegate the cpu controller(s) to user@1000.service", sandbox.ErrNoLimits)
	for _, tc := range []struct {
		name      string
		flatpak   bool
		cause     error // replaces New's (missing setup) when set
		available bool  // sharing available before the call
		fake      elevator
		elevated  bool   // Elevate called, with pkexec EXE setup --user NAME
		wantIs    error  // errors.Is(err, wantIs), or nil
		wantText  string // err.Error() == wantText, or contains it when wantIs is set
	}{
		{name: "cancelled", fake: elevator{err: exitStatus(126)}, elevated: true,
			wantIs: ErrSetupCancelled, wantText: "setup was cancelled or not authorized"},
		{name: "authentication failed", fake: elevator{out: "Error executing command as another user: Not authorized\n", err: exitStatus(127)}, elevated: true,
			wantIs: ErrSetupAuth, wantText: "authentication failed, or pkexec could not run the setup (pkexec: Error executing command as another user: Not authorized)"},
		{name: "setup failed", fake: elevator{out: "setting up u\n  subordinate ids: ...\nebrainpool setup: writing /etc/subuid: read-only file system\n", err: exitStatus(1)}, elevated: true,
			wantText: "the setup failed: writing /etc/subuid: read-only file system"},
		{name: "setup failed silently", fake: elevator{err: exitStatus(3)}, elevated: true,
			wantText: "the setup failed (exit status 3) without saying why"},
		{name: "no pkexec", fake: elevator{err: &exec.Error{Name: "pkexec", Err: exec.ErrNotFound}}, elevated: true,
			wantText: "setting up sharing needs pkexec, which is not installed: install the pkexec package, or run `sudo ebrainpool setup --user " + me.Username + "` in a terminal"},
		{name: "setup ran but did not help", fake: elevator{out: "done\n"}, elevated: true,
			wantIs: sandbox.ErrNotSetUp, wantText: "the setup finished, but sharing is still not available: "},
		{name: "cannot limit sandboxes", cause: noLimits, wantIs: noLimits, wantText: noLimits.Error()},
		{name: "liblxc", cause: errors.New("liblxc failed"), wantText: "liblxc failed"},
		{name: "flatpak", flatpak: true, wantIs: ErrFlatpak, wantText: ErrFlatpak.Error()},
		{name: "already available", available: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := tc.fake
			d := newTestDaemon(t, Options{InFlatpak: tc.flatpak, Elevate: fake.elevate})
			if !tc.flatpak && !errors.Is(d.SandboxError(), sandbox.ErrNotSetUp) {
				t.Fatalf("a daemon on a layout nobody set up: sharing error %v, want missing setup", d.SandboxError())
			}
			switch {
			case tc.cause != nil:
				d.sbErr = tc.cause
			case tc.available:
				d.sbErr = nil
			}
			canSetUp := !tc.flatpak && tc.cause == nil && !tc.available
			if got := d.CanSetUpSharing(); got != canSetUp {
				t.Errorf("CanSetUpSharing = %v, want %v", got, canSetUp)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events := d.Events(ctx)
			err := d.SetUpSharing(ctx)

			var want [][]string
			if tc.elevated {
				want = [][]string{setupArgv(t)}
			}
			if !reflect.DeepEqual(fake.calls, want) {
				t.Errorf("Elevate called with %q, want %q", fake.calls, want)
			}
			switch {
			case tc.wantText == "" && err != nil:
				t.Errorf("SetUpSharing: %v, want nil", err)
			case tc.wantText == "":
			case err == nil:
				t.Errorf("SetUpSharing succeeded, want %q", tc.wantText)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Errorf("SetUpSharing: %v, want errors.Is %v", err, tc.wantIs)
			case tc.wantIs != nil && !strings.Contains(err.Error(), tc.wantText):
				t.Errorf("SetUpSharing: %q, want it to contain %q", err, tc.wantText)
			case tc.wantIs == nil && err.Error() != tc.wantText:
				t.Errorf("SetUpSharing: %q, want %q", err, tc.wantText)
			}
			if tc.cause != nil && err != tc.cause {
				t.Errorf("SetUpSharing returned %v, want the cause itself (%v)", err, tc.cause)
			}
			// Only a retry (setup ran) announces a change, here the new
			// cause of a setup that did not help.
			var got []Event
			for len(events) > 0 {
				got = append(got, <-events)
			}
			if tc.name == "setup ran but did not help" {
				if len(got) != 1 || got[0].Kind != EventSharingChanged || !strings.Contains(got[0].Err, "one-time setup has not been done") {
					t.Errorf("events %+v, want one sharing-changed with the cause", got)
				}
			} else if len(got) != 0 {
				t.Errorf("events %+v, want none", got)
			}
			// Peers are still told the cause, when sharing is unavailable.
			if why := d.notSharing(); (why == nil) != tc.available {
				t.Errorf("peers are told %v", why)
			}
		})
	}
}

// A context ended while pkexec waits (the app quit during the dialog) is
// what SetUpSharing reports, not pkexec's death by signal.
func TestSetUpSharingCanceled(t *testing.T) {
	d := newTestDaemon(t, Options{Elevate: func(ctx context.Context, argv []string) ([]byte, error) {
		<-ctx.Done()
		return nil, errors.New("signal: killed")
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.SetUpSharing(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetUpSharing: %v, want the context's error", err)
	}
}

// The default Elevate runs pkexec from PATH with exactly the argv, and
// its exit status 126 is a cancellation; without pkexec the error names
// the package and the command to run instead.
func TestSetUpSharingRunsPkexec(t *testing.T) {
	bin := t.TempDir()
	args := filepath.Join(t.TempDir(), "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > " + args + "\necho 'Error executing command as another user: Request dismissed'\nexit 126\n"
	if err := os.WriteFile(filepath.Join(bin, "pkexec"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	d := newTestDaemon(t, Options{})
	if err := d.SetUpSharing(context.Background()); !errors.Is(err, ErrSetupCancelled) {
		t.Fatalf("SetUpSharing with pkexec exiting 126: %v, want %v", err, ErrSetupCancelled)
	}
	b, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	want := setupArgv(t)
	want[0] = filepath.Join(bin, "pkexec")
	if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("pkexec ran as %q, want %q", got, want)
	}

	t.Setenv("PATH", t.TempDir())
	err = d.SetUpSharing(context.Background())
	if err == nil || !strings.Contains(err.Error(), "install the pkexec package, or run `sudo ebrainpool setup --user ") {
		t.Fatalf("SetUpSharing without pkexec: %v", err)
	}
}

// Without setup, peers asking for apps are refused with the cause.
func TestNotSetUpRefusesPeers(t *testing.T) {
	d := newTestDaemon(t, Options{Elevate: (&elevator{err: exitStatus(126)}).elevate})
	_, err := d.host.Catalog(context.Background(), control.Peer{Name: "bob", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}})
	var r *control.RefusedError
	if !errors.As(err, &r) || r.Code != control.CodeSetupMissing || !strings.Contains(r.Reason, "one-time setup has not been done") {
		t.Fatalf("catalog without setup: %v", err)
	}
}

// The daemon ends when its session bus goes away (the desktop session
// ended), instead of running on with neither its API nor its tray.
func TestRunEndsWithTheSessionBus(t *testing.T) {
	bus := testenv.PrivateBus(t)
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dir := t.TempDir()
	d, err := New(Options{
		Dirs:   config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir},
		Listen: "127.0.0.1:0", NoDiscovery: true, SessionBus: conn, AppDirs: []string{filepath.Join(dir, "share")},
		Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(t.Context()) }()
	// Up: its API answers on the bus.
	testenv.WaitBusName(t, conn, dbusapi.BusName, 10*time.Second)
	bus.Kill()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon still runs 10 s after its session bus went away")
	}
}
