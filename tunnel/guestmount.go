package tunnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ebrainpool/ebrainpool/internal/mountinfo"
)

// The privileged stage of an endpoint that mounts what the requester
// brings (`ebrainpool guest-mount`, run as the container's root, which
// keeps sys_admin in the container's user namespace): it starts itself
// again in a user and a mount namespace of its own (identity-mapped: the
// container's ids are the same there), mounts a FUSE connection (an open
// /dev/fuse) at HOME/NAME for each share, and runs the endpoint as the
// guest inside that namespace with the connections (GuestSharesEnv). The
// endpoint serves each through sshfs over an SSH channel to the requester
// (EndpointConfig.Shares). The mounts exist only in that namespace: the
// endpoint's and the app's, no other process of the sandbox sees them, and
// the kernel removes them with the namespace's last process, whichever
// way the session ends. Afterwards the stage removes the mount points it
// made; one left by a stage that was killed is removed by the next. The
// endpoint runs as the init of a PID namespace of its own, so that no
// process of the session outlives it (orphans are not reaped until then).
//
// Why a user namespace: liblxc makes every mount of a container shared
// (a peer group of the container's own), so a mount made in a plain copy
// of the container's mount namespace would show in the whole sandbox,
// and making the copy private (MS_PRIVATE) is what the AppArmor profile
// liblxc confines containers with refuses (EACCES on Debian and Ubuntu).
// A mount namespace owned by a new user namespace gets the shared mounts
// as slaves (mount_namespaces(7)): the kernel cuts the propagation out.
// The stage checks that the guest's home is not shared before it mounts.

// GuestSharesEnv carries the mounted shares to the endpoint: JSON
// [GuestShareFD...].
const GuestSharesEnv = "EBRAINPOOL_SHARES"

// GuestShareFD is one mounted share as the endpoint receives it.
type GuestShareFD struct {
	FD       int    `json:"fd"`
	Path     string `json:"path"` // the mount point, as the app sees it
	ReadOnly bool   `json:"ro,omitempty"`
}

// MountSpec is one share to mount: its name in the guest's home.
type MountSpec struct {
	Name     string
	ReadOnly bool
}

// ParseMountSpec reads "NAME" or "NAME:ro".
func ParseMountSpec(s string) (MountSpec, error) {
	m := MountSpec{Name: s}
	if n, ok := strings.CutSuffix(s, ":ro"); ok {
		m = MountSpec{Name: n, ReadOnly: true}
	}
	return m, ValidShareName(m.Name)
}

func (m MountSpec) String() string {
	if m.ReadOnly {
		return m.Name + ":ro"
	}
	return m.Name
}

// ValidShareName checks a share's name: one path element that is not
// hidden, without control characters, at most 255 bytes.
func ValidShareName(name string) error {
	switch {
	case name == "", name == ".", name == "..", strings.HasPrefix(name, "."):
		return fmt.Errorf("share name %q: empty or hidden", name)
	case len(name) > 255:
		return fmt.Errorf("share name %q: longer than 255 bytes", name)
	case strings.ContainsAny(name, "/\x00"), strings.IndexFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return fmt.Errorf("share name %q: a slash or a control character", name)
	}
	return nil
}

// staleDir is where each stage records the mount points it made (the
// container's /run, a tmpfs of its root's), so that the next removes
// those of a stage that was killed.
const staleDir = "/run/ebrainpool-shares"

// FuseType is the file system type of the shares' mounts.
const FuseType = "fuse.ebrainpool"

// GuestMountConfig configures GuestMountMain.
type GuestMountConfig struct {
	Home     string // the guest's home (default /home/guest)
	UID, GID int    // the guest's ids (default 1000)
	User     string // the guest's name (default GuestUser)
	Shares   []MountSpec
	Argv     []string // the endpoint
	Logger   *slog.Logger
}

// GuestMountMain is the privileged stage: it mounts the shares and runs
// Argv as the guest (stdin, stdout, stderr passed on) until it exits,
// then removes the mount points; it returns Argv's exit status. It must
// run as root in the container, as the process's whole work: it runs the
// program again (os.Args) in namespaces of its own to do it.
func GuestMountMain(cfg GuestMountConfig) (int, error) {
	if cfg.Home == "" {
		cfg.Home = "/home/" + GuestUser
	}
	if cfg.UID == 0 {
		cfg.UID, cfg.GID = 1000, 1000
	}
	if cfg.User == "" {
		cfg.User = GuestUser
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Argv) == 0 {
		return -1, errors.New("guest-mount: no command")
	}
	seen := map[string]bool{}
	for _, s := range cfg.Shares {
		if err := ValidShareName(s.Name); err != nil {
			return -1, err
		}
		if seen[s.Name] {
			return -1, fmt.Errorf("share name %q given twice", s.Name)
		}
		seen[s.Name] = true
	}
	// The children's Pdeathsig is their parent thread's death: this
	// goroutine keeps its thread until the process exits.
	runtime.LockOSThread()
	if os.Getenv(guestMountNamespacesEnv) != "1" {
		return runInNamespaces()
	}
	os.Unsetenv(guestMountNamespacesEnv)
	if err := checkNotShared(cfg.Home); err != nil {
		return -1, err
	}
	// Opened in the new namespace: a mount lands only on a directory of
	// the namespace it is made in.
	home, err := unix.Open(cfg.Home, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("guest-mount: the guest's home: %w", err)
	}
	defer unix.Close(home)
	removeStale(cfg.Home, home, log)
	var made []string // mount points this stage created
	defer func() {
		for _, name := range made {
			unix.Unmount(filepath.Join(cfg.Home, name), unix.MNT_DETACH)
			if err := unix.Unlinkat(home, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
				log.Warn("removing a share's mount point", "name", name, "err", err)
			}
		}
		os.Remove(recordPath(os.Getpid()))
	}()
	var fds []*os.File
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	var shares []GuestShareFD
	for i, s := range cfg.Shares {
		created, fuse, err := mountShare(home, cfg, s)
		if created {
			made = append(made, s.Name)
			recordMade(cfg.Home, made)
		}
		if err != nil {
			return -1, err
		}
		fds = append(fds, fuse)
		shares = append(shares, GuestShareFD{FD: 3 + i, Path: filepath.Join(cfg.Home, s.Name), ReadOnly: s.ReadOnly})
	}
	spec, _ := json.Marshal(shares)
	cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = fds
	cmd.Dir = cfg.Home
	cmd.Env = RelayEnv(guestEnv(os.Environ(), cfg, GuestSharesEnv+"="+string(spec)))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID), Groups: []uint32{}},
		// The endpoint is the init of a PID namespace of its own: when it
		// ends, however it ends, the kernel kills every process left in
		// it (the app's included), and the mount namespace goes with them.
		Cloneflags: syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL, // this thread is the parent, and it lives as long as the process
	}
	code, err := runPassingSignals(cmd, func() {
		// The endpoint (and sshfs after it) hold the connections now: once
		// they are gone, a mount answers ENOTCONN, it never hangs.
		for _, f := range fds {
			f.Close()
		}
		fds = nil
	})
	if err != nil {
		return -1, fmt.Errorf("guest-mount: starting %s: %w", cfg.Argv[0], err)
	}
	return code, nil
}

// guestMountNamespacesEnv marks the stage's second process: the one in
// the user and mount namespaces of its own.
const guestMountNamespacesEnv = "EBRAINPOOL_GUEST_MOUNT_NS"

// runInNamespaces runs this program again, with the same arguments, in a
// new user namespace (identity-mapped) and a mount namespace it owns, and
// returns its exit status; signals are passed on to it.
func runInNamespaces() (int, error) {
	uids, err := identityMap("/proc/self/uid_map")
	if err != nil {
		return -1, fmt.Errorf("guest-mount: %w", err)
	}
	gids, err := identityMap("/proc/self/gid_map")
	if err != nil {
		return -1, fmt.Errorf("guest-mount: %w", err)
	}
	self, err := os.Executable() // its name, not "exe", in ps and /proc
	if err != nil {
		return -1, fmt.Errorf("guest-mount: %w", err)
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), guestMountNamespacesEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: uids,
		GidMappings: gids,
		// The stage drops the endpoint's supplementary groups.
		GidMappingsEnableSetgroups: true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	code, err := runPassingSignals(cmd, nil)
	if err != nil {
		return -1, fmt.Errorf("guest-mount: a user and mount namespace of its own: %w", err)
	}
	return code, nil
}

// runPassingSignals starts cmd, calls started (if set), passes SIGTERM,
// SIGINT and SIGHUP on to it until it exits and returns its exit status,
// 128+N for signal N; the error is why it could not run.
func runPassingSignals(cmd *exec.Cmd, started func()) (int, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	if started != nil {
		started()
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); cmd.ProcessState == nil {
		return -1, err
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// identityMap maps each id range of this user namespace (a uid_map or
// gid_map file: INSIDE OUTSIDE COUNT lines) to itself in a child's.
func identityMap(path string) ([]syscall.SysProcIDMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []syscall.SysProcIDMap
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var inside, outside, count int
		if _, err := fmt.Sscan(l, &inside, &outside, &count); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, l, err)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: inside, HostID: inside, Size: count})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no ids mapped", path)
	}
	return out, nil
}

// checkNotShared fails if the mount the guest's home is on propagates
// mounts to other namespaces (a shared mount): a share mounted there
// would show outside the session.
func checkNotShared(home string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("guest-mount: %w", err)
	}
	if m, ok := mountinfo.Containing(mountinfo.Parse(b), home); ok && m.Shared() {
		return fmt.Errorf("guest-mount: the mount the guest's home is on (%s) is shared with other mount namespaces: a share mounted there would show in the whole sandbox", m.Point)
	}
	return nil
}

// mountShare makes (or reuses) HOME/NAME, a directory, and mounts a new
// FUSE connection there; created says it made the directory.
func mountShare(home int, cfg GuestMountConfig, s MountSpec) (created bool, fuse *os.File, err error) {
	if err := unix.Mkdirat(home, s.Name, 0o755); err == nil {
		created = true
		unix.Fchownat(home, s.Name, cfg.UID, cfg.GID, unix.AT_SYMLINK_NOFOLLOW)
	} else if !errors.Is(err, unix.EEXIST) {
		return false, nil, fmt.Errorf("guest-mount: making %s in the guest's home: %w", s.Name, err)
	}
	// No symlink is followed: the mount lands on this directory.
	dir, err := unix.Openat(home, s.Name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return created, nil, fmt.Errorf("guest-mount: %q in the guest's home is not a folder (%w): move it away in the sandbox to bring this share", s.Name, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return created, nil, fmt.Errorf("guest-mount: opening /dev/fuse: %w", err)
	}
	fuse = os.NewFile(uintptr(fd), "fuse:"+s.Name)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d", fd, cfg.UID, cfg.GID)
	target := "/proc/self/fd/" + strconv.Itoa(dir)
	if err := unix.Mount("ebrainpool", target, FuseType, flags, opts); err != nil {
		fuse.Close()
		return created, nil, fmt.Errorf("guest-mount: mounting %s: %w", s.Name, err)
	}
	return created, fuse, nil
}

// guestEnv is the endpoint's environment: the guest's HOME, USER and
// LOGNAME instead of root's, and extra.
func guestEnv(env []string, cfg GuestMountConfig, extra ...string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "HOME", "USER", "LOGNAME", GuestSharesEnv:
			continue
		}
		out = append(out, e)
	}
	out = append(out, "HOME="+cfg.Home, "USER="+cfg.User, "LOGNAME="+cfg.User)
	return append(out, extra...)
}

func recordPath(pid int) string { return filepath.Join(staleDir, strconv.Itoa(pid)) }

// staleRecord is what a stage records: the mount points it made in home.
type staleRecord struct {
	Home  string   `json:"home"`
	Names []string `json:"names"`
}

// recordMade records the mount points this stage made.
func recordMade(home string, names []string) {
	os.MkdirAll(staleDir, 0o700)
	b, _ := json.Marshal(staleRecord{Home: home, Names: names})
	os.WriteFile(recordPath(os.Getpid()), b, 0o600)
}

// removeStale removes the mount points recorded by stages that are gone
// (each only if it is an empty directory: rmdir follows no symlink).
func removeStale(homePath string, home int, log *slog.Logger) {
	entries, _ := os.ReadDir(staleDir)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pid != os.Getpid() && running(pid) {
			continue
		}
		var rec staleRecord
		b, _ := os.ReadFile(filepath.Join(staleDir, e.Name()))
		if json.Unmarshal(b, &rec) != nil || rec.Home != homePath {
			continue // another home's (tests)
		}
		for _, n := range rec.Names {
			if ValidShareName(n) != nil {
				continue
			}
			if err := unix.Unlinkat(home, n, unix.AT_REMOVEDIR); err == nil {
				log.Info("removed the mount point of an ended session", "name", n)
			}
		}
		os.Remove(filepath.Join(staleDir, e.Name()))
	}
}

// running reports whether process pid runs: exists and has not exited
// (a killed stage's orphan is a zombie until the sandbox's init reaps it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold anything but a newline.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// TakeGuestShares reads the shares the privileged stage mounted from the
// environment (and removes the variable, so the app does not inherit it);
// their descriptors are made close-on-exec.
func TakeGuestShares() ([]GuestShare, error) {
	v, ok := os.LookupEnv(GuestSharesEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(GuestSharesEnv)
	var in []GuestShareFD
	if err := json.Unmarshal([]byte(v), &in); err != nil {
		return nil, fmt.Errorf("%s: %w", GuestSharesEnv, err)
	}
	var out []GuestShare
	for i, s := range in {
		if s.FD < 3 {
			return nil, fmt.Errorf("%s: descriptor %d", GuestSharesEnv, s.FD)
		}
		syscall.CloseOnExec(s.FD)
		out = append(out, GuestShare{Index: i, Path: s.Path, ReadOnly: s.ReadOnly, FUSE: os.NewFile(uintptr(s.FD), "fuse:"+s.Path)})
	}
	return out, nil
}
