// Package deb_test builds the Debian package and checks what a user gets.
package deb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

func TestDebPackage(t *testing.T) {
	testenv.RequireTools(t, "dpkg-deb", "dpkg")
	out := t.TempDir()
	b, err := exec.Command("./build.sh", out).CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b[strings.LastIndexByte(strings.TrimSpace(string(b)), '\n')+1:]))
	info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --info: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: ebrainpool", "Depends: libc6, liblxc1 | liblxc-common, lxc, uidmap", "postinst"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("package info lacks %q:\n%s", want, info)
		}
	}
	contents, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v", err)
	}
	for _, want := range []string{
		"./usr/bin/ebrainpool",
		"./usr/share/applications/io.github.ebrainpool.EBrainPool.desktop",
		"./usr/share/metainfo/io.github.ebrainpool.EBrainPool.metainfo.xml",
		"./usr/share/icons/hicolor/scalable/apps/io.github.ebrainpool.EBrainPool.svg",
		"./usr/share/icons/hicolor/256x256/apps/io.github.ebrainpool.EBrainPool.png",
	} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("package lacks %s", want)
		}
	}
	if !strings.Contains(string(contents), "-rwxr-xr-x root/root") {
		t.Errorf("binary not root-owned and world-executable:\n%s", contents)
	}
	// Unpacked, the binary runs and answers --help.
	root := filepath.Join(out, "root")
	if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	help, err := exec.Command(filepath.Join(root, "usr/bin/ebrainpool"), "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "sandbox start") {
		t.Fatalf("packaged binary --help: %v\n%s", err, help)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/doc/ebrainpool/README.md")); err != nil {
		t.Errorf("README not packaged: %v", err)
	}
}
