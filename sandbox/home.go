package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebrainpool/ebrainpool/internal/mountinfo"
)

// The host's side of the guest's home (homeinit.go has the init's): what
// this host needs for it, waiting for the init's report, the check from
// outside and the disk use.

// toolDirs are where the container (the host's /usr) has its programs.
var toolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// CheckDiskLimit reports why sandboxes cannot get their disk limit on this
// host (ErrNoLimits, with the cause and the fix), or nil: fuse2fs and the
// ext4 tools are installed, and /dev/fuse is usable by unprivileged users
// (the containers' root is one). Start checks it before every start.
func CheckDiskLimit() error {
	err := checkDiskTools("/dev/fuse", toolDirs)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoLimits, err)
	}
	return nil
}

func checkDiskTools(dev string, dirs []string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return fuseError("missing", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Mode&0o006 != 0o006 {
		return fuseError(fmt.Sprintf("mode %04o", st.Mode&0o7777), unix.EACCES)
	}
	find := func(tool string) bool {
		for _, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, tool)); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o001 != 0 {
				return true
			}
		}
		return false
	}
	if !find("fuse2fs") {
		return &limitError{"fuse2fs is not installed (it mounts each sandbox's home, a file system image of the disk limit's size)", "sudo apt install fuse2fs"}
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if !find(tool) {
			return &limitError{tool + " is not installed (the sandboxes' homes are ext4 images)", "sudo apt install e2fsprogs"}
		}
	}
	return nil
}

// newStartID marks one start's report from the init.
func newStartID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// homeImage is the host path of a container's home image.
func homeImage(rootfs string) string {
	return filepath.Join(rootfs, strings.TrimPrefix(storeDir, "/"), imageName)
}

// homeStatus is the host path of the init's report.
func homeStatus(rootfs string) string {
	return filepath.Join(rootfs, strings.TrimPrefix(storeDir, "/"), statusName)
}

// expectedImage is the size the home's image has once the container runs
// with limit diskBytes: the limit's, or the image's own when it is larger
// (the init never shrinks it).
func expectedImage(rootfs string, diskBytes int64) (size int64, kept bool) {
	size = imageSize(diskBytes)
	if st, err := os.Stat(homeImage(rootfs)); err == nil && st.Size() > size {
		return st.Size(), true
	}
	return size, false
}

// waitInit waits for the init's report of this start (startID): the home
// is mounted and the sandbox is ready, or why not. It gives up when the
// init exits without one, or after timeout.
func waitInit(rootfs string, initPid int, startID string, timeout time.Duration) (initStatus, error) {
	path := homeStatus(rootfs)
	read := func() (initStatus, bool) {
		b, err := os.ReadFile(path)
		if err != nil {
			return initStatus{}, false
		}
		var st initStatus
		if json.Unmarshal(b, &st) != nil || st.Start != startID {
			return initStatus{}, false
		}
		return st, true
	}
	deadline := time.Now().Add(timeout)
	for polls := 0; ; polls++ {
		if st, ok := read(); ok {
			return st, nil
		}
		if unix.Kill(initPid, 0) == unix.ESRCH {
			if st, ok := read(); ok {
				return st, nil
			}
			return initStatus{}, errors.New("the sandbox's init exited before its home was ready, without a report")
		}
		if time.Now().After(deadline) {
			return initStatus{}, fmt.Errorf("the sandbox's home was not ready after %s", timeout)
		}
		// Every millisecond for the first second (a start takes tens of
		// them), then less often (a first start in an emulated VM, a
		// check of a large file system).
		if polls < 1000 {
			time.Sleep(time.Millisecond)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// mountEntry is one line of a mountinfo file.
type mountEntry struct {
	fstype, source, options string
}

// parseMountinfo maps each mount point to the mount on top of it (the
// last one listed there).
func parseMountinfo(b []byte) map[string]mountEntry {
	out := map[string]mountEntry{}
	for _, m := range mountinfo.Parse(b) {
		out[m.Point] = mountEntry{fstype: m.FSType, source: m.Source, options: m.Options}
	}
	return out
}

// checkHome verifies from outside that the running container's home has
// its limit: in the init's mount namespace /home/guest is the image served
// by fuse2fs (a FUSE mount of storeBind/home.img) and /home is covered by
// the init's tmpfs; the image on the host is size bytes. The desktop user
// may read the mountinfo of its own containers (it owns their user
// namespace), but not statfs their FUSE mounts (the kernel answers only
// processes inside), so the size is the image's.
func checkHome(initPid int, rootfs string, size int64) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", initPid))
	if err != nil {
		return fmt.Errorf("reading the sandbox's mounts: %w", err)
	}
	return checkHomeMounts(parseMountinfo(b), homeImage(rootfs), size)
}

func checkHomeMounts(ms map[string]mountEntry, image string, size int64) error {
	var bad []string
	if g, ok := ms[GuestHome]; !ok || !isFuseType(g.fstype) || g.source != filepath.Join(storeBind, imageName) {
		bad = append(bad, fmt.Sprintf("%s is not the home's image served by fuse2fs (%s %s)", GuestHome, g.fstype, g.source))
	}
	if h, ok := ms["/home"]; !ok || h.fstype != "tmpfs" {
		bad = append(bad, "/home is not covered by the init's tmpfs (the guest could write to the host's disk)")
	}
	if st, err := os.Stat(image); err != nil {
		bad = append(bad, fmt.Sprintf("the home's image: %v", err))
	} else if st.Size() != size {
		bad = append(bad, fmt.Sprintf("the home's image is %d bytes, not %d", st.Size(), size))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// diskUsage is what the home's image takes on the host's disk (allocated
// blocks) and its size, the limit; 0, 0 before the first start.
func diskUsage(rootfs string) (used, limit int64) {
	var st unix.Stat_t
	if unix.Stat(homeImage(rootfs), &st) != nil {
		return 0, 0
	}
	return st.Blocks * 512, st.Size
}

// isInitHelper reports whether host pid is the init's fuse2fs (it serves
// the home and does not count as a process of the guest): a child of the
// init named fuse2fs, running as the container's root.
func isInitHelper(pid, initPid, rootUID int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || s[open+1:end] != "fuse2fs" {
		return false
	}
	f := strings.Fields(s[end+1:]) // state ppid ...
	if len(f) < 2 || f[1] != strconv.Itoa(initPid) {
		return false
	}
	var st unix.Stat_t
	return unix.Stat("/proc/"+strconv.Itoa(pid), &st) == nil && int(st.Uid) == rootUID
}
