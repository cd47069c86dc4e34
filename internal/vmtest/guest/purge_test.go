//go:build vmguest

package guest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPurge runs last (the package is gone afterwards): `apt-get purge`
// removes the program and everything setup made, for every user, and
// leaves other users' subordinate ids alone.
func TestPurge(t *testing.T) {
	const name = "ebppurge"
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	defer exec.Command("userdel", "-r", name).Run()
	// useradd gave the user ranges; take them away so that setup adds its own.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		exec.Command("sed", "-i", "/^"+name+":/d", f).Run()
	}
	before, _ := os.ReadFile("/etc/subuid")
	out, err := exec.Command(bin, "setup", "--user", name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "added") {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if out, err := exec.Command("apt-get", "purge", "-y", "ebrainpool").CombinedOutput(); err != nil {
		t.Fatalf("apt-get purge: %v\n%s", err, out)
	} else {
		t.Logf("apt-get purge:\n%s", out)
	}
	for _, p := range []string{bin, "/var/lib/ebrainpool", "/usr/share/doc/ebrainpool"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there after purge", p)
		}
	}
	after, _ := os.ReadFile("/etc/subuid")
	if string(after) != string(before) {
		t.Errorf("/etc/subuid after purge:\n%s\nwant as before setup:\n%s", after, before)
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "ebrainpool").CombinedOutput(); strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") {
		t.Errorf("dpkg still lists the package: %s", out)
	}
}
