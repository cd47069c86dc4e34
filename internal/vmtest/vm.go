// Package vmtest boots a real Debian 12 desktop init (systemd 252 with pure
// cgroup v2, logind and user managers, AppArmor on) under qemu, for the
// tests where systemd's behaviour matters. The development machines and CI
// hosts have no systemd, and KVM does not work on them, so the VM runs under
// software emulation (TCG): about 35 s to boot to the test script.
//
// The root file system is made once with debootstrap and cached under the
// build directory (keyed by its package list); each boot gets a fresh ext4
// image made from it (mkfs.ext4 -d, no loop mount). The VM has no network
// device: files go in and results come out through a 9p share mounted at
// /mnt/host0, where a oneshot unit runs run.sh after multi-user.target and
// powers the VM off.
package vmtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Suite is the Debian release the VM runs.
const Suite = "bookworm"

// rootVersion changes when the way a root is configured changes, so that
// cached roots made the old way are rebuilt.
const rootVersion = "1"

// BasePackages make a booted desktop-like system: systemd with logind and
// per-user managers on a user bus, AppArmor, a kernel.
var BasePackages = []string{
	"systemd", "systemd-sysv", "dbus", "dbus-user-session", "libpam-systemd", "udev", "kmod",
	"initramfs-tools", "linux-image-amd64", "apparmor", "iproute2", "procps", "sudo", "ca-certificates",
}

// Mirror is the Debian mirror apt uses on this machine.
func Mirror() string {
	b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					return f[0]
				}
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// Root returns a root file system with BasePackages and extra, building it
// with debootstrap into cacheDir the first time (a few minutes). Roots for
// other package lists in cacheDir are removed.
func Root(ctx context.Context, cacheDir string, extra []string, log io.Writer) (string, error) {
	pkgs := append(append([]string(nil), BasePackages...), extra...)
	sort.Strings(pkgs)
	pkgs = dedupe(pkgs)
	sum := sha256.Sum256([]byte(rootVersion + " " + Suite + " " + strings.Join(pkgs, ",")))
	key := hex.EncodeToString(sum[:6])
	dir := filepath.Join(cacheDir, "root-"+key)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	olds, _ := filepath.Glob(filepath.Join(cacheDir, "root-*"))
	for _, o := range olds {
		os.RemoveAll(o)
	}
	tmp := dir + ".tmp"
	fmt.Fprintf(log, "vmtest: building the VM root (debootstrap %s, %d packages) into %s\n", Suite, len(pkgs), dir)
	t := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","), Suite, tmp, Mirror())
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	if err := configureRoot(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(strings.Join(pkgs, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "vmtest: VM root ready in %s\n", time.Since(t).Round(time.Second))
	return dir, nil
}

func dedupe(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// testUnit runs the share's run.sh once the system is up, records its exit
// status, and powers off.
const testUnit = `[Unit]
Description=eBrainPool VM test script
After=multi-user.target systemd-logind.service
RequiresMountsFor=/mnt/host0

[Service]
Type=oneshot
ExecStart=/bin/sh -c '/mnt/host0/run.sh > /mnt/host0/run.log 2>&1; echo $? > /mnt/host0/run.status'
ExecStopPost=/bin/systemctl poweroff --no-block
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
`

func configureRoot(root string) error {
	files := map[string]string{
		"etc/fstab":                            "/dev/vda / ext4 rw 0 1\nhost0 /mnt/host0 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0\n",
		"etc/hostname":                         "vmtest\n",
		"etc/systemd/system/vmtest.service":    testUnit,
		"etc/systemd/journald.conf.d/vm.conf":  "[Journal]\nStorage=volatile\n",
		"etc/apt/apt.conf.d/99vmtest-no-fetch": "Acquire::Languages \"none\";\n",
	}
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "mnt/host0"), 0o755); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"systemctl", "enable", "vmtest.service"},
		{"systemctl", "mask", "getty@tty1.service", "serial-getty@ttyS0.service"},
		{"passwd", "-d", "root"},
	} {
		if out, err := exec.Command("chroot", append([]string{root}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// BootConfig is one boot of the VM.
type BootConfig struct {
	Root  string // from Root
	Share string // mounted at /mnt/host0; must hold an executable run.sh
	// Image is where the disk image is written (a 6 GiB sparse file).
	Image    string
	MemoryMB int // default 4096
	CPUs     int // default 2
	Log      io.Writer
}

// Result is what the test script left in the share.
type Result struct {
	Status int    // run.sh's exit status
	Output string // run.sh's output
	Serial string // the console log (the kernel's and systemd's messages)
	Took   time.Duration
}

// Boot makes the disk image, boots the VM and waits until it powers off
// (or ctx ends, when qemu is killed).
func Boot(ctx context.Context, c BootConfig) (*Result, error) {
	if c.MemoryMB == 0 {
		c.MemoryMB = 4096
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	for _, f := range []string{"run.log", "run.status"} {
		os.Remove(filepath.Join(c.Share, f))
	}
	os.Remove(c.Image)
	if err := exec.Command("truncate", "-s", "6G", c.Image).Run(); err != nil {
		return nil, fmt.Errorf("creating %s: %w", c.Image, err)
	}
	defer os.Remove(c.Image)
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-d", c.Root, c.Image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 -d %s: %v\n%s", c.Root, err, out)
	}
	serial := c.Image + ".serial"
	defer os.Remove(serial)
	args := []string{
		"-accel", "tcg,thread=multi", "-cpu", "max", "-m", fmt.Sprint(c.MemoryMB), "-smp", fmt.Sprint(c.CPUs),
		"-kernel", filepath.Join(c.Root, "vmlinuz"), "-initrd", filepath.Join(c.Root, "initrd.img"),
		"-append", "root=/dev/vda rw console=ttyS0 quiet",
		"-drive", "file=" + c.Image + ",format=raw,if=virtio",
		"-nic", "none", "-nographic", "-no-reboot", "-monitor", "none",
		"-serial", "file:" + serial,
		"-virtfs", "local,path=" + c.Share + ",mount_tag=host0,security_model=none",
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout, cmd.Stderr = c.Log, c.Log
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		werr = fmt.Errorf("the VM did not power off in time: %w", ctx.Err())
	}
	r := &Result{Took: time.Since(t), Status: -1}
	if b, err := os.ReadFile(serial); err == nil {
		r.Serial = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(c.Share, "run.log")); err == nil {
		r.Output = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(c.Share, "run.status")); err == nil {
		fmt.Sscan(string(b), &r.Status)
	} else if werr == nil {
		werr = errors.New("the test script did not finish (no run.status): see the console log")
	}
	return r, werr
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
