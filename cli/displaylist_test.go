package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// display through a real daemon's API: the modes chosen (in its
// settings.json) are listed, also as JSON, with the peer away (named by
// its short fingerprint); one is said, and taken back, by PEER APP.
func TestDisplayListAndReset(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	const bob = "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"
	short := identity.Fingerprint(bob).Short()
	d := realDaemonPrepared(t, bus.Addr, func(state string) {
		s := config.Settings{DisplayName: "me"}.WithTrusted(bob, "xterm", true).WithIsolated(bob, "org.gnome.Calculator", true)
		writeJSONFile(t, filepath.Join(filepath.Dir(state), "config", "settings.json"), s)
	})
	waitAPI(t)

	code, out, errs := run(t, "display")
	if code != ExitOK {
		t.Fatalf("display: exit %d, %s", code, errs)
	}
	for _, want := range []string{"PEER", short, "xterm", "TRUSTED", "org.gnome.Calculator", "isolated", "display PEER APP protected"} {
		if !strings.Contains(out, want) {
			t.Errorf("display lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "display", "--json")
	var v []map[string]string
	if err := json.Unmarshal([]byte(out), &v); code != ExitOK || err != nil || len(v) != 2 || v[0]["peer_fingerprint"] != bob || v[0]["mode"] == "" {
		t.Fatalf("display --json: exit %d, %v:\n%s", code, err, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // in stdout, or stderr when code != 0
	}{
		{"say a mode", []string{"display", short, "xterm"}, ExitOK, "xterm: display: TRUSTED"},
		{"take it back", []string{"display", short, "xterm", "protected"}, ExitOK, "xterm: display: protected"},
		{"an unknown mode", []string{"display", short, "xterm", "shared"}, ExitUsage, `unknown display mode "shared"`},
		{"a peer alone", []string{"display", short}, ExitUsage, "expected no argument, PEER APP, or PEER APP MODE"},
		{"json with a peer", []string{"display", "--json", short, "xterm"}, ExitUsage, "--json prints the list"},
		{"an unknown peer", []string{"display", "carol", "xterm", "trusted"}, ExitFailure, "carol"},
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
		})
	}
	if d.Settings().Trusts(bob, "xterm") || !d.Settings().Isolates(bob, "org.gnome.Calculator") {
		t.Errorf("settings after the reset: %v %v", d.Settings().TrustedDisplay, d.Settings().IsolatedDisplay)
	}
	code, out, _ = run(t, "display")
	if code != ExitOK || strings.Contains(out, "xterm") || !strings.Contains(out, "org.gnome.Calculator") {
		t.Errorf("display after the reset: exit %d\n%s", code, out)
	}
}

// writeJSONFile writes v as JSON to path (0600, its directory made 0700):
// a daemon's file before it starts.
func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
