package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Tools lists the programs the test bed runs.
var requiredTools = []string{"ip", "unshare", "nsenter", "sh", "sleep", "hostname", "dbus-daemon", "avahi-daemon"}

// Missing returns why the test bed cannot run here, or "" when it can.
// extra names more programs a test needs inside the hosts.
func Missing(extra ...string) string {
	if os.Geteuid() != 0 {
		return "test bed needs root (network and mount namespaces)"
	}
	for _, tool := range append(append([]string{}, requiredTools...), extra...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("test bed needs %s: %v", tool, err)
		}
	}
	return ""
}

// Require skips t when the test bed cannot run here, printing why; under
// CI=true it fails t instead, so nothing silently skips in CI.
func Require(t testing.TB, extra ...string) {
	t.Helper()
	reason := Missing(extra...)
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}
