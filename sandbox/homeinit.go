package sandbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The guest's home, as guest-init (the container's root, in the
// container's user namespace) makes it. All the guest may write to the
// host's disk is one file, the home's image: an ext4 file system of the
// limit's size, made sparse, served by fuse2fs, so writing beyond it fails
// with ENOSPC inside and the host loses at most the limit.
//
//   - /home/.ebp-store (rootfs/home/.ebp-store on the host; mode 0711, the
//     container root's: the desktop user can stat the image but not read
//     it) holds home.img and the init's report (status).
//   - The first start creates the image and runs mkfs.ext4 (no journal:
//     fuse2fs does not use one; e2fsck checks it instead after an unclean
//     stop); later starts run e2fsck -p when the file system was not
//     cleanly unmounted, and grow the image (resize2fs) when the limit
//     grew. A smaller limit keeps the image as it is (Start logs it).
//   - The store is bound at /run/ebp-store (mode 0700), a tmpfs of 64k
//     owned by the container's root covers /home (so the guest can write
//     nothing to the rootfs: /home was the one directory it could), and
//     fuse2fs -o allow_other serves the image at /home/guest.
const (
	storeDir   = "/home/.ebp-store" // in the container's rootfs
	storeBind  = "/run/ebp-store"   // the same, once /home is covered
	imageName  = "home.img"
	statusName = "status"
)

// initStatus is the init's report, in the store: the Manager waits for it
// after starting the container.
type initStatus struct {
	Start string `json:"start"` // InitOptions.StartID
	Ready bool   `json:"ready,omitempty"`
	Error string `json:"error,omitempty"`
	// NoLimit: the error is why the home cannot get its limit here.
	NoLimit bool `json:"no_limit,omitempty"`
	// Notes and Warnings are what the Manager should log.
	Notes    []string `json:"notes,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// limitError is a reason the home cannot get its limit on this host, with
// the fix.
type limitError struct{ cause, fix string }

func (e *limitError) Error() string {
	if e.fix == "" {
		return e.cause
	}
	return e.cause + "\n  fix: " + e.fix
}

// home is the init's part of the guest's home.
type home struct {
	start   string
	store   int // the store directory (on the rootfs's mount), or -1
	fusePid int // fuse2fs, while it runs
	notes   []string
	warns   []string
}

// setupHome makes and mounts the guest's home (see above). The home it
// returns can report and stop even when it failed.
func setupHome(o InitOptions) (*home, error) {
	h := &home{start: o.StartID, store: -1}
	if o.DiskBytes <= 0 {
		return h, errors.New("guest-init: no --disk size")
	}
	if err := h.openStore(); err != nil {
		return h, err
	}
	if err := usableFuse("/dev/fuse"); err != nil {
		return h, err
	}
	fuse2fs, err := exec.LookPath("fuse2fs")
	if err != nil {
		return h, &limitError{"fuse2fs is not installed (it mounts each sandbox's home, a file system image of the disk limit's size)", "sudo apt install fuse2fs"}
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return h, &limitError{tool + " is not installed (the sandboxes' homes are ext4 images)", "sudo apt install e2fsprogs"}
		}
	}
	img := filepath.Join(storeDir, imageName)
	if err := h.prepareImage(img, imageSize(o.DiskBytes)); err != nil {
		return h, err
	}
	if err := os.Mkdir(storeBind, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return h, fmt.Errorf("creating %s: %w", storeBind, err)
	}
	if err := unix.Mount(storeDir, storeBind, "", unix.MS_BIND, ""); err != nil {
		return h, fmt.Errorf("binding %s at %s: %w", storeDir, storeBind, err)
	}
	// A home from before the storage limit, a directory on the rootfs, is
	// covered from now on (and not moved: it may be larger than the limit).
	if ents, err := os.ReadDir(GuestHome); err == nil && len(ents) > 0 {
		h.warns = append(h.warns, "the sandbox's home from before its storage limit is hidden now but still takes room on the host's disk: a reset frees it")
	}
	if err := unix.Mount("tmpfs", "/home", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return h, fmt.Errorf("covering /home: %w", err)
	}
	if err := os.Mkdir(GuestHome, 0o700); err != nil {
		return h, fmt.Errorf("creating %s: %w", GuestHome, err)
	}
	if err := h.mount(fuse2fs, filepath.Join(storeBind, imageName), GuestHome); err != nil {
		return h, err
	}
	// The file system's root is the guest's (mkfs made it so; an image
	// made otherwise is fixed here), private; lost+found is e2fsck's, and
	// it makes it again when it needs one.
	if err := os.Chown(GuestHome, GuestUID, GuestGID); err != nil {
		return h, fmt.Errorf("giving %s to the guest: %w", GuestHome, err)
	}
	if err := os.Chmod(GuestHome, 0o700); err != nil {
		return h, fmt.Errorf("making %s private: %w", GuestHome, err)
	}
	os.Remove(filepath.Join(GuestHome, "lost+found")) // fails if e2fsck put files there: they stay
	return h, nil
}

// openStore creates the store if needed and opens it.
func (h *home) openStore() error {
	st, err := os.Lstat(storeDir)
	if errors.Is(err, os.ErrNotExist) {
		err = os.Mkdir(storeDir, 0o711)
		if err == nil {
			st, err = os.Lstat(storeDir)
		}
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", storeDir, err)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); !st.IsDir() || !ok || s.Uid != 0 {
		return fmt.Errorf("%s is not a directory of the container's root (%v): reset the sandbox", storeDir, st.Mode())
	}
	if err := os.Chmod(storeDir, 0o711); err != nil {
		return fmt.Errorf("%s: %w", storeDir, err)
	}
	fd, err := unix.Open(storeDir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", storeDir, err)
	}
	h.store = fd
	return nil
}

// usableFuse checks that this process can open the FUSE device.
func usableFuse(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	var st unix.Stat_t
	mode := "missing"
	if unix.Stat(dev, &st) == nil {
		mode = fmt.Sprintf("mode %04o", st.Mode&0o7777)
	}
	return fuseError(mode, err)
}

// fuseError is why /dev/fuse (mode, or "missing") cannot serve sandboxes.
func fuseError(mode string, err error) error {
	if mode == "missing" {
		return &limitError{"/dev/fuse is missing (sandboxes' homes are FUSE file systems, so that their size is limited)", "sudo modprobe fuse (and add fuse to /etc/modules)"}
	}
	return &limitError{fmt.Sprintf("/dev/fuse is not usable by unprivileged users (%s: %v); sandboxes' homes are FUSE file systems, so that their size is limited", mode, err),
		"sudo chmod 0666 /dev/fuse (as udev makes it on desktops: KERNEL==\"fuse\", MODE=\"0666\" in its rules)"}
}

// prepareImage makes the image of size bytes, or checks an existing one
// and grows it to size.
func (h *home) prepareImage(img string, size int64) error {
	st, err := os.Lstat(img)
	if errors.Is(err, os.ErrNotExist) {
		return makeImage(img, size)
	}
	if err != nil {
		return fmt.Errorf("the home's image: %w", err)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); !st.Mode().IsRegular() || !ok || s.Uid != 0 {
		return fmt.Errorf("%s is not the init's file (%v): reset the sandbox", img, st.Mode())
	}
	if clean, err := imageClean(img); err != nil || !clean {
		if err := fsck(img, false); err != nil {
			return err
		}
	}
	if st.Size() < size {
		// resize2fs wants a file system checked since its last mount.
		if err := fsck(img, true); err != nil {
			return err
		}
		if err := os.Truncate(img, size); err != nil {
			return fmt.Errorf("growing the home's image: %w", err)
		}
		if out, err := exec.Command("resize2fs", img).CombinedOutput(); err != nil {
			return fmt.Errorf("growing the home's file system: resize2fs: %v: %s", err, bytes.TrimSpace(out))
		}
		h.notes = append(h.notes, fmt.Sprintf("the home grew from %d to %d bytes", st.Size(), size))
	}
	return nil // a larger image stays as it is (Start says so)
}

// makeImage creates a sparse image and an ext4 file system in it for the
// guest: no journal (fuse2fs does not write one), 1% reserved (fuse2fs
// never hands those blocks out, to anybody).
func makeImage(img string, size int64) error {
	tmp := img + ".new"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating the home's image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("creating the home's image: %w", err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-i", "16384", "-m", "1",
		"-O", "^has_journal", "-E", fmt.Sprintf("root_owner=%d:%d,nodiscard", GuestUID, GuestGID), tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("making the home's file system: mkfs.ext4: %v: %s", err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("creating the home's image: %w", err)
	}
	return nil
}

// imageClean reads the ext4 superblock: cleanly unmounted and without
// errors.
func imageClean(img string) (bool, error) {
	f, err := os.Open(img)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return false, err
	}
	const validFS, errorFS = 1, 2
	magic, state := binary.LittleEndian.Uint16(sb[56:]), binary.LittleEndian.Uint16(sb[58:])
	return magic == 0xef53 && state&validFS != 0 && state&errorFS == 0, nil
}

// fsck repairs the image after an unclean stop (force: checks it even when
// it looks clean).
func fsck(img string, force bool) error {
	args := []string{"-p", img}
	if force {
		args = []string{"-f", "-p", img}
	}
	out, err := exec.Command("e2fsck", args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() < 4 {
		return nil // 1, 2: errors corrected
	}
	if err == nil {
		return nil
	}
	// What preening cannot fix, e2fsck -y may.
	out2, err2 := exec.Command("e2fsck", "-f", "-y", img).CombinedOutput()
	if errors.As(err2, &ee) && ee.ExitCode() < 4 || err2 == nil {
		return nil
	}
	return fmt.Errorf("the home's file system is damaged and e2fsck cannot repair it (reset the sandbox: its home is lost): %s", firstLine(out, out2))
}

// firstLine is the first line of the outputs that is not e2fsck's banner.
func firstLine(outs ...[]byte) string {
	for _, b := range outs {
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "e2fsck 1.") {
				return line
			}
		}
	}
	return "no word from e2fsck"
}

// mount runs fuse2fs (in the foreground: its child, so that stop can end
// it and wait) and waits until the file system is mounted.
func (h *home) mount(fuse2fs, img, dir string) error {
	out := &tail{max: 4096}
	cmd := exec.Command(fuse2fs, "-f", "-o", "allow_other", img, dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return &limitError{cause: fmt.Sprintf("starting fuse2fs: %v", err)}
	}
	h.fusePid = cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for !isFuseMount(dir) {
		var ws unix.WaitStatus
		if pid, _ := unix.Wait4(h.fusePid, &ws, unix.WNOHANG, nil); pid == h.fusePid {
			h.fusePid = 0
			time.Sleep(10 * time.Millisecond) // its last words through the pipe
			return fuseFailed(ws, out.String())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fuse2fs did not mount the home in 60s: %s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// fuseFailed explains why fuse2fs exited before it mounted the home.
func fuseFailed(ws unix.WaitStatus, said string) error {
	said = strings.TrimSpace(said)
	status := "exit status " + strconv.Itoa(ws.ExitStatus())
	if ws.Signaled() {
		status = "killed by " + ws.Signal().String()
	}
	if strings.Contains(said, "mount failed") || strings.Contains(said, "Operation not permitted") || strings.Contains(said, "Permission denied") {
		return &limitError{fmt.Sprintf("the kernel refused the FUSE mount of the sandbox's home (fuse2fs, %s: %s)", status, said),
			"FUSE in unprivileged containers needs Linux 4.18 or later, and where AppArmor confines containers a profile that allows fuse mounts (LXC's lxc-container-default-cgns does)"}
	}
	return fmt.Errorf("fuse2fs could not serve the sandbox's home (%s): %s", status, said)
}

// isFuseMount reports whether this process sees a FUSE file system
// mounted at dir.
func isFuseMount(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	m, ok := parseMountinfo(b)[dir]
	return ok && isFuseType(m.fstype)
}

func isFuseType(fstype string) bool { return fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") }

// report writes the init's status for the Manager (atomically: it polls).
func (h *home) report(err error) {
	if h.store < 0 {
		return
	}
	st := initStatus{Start: h.start, Ready: err == nil, Notes: h.notes, Warnings: h.warns}
	if err != nil {
		st.Error = err.Error()
		var le *limitError
		st.NoLimit = errors.As(err, &le)
	}
	b, _ := json.Marshal(st)
	fd, oerr := unix.Openat(h.store, statusName+".tmp", unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if oerr != nil {
		return
	}
	unix.Fchmod(fd, 0o644)
	_, werr := unix.Write(fd, b)
	unix.Close(fd)
	if werr == nil {
		unix.Renameat(h.store, statusName+".tmp", h.store, statusName)
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
