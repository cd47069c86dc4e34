//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	apiName = "io.github.ebrainpool.EBrainPool1"
	apiPath = "/io/github/ebrainpool/EBrainPool1"
)

// busctl calls a method of the user's running daemon on the user bus.
func (u desktopUser) busctl(t *testing.T, method string) (string, error) {
	t.Helper()
	out, err := u.Exec(t.Context(), "busctl", "--user", "call", "--timeout=300", apiName, apiPath, apiName, method).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestSetUpSharingThroughPolkit: a user who was never set up starts the
// app; "Set up sharing" (the daemon's SetUpSharing, what the Settings
// button and the tray item call) runs the setup through the real pkexec
// and polkitd with the package's polkit action, and sharing becomes
// available without a restart.
func TestSetUpSharingThroughPolkit(t *testing.T) {
	const action = "/usr/share/polkit-1/actions/io.github.ebrainpool.EBrainPool.policy"
	if _, err := os.Stat(action); err != nil {
		t.Fatalf("the package's polkit action is not installed: %v", err)
	}
	u := newDesktopUser(t, false)
	log := u.systemdRun(t, "app-ebrainpool@autostart", nil, "daemon", "--no-discovery", "--listen", "127.0.0.1:0")
	if _, _, text := waitBanner(t, log); !strings.Contains(text, "one-time setup") {
		t.Fatalf("the daemon of a user without setup does not say so:\n%s", text)
	}
	// The API's name comes a moment after the banner.
	var st string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st, err = u.busctl(t, "SharingStatus"); err == nil {
			break
		}
	}
	if err != nil || !strings.HasPrefix(st, "bbs false true") {
		t.Fatalf("SharingStatus before setup: %v %s", err, st)
	}

	t.Run("without an authentication agent pkexec cannot ask, and the error says so", func(t *testing.T) {
		out, err := u.busctl(t, "SetUpSharing")
		if err == nil || !strings.Contains(out, "pkexec") {
			t.Fatalf("SetUpSharing without a polkit agent: %v %s", err, out)
		}
		t.Logf("error shown: %s", out)
		if _, err := os.Stat("/var/lib/ebrainpool/" + u.Name); err == nil {
			t.Fatal("setup ran without authorization")
		}
	})

	t.Run("authorized: setup runs and sharing becomes available", func(t *testing.T) {
		// What an administrator's rule (or an agent's "yes") gives.
		rule := fmt.Sprintf(`polkit.addRule(function(action, subject) {
    if (action.id == "io.github.ebrainpool.EBrainPool.setup" && subject.user == %q) return polkit.Result.YES;
});
`, u.Name)
		const rules = "/etc/polkit-1/rules.d/60-ebrainpool-vmtest.rules"
		if err := os.WriteFile(rules, []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(rules)
		if out, err := exec.Command("systemctl", "restart", "polkit").CombinedOutput(); err != nil {
			t.Fatalf("restarting polkit: %v %s", err, out)
		}
		t0 := time.Now()
		if out, err := u.busctl(t, "SetUpSharing"); err != nil {
			t.Fatalf("SetUpSharing: %v %s", err, out)
		}
		t.Logf("setup through pkexec took %s", time.Since(t0).Round(time.Millisecond))
		if st, err := u.busctl(t, "SharingStatus"); err != nil || !strings.HasPrefix(st, "bbs true") {
			t.Fatalf("SharingStatus after setup: %v %s", err, st)
		}
		if _, err := os.Stat("/var/lib/ebrainpool/" + u.Name + "/containers"); err != nil {
			t.Fatalf("setup did not run: %v", err)
		}
	})
}
