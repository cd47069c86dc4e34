package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A sandbox's mounts as its init sees them (the host reads the same file).
const homeMountinfo = `66 43 254:0 /var/lib/ebrainpool/u/containers/ebp-1/rootfs / rw,relatime shared:2 - ext4 /dev/vda rw
75 66 0:45 / /run rw,nosuid,nodev,noexec,relatime shared:21 - tmpfs tmpfs rw,size=16384k,mode=755
44 75 254:0 /var/lib/ebrainpool/u/containers/ebp-1/rootfs/home/.ebp-store /run/ebp-store rw,relatime shared:2 - ext4 /dev/vda rw
45 66 0:48 / /home rw,nosuid,nodev,noexec,relatime shared:38 - tmpfs tmpfs rw,size=64k,mode=755
46 45 0:49 / /home/guest rw,nosuid,nodev,relatime shared:39 - fuse.ext4 /run/ebp-store/home.img rw,user_id=0,group_id=0,allow_other
`

func TestCheckHomeMounts(t *testing.T) {
	img := filepath.Join(t.TempDir(), "home.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 128<<20)
	ms := parseMountinfo([]byte(homeMountinfo))
	if g := ms["/home/guest"]; g.fstype != "fuse.ext4" || g.source != "/run/ebp-store/home.img" {
		t.Fatalf("parsed /home/guest as %+v", g)
	}
	if err := checkHomeMounts(ms, img, 128<<20); err != nil {
		t.Fatalf("a limited home refused: %v", err)
	}
	for _, tc := range []struct {
		name, mountinfo string
		size            int64
		want            string
	}{
		{"image of another size", homeMountinfo, 256 << 20, "the home's image is 134217728 bytes, not 268435456"},
		{"home not mounted", strings.Join(strings.Split(homeMountinfo, "\n")[:4], "\n"), 128 << 20, "/home/guest is not the home's image"},
		{"home not covered", strings.Replace(homeMountinfo, "/home rw,nosuid", "/hom rw,nosuid", 1), 128 << 20, "/home is not covered"},
		{"another file system at the home", strings.Replace(homeMountinfo, "fuse.ext4 /run/ebp-store/home.img", "tmpfs tmpfs", 1), 128 << 20, "/home/guest is not the home's image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHomeMounts(parseMountinfo([]byte(tc.mountinfo)), img, tc.size)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if used, limit := diskUsage(filepath.Join(t.TempDir(), "none")); used != 0 || limit != 0 {
		t.Errorf("a sandbox without a home uses %d of %d", used, limit)
	}
}

func TestCheckDiskTools(t *testing.T) {
	dir := t.TempDir()
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		os.WriteFile(filepath.Join(dir, tool), []byte("#!/bin/sh\n"), 0o755)
	}
	err := checkDiskTools("/dev/null", []string{dir})
	if err == nil || !strings.Contains(err.Error(), "fuse2fs is not installed") || !strings.Contains(err.Error(), "fix: sudo apt install fuse2fs") {
		t.Fatalf("without fuse2fs: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "fuse2fs"), []byte("#!/bin/sh\n"), 0o755)
	if err := checkDiskTools("/dev/null", []string{dir}); err != nil {
		t.Fatalf("with everything: %v", err)
	}
	private := filepath.Join(dir, "fuse")
	os.WriteFile(private, nil, 0o600)
	os.Chmod(private, 0o600)
	err = checkDiskTools(private, []string{dir})
	if err == nil || !strings.Contains(err.Error(), "/dev/fuse is not usable by unprivileged users (mode 0600") || !strings.Contains(err.Error(), "fix: sudo chmod 0666 /dev/fuse") {
		t.Fatalf("a private device: %v", err)
	}
	err = checkDiskTools(filepath.Join(dir, "missing"), []string{dir})
	if err == nil || !strings.Contains(err.Error(), "/dev/fuse is missing") || !strings.Contains(err.Error(), "modprobe fuse") {
		t.Fatalf("no device: %v", err)
	}
	if err := CheckDiskLimit(); err != nil && !errors.Is(err, ErrNoLimits) {
		t.Fatalf("CheckDiskLimit: %v is not ErrNoLimits", err)
	}
}

func TestWaitInit(t *testing.T) {
	rootfs := t.TempDir()
	store := filepath.Dir(homeStatus(rootfs))
	os.MkdirAll(store, 0o711)
	write := func(st initStatus) {
		b, _ := json.Marshal(st)
		os.WriteFile(homeStatus(rootfs), b, 0o644)
	}
	// An older start's report does not count; this one's does.
	write(initStatus{Start: "old", Ready: true})
	go func() {
		time.Sleep(50 * time.Millisecond)
		write(initStatus{Start: "new", Ready: true, Notes: []string{"n"}})
	}()
	st, err := waitInit(rootfs, os.Getpid(), "new", 10*time.Second)
	if err != nil || !st.Ready || len(st.Notes) != 1 {
		t.Fatalf("waitInit = %+v, %v", st, err)
	}
	write(initStatus{Start: "bad", Error: "fuse2fs is not installed", NoLimit: true})
	if st, err := waitInit(rootfs, os.Getpid(), "bad", time.Second); err != nil || st.Ready || !st.NoLimit {
		t.Fatalf("a failed start: %+v, %v", st, err)
	}
	// An init that exited without a report of this start.
	cmd := exec.Command("true")
	cmd.Run()
	if _, err := waitInit(rootfs, cmd.Process.Pid, "none", 10*time.Second); err == nil || !strings.Contains(err.Error(), "without a report") {
		t.Fatalf("a dead init: %v", err)
	}
	if _, err := waitInit(rootfs, os.Getpid(), "none", 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready after") {
		t.Fatalf("no report in time: %v", err)
	}
}

func TestLimitError(t *testing.T) {
	e := fuseError("mode 0600", errors.New("permission denied"))
	var le *limitError
	if !errors.As(e, &le) || !strings.Contains(e.Error(), "\n  fix: ") {
		t.Fatalf("fuseError: %v", e)
	}
	if imageSize(1<<30+4095) != 1<<30 {
		t.Fatalf("imageSize rounds to %d", imageSize(1<<30+4095))
	}
}
