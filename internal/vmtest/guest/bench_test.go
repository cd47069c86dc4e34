//go:build vmguest

package guest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSandboxBenchmark times cold start to the first process and warm exec
// through eBrainPool against Debian's lxc-unpriv-start / lxc-unpriv-attach
// on the same container, in one run, and writes the table to the share
// (docs/benchmarks.md quotes it). Numbers are from software emulation.
func TestSandboxBenchmark(t *testing.T) {
	u := newDesktopUser(t, true)
	r := u.MustRun(t, "sandbox", "bench", "--cycles", "6", "--warm", "3", "--cli", "bench-peer")
	t.Logf("\n%s", r.Stdout)
	if dir := os.Getenv("VMTEST_SHARE"); dir != "" {
		os.WriteFile(filepath.Join(dir, "bench.md"), []byte(r.Stdout), 0o644)
	}
}
