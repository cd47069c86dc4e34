package vmtest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/internal/vmtest"
)

// guestPackages are what the tests inside the VM use, besides the .deb's
// own dependencies: a requester's X display and X clients, the LXC tools
// the benchmark compares with, polkit.
var guestPackages = []string{"xvfb", "xauth", "x11-apps", "x11-utils", "xdotool", "lxc", "polkitd", "pkexec", "procps", "psmisc"}

// runScript is what the VM runs: install the .deb with apt as a user would,
// then the guest tests (internal/vmtest/guest) and the sandbox package's
// own tests against the installed binary (-short: fewer cycles where a test
// repeats, as each takes seconds under emulation), then the purge test (last: the
// package is gone afterwards).
const runScript = `#!/bin/sh
cd /mnt/host0
export CI=true VMTEST_SHARE=/mnt/host0 EBRAINPOOL_BIN=/usr/bin/ebrainpool
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
env DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/host0/ebrainpool.deb > install.log 2>&1
echo $? > install.status
./guest.test -test.v -test.timeout 20m -test.skip TestPurge > guest.out 2>&1
./sandbox.test -test.v -test.short -test.timeout 20m > sandbox.out 2>&1
./guest.test -test.v -test.timeout 5m -test.run TestPurge > purge.out 2>&1
journalctl -b --no-pager > journal.log 2>&1
exit 0
`

// TestDebian12Desktop boots Debian 12 (systemd 252, pure cgroup v2, logind
// with user managers, AppArmor on), installs the project's .deb in it with
// apt, and runs the guest tests and the sandbox tests there, once; each
// guest test is reported here as a subtest.
func TestDebian12Desktop(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64", "debootstrap", "mkfs.ext4", "dpkg-deb", "truncate", "go")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cache := testenv.BuildCache(t, "vm")
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancel()
	share, err := os.MkdirTemp("", "ebp-vm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(share)
	os.Chmod(share, 0o755)
	var log bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("host-side log:\n%s", vmtest.Tail(log.String(), 60))
		}
	}()

	t0 := time.Now()
	deb := buildDeb(t, repo, share)
	deps := debDeps(t, deb)
	for _, c := range []struct{ out, pkg string }{
		{"guest.test", "./internal/vmtest/guest"},
		{"sandbox.test", "./sandbox"},
	} {
		cmd := exec.Command("go", "test", "-c", "-tags", "vmguest", "-o", filepath.Join(share, c.out), c.pkg)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c %s: %v\n%s", c.pkg, err, out)
		}
	}
	t.Logf("package and test binaries built in %s (Depends and Recommends: %s)", time.Since(t0).Round(time.Second), strings.Join(deps, " "))

	t0 = time.Now()
	root, err := vmtest.Root(ctx, cache, append(deps, guestPackages...), &log)
	if err != nil {
		t.Fatalf("VM root: %v", err)
	}
	t.Logf("VM root ready in %s", time.Since(t0).Round(time.Second))
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(runScript), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := vmtest.Boot(ctx, vmtest.BootConfig{Root: root, Share: share, Image: filepath.Join(cache, fmt.Sprintf("disk-%d.img", os.Getpid())), Log: &log})
	if err != nil {
		t.Fatalf("booting the VM: %v\nconsole:\n%s", err, vmtest.Tail(res.Serial, 40))
	}
	t.Logf("VM ran for %s", res.Took.Round(time.Second))

	if b, _ := os.ReadFile(filepath.Join(share, "install.status")); strings.TrimSpace(string(b)) != "0" {
		out, _ := os.ReadFile(filepath.Join(share, "install.log"))
		t.Fatalf("apt-get install ./ebrainpool.deb in the VM failed:\n%s", out)
	}
	for _, f := range []struct{ file, pkg string }{
		{"guest.out", "guest"},
		{"sandbox.out", "sandbox"},
		{"purge.out", "guest"},
	} {
		replay(t, share, f.file, f.pkg)
	}
	if b, err := os.ReadFile(filepath.Join(share, "bench.md")); err == nil {
		t.Logf("sandbox benchmark in the VM (software emulation):\n%s", b)
		os.WriteFile(filepath.Join(cache, "bench.md"), b, 0o644)
	}
	if t.Failed() {
		if b, err := os.ReadFile(filepath.Join(share, "journal.log")); err == nil {
			t.Logf("the VM's journal (tail):\n%s", vmtest.Tail(string(b), 80))
		}
	}
}

// buildDeb builds the package with packaging/deb/build.sh (or the script
// $VMTEST_DEB_BUILD names) into share.
func buildDeb(t *testing.T, repo, share string) string {
	t.Helper()
	script := filepath.Join(repo, "packaging/deb/build.sh")
	if s := os.Getenv("VMTEST_DEB_BUILD"); s != "" {
		script = s
	}
	out, err := exec.Command(script, filepath.Join(share, "dist")).CombinedOutput()
	if err != nil {
		t.Fatalf("packaging/deb/build.sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	deb := filepath.Join(share, "ebrainpool.deb")
	if err := os.Rename(strings.TrimSpace(lines[len(lines)-1]), deb); err != nil {
		t.Fatalf("build.sh output: %v\n%s", err, out)
	}
	os.RemoveAll(filepath.Join(share, "dist"))
	return deb
}

var depName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+`)

// debDeps lists the packages the .deb depends on and recommends (the first
// of each alternative), which the VM root gets so apt installs it offline.
func debDeps(t *testing.T, deb string) []string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-f", deb, "Depends", "Recommends").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -f: %v\n%s", err, out)
	}
	var pkgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		_, list, _ := strings.Cut(sc.Text(), ":")
		for _, dep := range strings.Split(list, ",") {
			alt, _, _ := strings.Cut(strings.TrimSpace(dep), "|")
			if name := depName.FindString(strings.TrimSpace(alt)); name != "" {
				pkgs = append(pkgs, name)
			}
		}
	}
	return pkgs
}

// event is one line of `go tool test2json`.
type event struct {
	Action, Test, Output string
}

// replay reports the tests of one guest test binary's -test.v output as
// subtests named pkg/TestName.
func replay(t *testing.T, share, file, pkg string) {
	raw, err := os.ReadFile(filepath.Join(share, file))
	if err != nil {
		t.Errorf("%s: the guest tests did not run: %v", file, err)
		return
	}
	cmd := exec.Command("go", "tool", "test2json", "-p", pkg)
	cmd.Stdin = bytes.NewReader(raw)
	js, err := cmd.Output()
	if err != nil {
		t.Errorf("test2json %s: %v", file, err)
		return
	}
	type result struct {
		action string
		out    strings.Builder
	}
	results := map[string]*result{}
	var order []string
	var pkgFail bool
	sc := bufio.NewScanner(bytes.NewReader(js))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Test == "" {
			if e.Action == "fail" {
				pkgFail = true
			}
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		r := results[top]
		if r == nil {
			r = &result{}
			results[top] = r
			order = append(order, top)
		}
		r.out.WriteString(e.Output)
		if e.Test == top && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
			r.action = e.Action
		}
	}
	for _, name := range order {
		r := results[name]
		t.Run(pkg+"/"+name, func(t *testing.T) {
			t.Log("\n" + r.out.String())
			switch r.action {
			case "pass":
			case "skip":
				t.Skip("skipped in the VM")
			default:
				t.Fail()
			}
		})
	}
	if pkgFail && !t.Failed() {
		t.Errorf("%s: the guest test binary failed outside any test:\n%s", file, vmtest.Tail(string(raw), 40))
	}
	if len(order) == 0 {
		t.Errorf("%s: no test ran:\n%s", file, vmtest.Tail(string(raw), 40))
	}
}
