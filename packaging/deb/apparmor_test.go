package deb_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebAppArmorProfile parses the profile with a real AppArmor 4 parser
// (Debian 13's, in a cached chroot: Debian 12's 3.0 has no abi 4.0), without
// loading it (-Q), and checks that a broken copy fails the same check.
func TestDebAppArmorProfile(t *testing.T) {
	src, err := os.ReadFile("apparmor/ebrainpool")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abi <abi/4.0>,", "include <tunables/global>",
		"profile ebrainpool /usr/bin/ebrainpool flags=(unconfined) {", "  userns,", "include if exists <local/ebrainpool>"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("profile lacks %q", want)
		}
	}
	root := cachedChroot(t, trixieCache, "trixie", "usr/sbin/apparmor_parser", "apparmor")
	ver, err := inChroot(root, "apparmor_parser", "--version")
	if err != nil || !strings.Contains(ver, "version 4.") {
		t.Fatalf("apparmor_parser in %s: %v\n%s", root, err, ver)
	}
	dir, err := os.MkdirTemp(filepath.Join(root, "tmp"), "ebp-profile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	parse := func(name string, profile []byte) (string, error) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, profile, 0o644); err != nil {
			t.Fatal(err)
		}
		return inChroot(root, "apparmor_parser", "-Q", "-K", "-T", strings.TrimPrefix(p, root))
	}
	if out, err := parse("ebrainpool", src); err != nil {
		t.Errorf("%v\n%s", err, out)
	} else {
		t.Logf("apparmor_parser %s: the profile parses", strings.TrimSpace(strings.SplitN(ver, "\n", 2)[0]))
	}
	broken := strings.Replace(string(src), "userns,", "userns", 1)
	if out, err := parse("broken", []byte(broken)); err == nil {
		t.Errorf("a broken profile (no comma after userns) parses too: the check cannot fail\n%s", out)
	}
}
