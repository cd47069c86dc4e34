package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// realDaemon runs a daemon (no discovery) on loopback in a directory of
// its own, with its API on bus ("" for none), until the test ends.
func realDaemon(t *testing.T, bus string) *daemon.Daemon {
	t.Helper()
	return realDaemonPrepared(t, bus, nil)
}

// runIn is run with stdin.
func runIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// `peer add` through the real daemon's API: the peer's name and short
// fingerprint are shown, it is added only when the key is confirmed
// (--yes, or --fingerprint matching), listed with how it answers, and
// removed again. Without a terminal it does not ask.
func TestPeerAddCommand(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	a := realDaemon(t, bus.Addr)
	b := realDaemon(t, "")
	bAddr := b.ControlAddr().String()
	bShort := b.Identity().Fingerprint().Short()
	other := identity.RefOf(a.Identity().Fingerprint()).Short()
	// The API is up once ListPeers answers.
	deadline := time.Now().Add(5 * time.Second)
	for code, _, _ := run(t, "peers"); code != 0; code, _, _ = run(t, "peers") {
		if time.Now().After(deadline) {
			t.Fatal("the daemon's API never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code, _, errs := runIn(t, "y\n", "peer", "add", bAddr); code != ExitUsage || !strings.Contains(errs, "--yes") {
		t.Fatalf("peer add without a terminal: exit %d, stderr %q", code, errs)
	}
	if code, out, errs := run(t, "peer", "add", "--fingerprint", other, bAddr); code != 1 || !strings.Contains(errs, "not the "+other) || !strings.Contains(out, bShort) {
		t.Fatalf("peer add --fingerprint of another key: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if len(a.AddedPeers()) != 0 {
		t.Fatalf("a refused add added: %+v", a.AddedPeers())
	}
	code, out, errs := run(t, "peer", "add", "--fingerprint", strings.ToLower(bShort), bAddr)
	if code != 0 || !strings.Contains(out, bShort) || !strings.Contains(out, b.Settings().DisplayName) {
		t.Fatalf("peer add --fingerprint: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = run(t, "peers")
	if code != 0 || !strings.Contains(out, bShort) || !strings.Contains(out, bAddr+": reachable") {
		t.Fatalf("peers: exit %d:\n%s", code, out)
	}
	code, out, _ = run(t, "peers", "--json")
	var ps []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 1 || ps[0]["added"] != bAddr || ps[0]["reach"] != "reachable" || ps[0]["last_seen"] == nil {
		t.Fatalf("peers --json: exit %d: %s", code, out)
	}
	if code, _, errs := run(t, "peer", "remove", bAddr); code != 0 {
		t.Fatalf("peer remove: exit %d, %s", code, errs)
	}
	if len(a.AddedPeers()) != 0 || len(a.Peers()) != 0 {
		t.Fatalf("after peer remove: %+v", a.AddedPeers())
	}
	code, out, errs = run(t, "peer", "add", "--yes", "--json", bAddr)
	var added map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added["short_fingerprint"] != bShort {
		t.Fatalf("peer add --yes --json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := run(t, "peer", "add", "--yes", "127.0.0.1:1"); code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
		t.Fatalf("peer add of an address nobody answers on: exit %d, %q", code, errs)
	}
	if code, _, errs := run(t, "peer", "add", "--yes", "not a host"); code != ExitUsage {
		t.Fatalf("peer add of a bad address: exit %d, %q", code, errs)
	}
}

// A second start with --peer hands the peer to the eBrainPool that runs
// (never exit 0 dropping it); --listen cannot be handed and says so.
func TestSecondStartHandsPeers(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_STATE_HOME", "")
	a := realDaemon(t, bus.Addr)
	b := realDaemon(t, "")
	deadline := time.Now().Add(5 * time.Second)
	for code, _, _ := run(t, "peers"); code != 0; code, _, _ = run(t, "peers") {
		if time.Now().After(deadline) {
			t.Fatal("the daemon's API never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	bShort := b.Identity().Fingerprint().Short()
	code, out, errs := run(t, "daemon", "--peer", bShort+"@"+b.ControlAddr().String())
	if code != 0 || !strings.Contains(out, "the running eBrainPool added") {
		t.Fatalf("daemon --peer while one runs: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if ps := a.AddedPeers(); len(ps) != 1 || ps[0].Short != bShort {
		t.Fatalf("the running daemon's added peers: %+v", ps)
	}
	if code, _, errs := run(t, "daemon", "--listen", "127.0.0.1:0"); code == 0 || !strings.Contains(errs, "--listen cannot change it while it runs") {
		t.Fatalf("daemon --listen while one runs: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := run(t, "daemon", "--peer", identity.RefOf(a.Identity().Fingerprint()).Short()+"@"+b.ControlAddr().String()); code == 0 || !strings.Contains(errs, "could not add") {
		t.Fatalf("daemon --peer with a wrong key while one runs: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := run(t, "daemon"); code == 0 || !strings.Contains(errs, "already runs") {
		t.Fatalf("daemon while one runs: exit %d, stderr %q", code, errs)
	}
	// The desktop app started again does the same (its window is not
	// asked for with --show none; no X server is reached before).
	t.Setenv("DISPLAY", ":987")
	if ps := a.AddedPeers(); len(ps) != 1 {
		t.Fatalf("added peers before: %+v", ps)
	}
	if err := a.RemovePeer(b.ControlAddr().String()); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(t, "gui", "--show", "none", "--peer", string(b.Identity().Fingerprint())+"@"+b.ControlAddr().String())
	if code != 0 || !strings.Contains(out, "the running eBrainPool added") || len(a.AddedPeers()) != 1 {
		t.Fatalf("gui --peer while one runs: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := run(t, "gui", "--show", "none", "--no-discovery"); code == 0 || !strings.Contains(errs, "--no-discovery cannot change it") {
		t.Fatalf("gui --no-discovery while one runs: exit %d, stderr %q", code, errs)
	}
}

// Only a terminal is asked: /dev/null (a character device) and a pipe are
// not terminals.
func TestIsTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{null, r} {
		if isTerminal(f) {
			t.Errorf("%s counts as a terminal", f.Name())
		}
	}
	if isTerminal(strings.NewReader("y\n")) {
		t.Error("a string reader counts as a terminal")
	}
}

// --peer KEY@HOST[:PORT][=NAME]: the full fingerprint or its short form,
// host names, IPv4, IPv6 (with a zone), the default port without one.
func TestPeerFlag(t *testing.T) {
	const fp = "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"
	tests := []struct {
		in, addr, name, key string // addr "" for an error
	}{
		{fp + "@192.168.1.20:41527=bob", "192.168.1.20:41527", "bob", fp},
		{"UTQV-QOGX-SEXU-5R65@bob-laptop.example.org", "bob-laptop.example.org:42331", "", "UTQV-QOGX-SEXU-5R65"},
		{"utqvqogxsexu5r65@[fe80::1%eth0]:7000=bob", "[fe80::1%eth0]:7000", "bob", "UTQV-QOGX-SEXU-5R65"},
		{fp + "@2001:db8::20", "[2001:db8::20]:42331", "", fp},
		{"bob@192.168.1.20", "", "", ""},
		{fp + "@bad host", "", "", ""},
		{fp, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var f peerFlag
			err := f.Set(tt.in)
			if tt.addr == "" {
				if err == nil {
					t.Fatalf("Set(%q) accepted: %+v", tt.in, f)
				}
				return
			}
			if err != nil || len(f) != 1 || f[0].addr != tt.addr || f[0].name != tt.name || f[0].ref.String() != tt.key {
				t.Fatalf("Set(%q) = %+v, %v", tt.in, f, err)
			}
		})
	}
}

// The question: only y or yes adds.
func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \n": true, "n\n": false, "\n": false, "sure\n": false, "y": true} {
		var out bytes.Buffer
		got, err := confirm(&out, strings.NewReader(in), "Add? ")
		if err != nil || got != want || out.String() != "Add? " {
			t.Errorf("confirm(%q) = %v, %v (asked %q)", in, got, err, out.String())
		}
	}
	if _, err := confirm(io.Discard, strings.NewReader(""), "Add? "); err == nil {
		t.Error("no answer at all is not an error")
	}
}
