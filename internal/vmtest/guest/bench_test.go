//go:build vmguest

package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSandboxBenchmark times cold start to the first process and warm exec
// through eBrainPool against Debian's lxc-unpriv-start / lxc-unpriv-attach
// on the same container, in one run, and writes the table to the share
// (docs/benchmarks.md quotes it). Numbers are from software emulation.
func TestSandboxBenchmark(t *testing.T) {
	u := newDesktopUser(t, true)
	// Minutes under emulation (MustRun's 2 are not enough on a loaded
	// machine).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := u.Command(ctx, "sandbox", "bench", "--cycles", "6", "--warm", "3", "--cli", "bench-peer")
	var errs strings.Builder
	cmd.Stderr = &errs
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sandbox bench: %v\n%s%s", err, out, errs.String())
	}
	t.Logf("\n%s", out)
	if dir := os.Getenv("VMTEST_SHARE"); dir != "" {
		os.WriteFile(filepath.Join(dir, "bench.md"), out, 0o644)
	}
}
