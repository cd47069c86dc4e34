package deb_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// Cached Debian trees for the tests, in the repository's git-ignored build/
// directory: made once with debootstrap (about a minute each), then only
// read (the install test works on a copy).
const (
	mirror = "http://deb.debian.org/debian"
	// bookworm: a minimal Debian 12, where the package is installed.
	bookwormCache = "deb-chroot/bookworm"
	// trixie-apparmor: Debian 13 with AppArmor 4, whose parser knows the
	// profile's abi <abi/4.0> (Debian 12's 3.0 does not).
	trixieCache = "deb-chroot/trixie-apparmor"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// cachedChroot returns the cached tree name (under build/), making it with
// debootstrap first if it is missing (or lacks the file need). Concurrent test runs wait for each
// other (a lock file); a half-made tree is never used (made as .partial,
// renamed when complete).
func cachedChroot(t testing.TB, name, suite, need string, include ...string) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "debootstrap", "chroot")
	dir := testenv.BuildCache(t, name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(dir), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, need)); err == nil {
		return dir
	}
	partial := dir + ".partial"
	for _, d := range []string{dir, partial} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--variant=minbase"}
	if len(include) > 0 {
		args = append(args, "--include="+strings.Join(include, ","))
	}
	args = append(args, suite, partial, mirror)
	t.Logf("making the cached %s tree (debootstrap %s), once", suite, strings.Join(args, " "))
	start := time.Now()
	if out, err := exec.Command("debootstrap", args...).CombinedOutput(); err != nil {
		t.Fatalf("debootstrap %s: %v\n%s", strings.Join(args, " "), err, tail(out, 40))
	}
	if err := os.Rename(partial, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s made in %s", dir, time.Since(start).Round(time.Second))
	return dir
}

// chrootEnv is the environment commands get inside a chroot.
var chrootEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "HOME=/root", "TERM=dumb"}

// inChroot runs a command inside root and returns its combined output.
// apt-get gets no pseudo-terminal (there is no /dev/pts).
func inChroot(root string, args ...string) (string, error) {
	if len(args) > 0 && args[0] == "apt-get" {
		args = append([]string{"apt-get", "-o", "Dpkg::Use-Pty=0"}, args[1:]...)
	}
	cmd := exec.Command("chroot", append([]string{root, "env", "-i"}, append(chrootEnv, args...)...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("chroot %s %s: %w", root, strings.Join(args, " "), err)
	}
	return b.String(), err
}

// copyChroot copies the cached tree to a temporary directory, with /proc
// mounted there until the test ends (unmounted before the copy is removed,
// also when the test fails).
func copyChroot(t *testing.T, cache string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", "--reflink=auto", cache, root).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", cache, err, out)
	}
	proc := filepath.Join(root, "proc")
	if out, err := exec.Command("mount", "-t", "proc", "proc", proc).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s: %v\n%s", proc, err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(proc, 0); err != nil {
			syscall.Unmount(proc, syscall.MNT_DETACH)
		}
	})
	// Services are never started in the chroot.
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}
