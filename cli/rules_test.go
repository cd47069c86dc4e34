package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

// rules, revoke and unblock through a real daemon's API, on the rules it
// keeps in its consent.json (the CLI or the popup made them earlier).
func TestRulesRevokeUnblock(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	const bob, carol, mallory = "SHA256:bobbobbobbobbobbobbob", "SHA256:carolcarolcarolcarol", "SHA256:mallorymallorymallory"
	since := time.Date(2026, 3, 2, 14, 4, 31, 0, time.UTC)
	rules := consent.Rules{Version: consent.RulesVersion,
		Allowed: map[string][]consent.AppRule{bob: {{ID: "gimp.desktop", Command: "gimp", Name: "GIMP", Since: since}}},
		Denied:  map[string][]consent.AppRule{carol: {{ID: "xterm.desktop", Name: "XTerm"}}},
		Blocked: map[string]string{mallory: "mallory"},
	}
	d := realDaemonPrepared(t, bus.Addr, func(state string) {
		writeJSONFile(t, filepath.Join(state, "consent.json"), rules)
	})
	waitAPI(t)

	code, out, errs := run(t, "rules")
	if code != ExitOK {
		t.Fatalf("rules: exit %d, %s", code, errs)
	}
	for _, want := range []string{
		identity.Fingerprint(bob).Short(), "GIMP", "always allow", since.Local().Format(time.DateTime),
		"XTerm", "always deny",
		"BLOCKED", "mallory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rules lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "rules", "--json")
	var v struct{ Rules, Blocked []map[string]any }
	if err := json.Unmarshal([]byte(out), &v); code != ExitOK || err != nil || len(v.Rules) != 2 || len(v.Blocked) != 1 {
		t.Fatalf("rules --json: exit %d, %v:\n%s", code, err, out)
	}

	// Every change is a RulesChanged signal for the bus's other clients.
	watch, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if err := watch.AddMatchSignal(dbus.WithMatchMember("RulesChanged")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 16)
	watch.Signal(sigs)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // in stdout, or stderr when code != 0
	}{
		{"revoke by fingerprint prefix and app name", []string{"revoke", strings.TrimPrefix(bob, "SHA256:")[:6], "GIMP"}, ExitOK, "will be asked again before running GIMP"},
		{"revoke again", []string{"revoke", "bob", "GIMP"}, ExitFailure, "no remembered decision"},
		{"revoke unknown app", []string{"revoke", carol, "gimp"}, ExitFailure, "no remembered decision"},
		{"revoke every app", []string{"revoke", carol}, ExitOK, "before running any app"},
		{"unblock by name", []string{"unblock", "mallory"}, ExitOK, "mallory is no longer blocked"},
		{"unblock someone not blocked", []string{"unblock", "mallory"}, ExitFailure, `"mallory" is not blocked`},
		{"unblock without a peer", []string{"unblock"}, ExitUsage, "expected exactly one PEER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.args...)
			got := out
			if tc.code != ExitOK {
				got = errs
			}
			if code != tc.code || !strings.Contains(got, tc.out) {
				t.Fatalf("%q: exit %d (want %d), stdout %q, stderr %q; want %q", tc.args, code, tc.code, out, errs, tc.out)
			}
			if code == ExitOK {
				select {
				case <-sigs:
				case <-time.After(5 * time.Second):
					t.Errorf("%q: no RulesChanged signal", tc.args)
				}
			}
		})
	}
	if r := d.Rules(); len(r) != 0 {
		t.Errorf("rules left: %+v", r)
	}
	if b := d.BlockedPeers(); len(b) != 0 {
		t.Errorf("still blocked: %+v", b)
	}
	code, out, _ = run(t, "rules")
	if code != ExitOK || !strings.Contains(out, "No remembered decisions") || !strings.Contains(out, "Nobody is blocked") {
		t.Errorf("rules after revoking: exit %d\n%s", code, out)
	}
}

// waitAPI waits until the daemon answers on the bus.
func waitAPI(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := run(t, "sessions"); code == ExitOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon's API never answered")
		}
	}
}

// realDaemonPrepared runs a daemon (no discovery) on loopback in a
// directory of its own, with its API on bus ("" for none), until the test
// ends; prepare, if set, runs on its state directory before it starts (its
// consent.json, for one).
func realDaemonPrepared(t *testing.T, bus string, prepare func(state string)) *daemon.Daemon {
	t.Helper()
	dir := t.TempDir()
	dirs := config.Dirs{Config: filepath.Join(dir, "config"), State: filepath.Join(dir, "state"), Home: dir}
	if prepare != nil {
		prepare(dirs.State)
	}
	opts := daemon.Options{
		Dirs: dirs, Listen: "127.0.0.1:0", NoDiscovery: true, NoAPI: bus == "", AppDirs: []string{dir},
		Sandbox: sandbox.Config{Layout: sandbox.Layout{Root: filepath.Join(dir, "lib"), CgroupBase: "ebrainpool-test-not-set-up", CgroupMounts: "/sys/fs/cgroup"}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if bus != "" {
		conn, err := dbus.Connect(bus)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		opts.SessionBus = conn
	}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}
