//go:build vmguest

package guest

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandboxDiskLimit on a systemd desktop with the installed .deb (its
// fuse2fs dependency, udev's /dev/fuse, AppArmor with LXC's profile, the
// delegated scope): the guest's home is an image of the limit's size, so
// writing past it fails inside with ENOSPC while the host loses at most
// the limit; df inside shows it; sandbox list shows the use; the data
// survives a stop; a reset frees it.
func TestSandboxDiskLimit(t *testing.T) {
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatalf("/dev/fuse: %v", err)
	}
	t.Logf("/dev/fuse is mode %04o here (udev)", st.Mode().Perm())
	if st.Mode().Perm()&0o666 != 0o666 {
		t.Errorf("udev left /dev/fuse mode %04o, not 0666", st.Mode().Perm())
	}
	u := newDesktopUser(t, true)
	const limit = 128 << 20
	sh := func(script string) (string, string, int) {
		r := u.Run(t, "sandbox", "exec", "disk", "--", "/bin/sh", "-c", script)
		return r.Stdout, r.Stderr, r.Code
	}
	free := func() int64 {
		var fs syscall.Statfs_t
		if err := syscall.Statfs("/var/lib/ebrainpool", &fs); err != nil {
			t.Fatal(err)
		}
		return int64(fs.Bavail) * fs.Bsize
	}
	type entry struct {
		Peer      string `json:"peer"`
		Name      string `json:"name"`
		DiskBytes int64  `json:"disk_bytes"`
		DiskLimit *int64 `json:"disk_limit_bytes"`
	}
	list := func() entry {
		var l []entry
		r := u.MustRun(t, "sandbox", "list", "--json")
		if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil || len(l) != 1 {
			t.Fatalf("sandbox list --json: %v\n%s", err, r.Stdout)
		}
		return l[0]
	}

	t0 := time.Now()
	u.MustRun(t, "sandbox", "start", "--disk", "128M", "disk")
	t.Logf("first start (making the home) took %s", time.Since(t0).Round(time.Millisecond))
	out, _, _ := sh("df -B1 --output=size,target ~ | tail -1; grep ' /home/guest ' /proc/self/mountinfo; cat /proc/1/attr/current")
	t.Logf("inside: %s", out)
	f := strings.Fields(out)
	if size, _ := strconv.ParseInt(f[0], 10, 64); len(f) < 2 || f[1] != "/home/guest" || size > limit || size < limit*9/10 {
		t.Fatalf("df inside: %q, want about %d at /home/guest", out, limit)
	}

	before := free()
	t0 = time.Now()
	out, errs, _ := sh("dd if=/dev/zero of=$HOME/fill bs=1M count=256 conv=fsync; echo status=$?; stat -c %s $HOME/fill")
	took := time.Since(t0)
	lost := before - free()
	if !strings.Contains(errs, "No space left on device") || strings.Contains(out, "status=0") {
		t.Fatalf("dd past the limit: %s\n%s", out, errs)
	}
	lines := strings.Fields(out)
	written, _ := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	e := list()
	t.Logf("ENOSPC after %d bytes (%.0f%% of the limit) in %s; the image takes %d bytes; the host's free space fell by %d bytes",
		written, 100*float64(written)/limit, took.Round(time.Millisecond), e.DiskBytes, lost)
	if written < limit*8/10 || e.DiskBytes < written || e.DiskBytes > limit || e.DiskLimit == nil || *e.DiskLimit != limit {
		t.Errorf("sandbox list: %+v after %d bytes written", e, written)
	}
	if lost > limit+32<<20 {
		t.Errorf("the host's free space fell by %d bytes, more than the limit", lost)
	}

	if _, _, code := sh("rm ~/fill; echo kept > ~/f"); code != 0 {
		t.Fatal("writing after ENOSPC failed")
	}
	u.MustRun(t, "sandbox", "stop", "disk")
	u.MustRun(t, "sandbox", "start", "--disk", "128M", "disk")
	if out, _, _ := sh("cat ~/f"); out != "kept\n" {
		t.Fatalf("after stop and start: %q", out)
	}
	// The deleted file's blocks stay allocated in the image (what the host
	// lost) until a reset; a reset of the running sandbox starts it again
	// with a new home.
	if e := list(); e.DiskBytes < written {
		t.Errorf("before reset the home takes %d bytes, want the %d written", e.DiskBytes, written)
	}
	u.MustRun(t, "sandbox", "reset", "disk")
	if e := list(); e.DiskBytes > 16<<20 {
		t.Fatalf("after reset the home takes %d bytes", e.DiskBytes)
	}
	if out, _, _ := sh("ls -A ~"); out != "" {
		t.Fatalf("the home after reset: %q", out)
	}
	u.MustRun(t, "sandbox", "stop", "disk")
}
