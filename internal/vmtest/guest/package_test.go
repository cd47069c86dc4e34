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
	// The sandboxes' homes are FUSE file systems (the disk limit, tested by
	// the sandbox package's tests run here): udev makes /dev/fuse 0666.
	if st, err := os.Stat("/dev/fuse"); err != nil {
		t.Errorf("/dev/fuse: %v", err)
	} else if st.Mode().Perm()&0o666 != 0o666 {
		t.Errorf("udev left /dev/fuse mode %04o, not 0666", st.Mode().Perm())
	}
	if b, err := os.ReadFile(os.Getenv("VMTEST_SHARE") + "/install.log"); err == nil {
		t.Logf("apt-get install:\n%s", b)
	}
}
