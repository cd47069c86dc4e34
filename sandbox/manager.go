package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// Config configures a Manager.
type Config struct {
	Layout Layout
	// Limits for every container; zero means DefaultLimits.
	Limits Limits
	// GuestBinary is the host path of the ebrainpool binary to run inside the
	// containers (init and SSH endpoint); empty means the running executable.
	GuestBinary string
	Logger      *slog.Logger
}

// Manager runs the current user's per-peer containers. It needs no root: the
// one-time Setup gave the user what it needs. A Manager moves its process
// into the user's cgroups when created.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	user       string
	uid, gid   int
	uids, gids IDRange
	lxcpath    string
	hs         []hierarchy
	cg         cgroupDriver
	memsw      bool
	hostEtc    []string // host /etc entries shared (those present at start)
	topLevel   []string // host /bin, /lib*... that are real directories
	seccomp    string
	apparmor   apparmorState

	mu  sync.Mutex
	cts map[string]*lxc.Container // by container name, while running
}

// Info describes one peer's container.
type Info struct {
	Peer    string    `json:"peer"`
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Pids    int       `json:"processes,omitempty"`
	Memory  int64     `json:"memory_bytes,omitempty"`
	// CPU is the CPU time its processes have used since it started
	// (negative when the cgroup does not tell).
	CPU time.Duration `json:"cpu_ns,omitempty"`
	// DiskBytes is what its home takes on the host's disk (the image's
	// allocated blocks; it grows up to DiskLimit and shrinks only with a
	// reset), running or not.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	// DiskLimit is the size of its home's image, the most DiskBytes can
	// reach (0: no home yet, before the first start).
	DiskLimit int64 `json:"disk_limit_bytes,omitempty"`
}

// meta is kept beside each container's config.
type meta struct {
	Peer    string    `json:"peer"`
	Created time.Time `json:"created"`
}

// NewManager checks that the one-time setup was done for the current user
// and that sandboxes can get their limits here, and prepares the process
// for that (see cgroupDriver): on hosts without systemd it moves into the
// user's cgroups; on systemd hosts it makes sure it runs below the user's
// systemd manager. Close releases what it holds.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Layout.Root == "" {
		cfg.Layout = DefaultLayout()
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("sandbox limits: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GuestBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the ebrainpool binary: %w", err)
		}
		cfg.GuestBinary = exe
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("looking up the current user: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, user: u.Username, uid: os.Getuid(), gid: os.Getgid(), cts: map[string]*lxc.Container{}}
	m.uids, m.gids, err = userRanges("/etc/subuid", "/etc/subgid", m.user, m.uid)
	if err != nil {
		return nil, setupHint(m.user, err)
	}
	m.lxcpath = cfg.Layout.LXCPath(m.user)
	if err := unix.Access(m.lxcpath, unix.W_OK|unix.X_OK); err != nil {
		return nil, setupHint(m.user, fmt.Errorf("%w: %s is missing or not writable (%v)", ErrNotSetUp, m.lxcpath, err))
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	hs := cgroupHierarchies(mi)
	if len(hs) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted in this mount namespace (is /sys/fs/cgroup hidden, e.g. by `ip netns exec`?): sandboxes need cgroups for their limits")
	}
	m.hs = hs
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h.Mount, "memory.memsw.limit_in_bytes")); err == nil {
			m.memsw = true
		}
	}
	m.hostEtc, m.topLevel = existingHostEtc(), realTopLevelDirs()
	if err := checkGuestBinary(cfg.GuestBinary); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/usr/share/lxc/config/common.seccomp"); err == nil {
		m.seccomp = "/usr/share/lxc/config/common.seccomp"
	}
	const policy = "/sys/kernel/security/apparmor/policy/profiles"
	if err := checkUserns("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", policy); err != nil {
		return nil, err
	}
	m.apparmor = detectAppArmor("/sys/module/apparmor/parameters/enabled", policy)
	if m.apparmor == apparmorNoProfile {
		m.log.Warn("AppArmor is on but LXC's profile " + lxcProfile + " is not loaded (install the apparmor package, or reboot after installing it): sandboxes run without AppArmor confinement")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if m.cg, err = newDriver(ctx, m, hs); err != nil {
		return nil, err
	}
	return m, nil
}

// Warm prepares what the first sandbox start needs (on systemd hosts the
// helper in its delegated scope), so that the first request does not wait
// for it. Calling it is optional.
func (m *Manager) Warm(ctx context.Context) error { return m.cg.warm(ctx) }

// Close releases the manager's helper process, if any; running sandboxes
// keep running.
func (m *Manager) Close() {
	m.cg.close()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, c := range m.cts {
		lxc.Release(c)
		delete(m.cts, name)
	}
}

// checkGuestBinary makes sure the container's root (an unmapped subordinate
// uid) can reach the binary bind-mounted into the container.
func checkGuestBinary(path string) error {
	p := path
	for {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking the guest binary %s: %w", path, err)
		}
		need := os.FileMode(0o001) // search
		if p == path {
			need = 0o005 // read+exec
		}
		if st.Mode().Perm()&need != need {
			return fmt.Errorf("the container cannot reach %s: %s is mode %v; install ebrainpool in a world-readable place (e.g. /usr/bin) or chmod o+rx it", path, p, st.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}

// User is the desktop user the manager runs containers for.
func (m *Manager) User() string { return m.user }

// LXCPath is where the containers live.
func (m *Manager) LXCPath() string { return m.lxcpath }

// ContainerName is the LXC name of the peer's container.
func (m *Manager) ContainerName(peer string) string { return containerName(peer) }

func (m *Manager) dir(name string) string { return filepath.Join(m.lxcpath, name) }

// lock takes the per-container lock that serialises lifecycle changes
// across processes (the desktop app and the debug CLI).
func (m *Manager) lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(m.lxcpath, "."+name+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking sandbox %s: %w", name, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking sandbox %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock of sandbox %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SetLimits changes the limits of the sandboxes started from now on (a
// running sandbox keeps its own until it restarts); zero means
// DefaultLimits (a zero DiskBytes the default home size). A home made
// larger under an earlier limit keeps its size until the sandbox is reset.
func (m *Manager) SetLimits(l Limits) error {
	l = l.withDefaults()
	if err := l.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Limits = l
	return nil
}

// Limits are the limits sandboxes start with now.
func (m *Manager) Limits() Limits {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Limits
}

// containerConfig is the peer's container configuration with limits lim,
// for the start startID.
func (m *Manager) containerConfig(name string, lim Limits, startID string) containerConfig {
	return containerConfig{
		Name:        name,
		Hostname:    name,
		Rootfs:      filepath.Join(m.dir(name), "rootfs"),
		LogFile:     filepath.Join(m.dir(name), "lxc.log"),
		UIDs:        m.uids,
		GIDs:        m.gids,
		Limits:      lim,
		GuestBinary: m.cfg.GuestBinary,
		HostEtc:     m.hostEtc,
		TopLevel:    m.topLevel,
		CgroupV2:    pureV2(m.hs),
		MemSwap:     m.memsw,
		Seccomp:     m.seccomp,

		AppArmorProfile: m.apparmor.profile(),
		StartID:         startID,
	}
}

// define creates the container's directory, rootfs and config if needed
// and rewrites the config (limits or the binary path may have changed),
// for the start startID.
func (m *Manager) define(peer, name string, lim Limits, startID string) error {
	dir := m.dir(name)
	cc := m.containerConfig(name, lim, startID)
	fresh := false
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); errors.Is(err, os.ErrNotExist) {
		fresh = true
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("creating sandbox for %s: %w", peer, err)
		}
	}
	if err := buildRootfs(cc.Rootfs, cc.Hostname, cc.HostEtc); err != nil {
		if fresh {
			os.RemoveAll(dir)
		}
		return fmt.Errorf("creating sandbox for %s: %w", peer, err)
	}
	if err := writeFileIfChanged(filepath.Join(dir, "config"), []byte(cc.lxcConfig()), 0o644); err != nil {
		return fmt.Errorf("creating sandbox for %s: %w", peer, err)
	}
	if fresh {
		b, _ := json.Marshal(meta{Peer: peer, Created: time.Now().UTC()})
		if err := atomicfile.Write(filepath.Join(dir, "meta.json"), b, 0o644); err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("creating sandbox for %s: %w", peer, err)
		}
	}
	return nil
}

// Start makes sure the peer's container exists and runs. It is cheap when the
// container already runs.
func (m *Manager) Start(ctx context.Context, peer string) error {
	if err := validPeer(peer); err != nil {
		return err
	}
	name := containerName(peer)
	if c := m.cached(name); c != nil && c.Running() {
		return nil
	}
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := lxc.NewContainer(name, m.lxcpath)
	if err == nil && c.Running() {
		m.remember(name, c)
		return nil
	}
	if c != nil {
		lxc.Release(c)
	}
	lim := m.Limits() // one set for the config and the check, whatever SetLimits does meanwhile
	// The home's limit needs FUSE: refuse here, with the fix, rather than
	// have the init fail.
	if err := CheckDiskLimit(); err != nil {
		return err
	}
	startID := newStartID()
	if err := m.define(peer, name, lim, startID); err != nil {
		return err
	}
	rootfs := filepath.Join(m.dir(name), "rootfs")
	disk, kept := expectedImage(rootfs, lim.DiskBytes)
	if kept {
		m.log.Warn("the sandbox keeps its larger home until it is reset", "peer", peer, "home_bytes", disk, "disk_limit_bytes", imageSize(lim.DiskBytes))
	}
	m.warnFreeSpace(peer, rootfs, disk)
	logFile := filepath.Join(m.dir(name), "lxc.log")
	_ = os.Truncate(logFile, 0)
	c, err = lxc.NewContainer(name, m.lxcpath)
	if err != nil {
		return fmt.Errorf("loading sandbox for %s: %w", peer, err)
	}
	if err := m.cg.start(ctx, c); err != nil {
		lxc.Release(c)
		if errors.Is(err, ErrNoLimits) {
			return err
		}
		return startError(peer, logFile, err)
	}
	if !c.Running() {
		lxc.Release(c)
		return startError(peer, logFile, errors.New("container is not running after start"))
	}
	// The init makes and mounts the home, then reports.
	initPid := c.InitPid()
	st, err := waitInit(rootfs, initPid, startID, 2*time.Minute)
	switch {
	case err == nil && st.Ready:
		for _, n := range st.Notes {
			m.log.Info("sandbox home: "+n, "peer", peer)
		}
		for _, w := range st.Warnings {
			m.log.Warn(w, "peer", peer)
		}
	case err == nil && st.NoLimit:
		err = fmt.Errorf("%w: %s", ErrNoLimits, st.Error)
	case err == nil:
		err = fmt.Errorf("starting sandbox for %s: preparing its home: %s", peer, st.Error)
	default:
		err = startError(peer, logFile, err)
	}
	if err != nil {
		m.kill(c)
		lxc.Release(c)
		return err
	}
	// Never a sandbox without its limits: read them back from outside.
	if err := m.checkLimits(c, lim, rootfs, disk); err != nil {
		m.kill(c)
		lxc.Release(c)
		return fmt.Errorf("%w: the sandbox for %s started without its limits (%v), so it was stopped", ErrNoLimits, peer, err)
	}
	m.remember(name, c)
	m.log.Debug("sandbox started", "peer", peer, "container", name)
	return nil
}

func (m *Manager) cached(name string) *lxc.Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cts[name]
}

func (m *Manager) remember(name string, c *lxc.Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.cts[name]; old != nil && old != c {
		lxc.Release(old)
	}
	m.cts[name] = c
}

func (m *Manager) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.cts[name]; c != nil {
		lxc.Release(c)
		delete(m.cts, name)
	}
}

// running returns the peer's container if it runs.
func (m *Manager) running(peer string) (*lxc.Container, error) {
	name := containerName(peer)
	if c := m.cached(name); c != nil && c.Running() {
		return c, nil
	}
	c, err := lxc.NewContainer(name, m.lxcpath)
	if err != nil {
		return nil, fmt.Errorf("loading sandbox for %s: %w", peer, err)
	}
	if !c.Running() {
		lxc.Release(c)
		return nil, fmt.Errorf("sandbox for %s is not running", peer)
	}
	m.remember(name, c)
	return c, nil
}

// Stop stops the peer's container; its processes are killed. Stopping a
// stopped container is not an error.
func (m *Manager) Stop(ctx context.Context, peer string) error {
	name := containerName(peer)
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	return m.stopLocked(peer, name, stopGrace, killWait)
}

// How long Stop gives the sandbox's init to stop cleanly, and then how
// long it waits for the killed one.
const (
	stopGrace = 15 * time.Second
	killWait  = 10 * time.Second
)

// StopWithin is Stop bounded by grace: the init's stop signal, then a
// kill after grace*3/5 and at most grace*2/5 to see it stopped (the
// daemon's quit, which should not keep the desktop waiting). ctx bounds
// the wait for the sandbox's lock (a launch starting it).
func (m *Manager) StopWithin(ctx context.Context, peer string, grace time.Duration) error {
	name := containerName(peer)
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	return m.stopLocked(peer, name, grace*3/5, grace*2/5)
}

// Running lists the peers whose sandboxes run (List without what it
// measures).
func (m *Manager) Running() ([]string, error) {
	all, err := m.containers()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ct := range all {
		c, err := lxc.NewContainer(ct.name, m.lxcpath)
		if err != nil {
			continue
		}
		if c.Running() {
			out = append(out, ct.md.Peer)
		}
		lxc.Release(c)
	}
	sort.Strings(out)
	return out, nil
}

// container is one of the user's containers with its metadata.
type container struct {
	name string
	md   meta
}

// containers are the user's containers whose metadata reads (List and
// Running walk them).
func (m *Manager) containers() ([]container, error) {
	ents, err := os.ReadDir(m.lxcpath)
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	var out []container
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "ebp-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.lxcpath, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var md meta
		if json.Unmarshal(b, &md) != nil {
			continue
		}
		out = append(out, container{e.Name(), md})
	}
	return out, nil
}

func (m *Manager) stopLocked(peer, name string, grace, wait time.Duration) error {
	m.forget(name)
	c, err := lxc.NewContainer(name, m.lxcpath)
	if err != nil {
		return fmt.Errorf("loading sandbox for %s: %w", peer, err)
	}
	defer lxc.Release(c)
	if !c.Running() {
		return nil
	}
	// The init's stop signal: it ends the guest's processes and unmounts
	// the home cleanly. If it does not exit in time, it is killed (the
	// next start checks the home's file system).
	if err := c.Shutdown(grace); err == nil && c.Wait(lxc.STOPPED, time.Second) {
		return nil
	}
	m.log.Warn("the sandbox's init did not stop cleanly in time: killing it", "peer", peer, "grace", grace)
	if err := c.Stop(); err != nil && c.Running() {
		return fmt.Errorf("stopping sandbox for %s: %w", peer, err)
	}
	if !c.Wait(lxc.STOPPED, wait) {
		return fmt.Errorf("stopping sandbox for %s: still %s after %s", peer, c.State(), wait)
	}
	return nil
}

// kill stops a container that failed its start at once and waits for it.
func (m *Manager) kill(c *lxc.Container) {
	if c.Running() {
		c.Stop()
	}
	c.Wait(lxc.STOPPED, 10*time.Second)
}

// warnFreeSpace logs when the host's disk has less room than the home may
// still take: its image is sparse, so it is the host's free space that
// runs out first.
func (m *Manager) warnFreeSpace(peer, rootfs string, disk int64) {
	var fs unix.Statfs_t
	if unix.Statfs(m.lxcpath, &fs) != nil {
		return
	}
	used, _ := diskUsage(rootfs)
	if free := int64(fs.Bavail) * fs.Bsize; free < disk-used {
		m.log.Warn("the host's disk has less free space than the sandbox's home may still take", "peer", peer, "free_bytes", free, "home_may_take_bytes", disk-used)
	}
}

// Remove stops the peer's container and deletes it with all its files.
func (m *Manager) Remove(ctx context.Context, peer string) error {
	name := containerName(peer)
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.removeLocked(peer, name); err != nil {
		return err
	}
	os.Remove(filepath.Join(m.lxcpath, "."+name+".lock"))
	return nil
}

func (m *Manager) removeLocked(peer, name string) error {
	if _, err := os.Stat(m.dir(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := m.stopLocked(peer, name, stopGrace, killWait); err != nil {
		return err
	}
	c, err := lxc.NewContainer(name, m.lxcpath)
	if err != nil {
		return fmt.Errorf("loading sandbox for %s: %w", peer, err)
	}
	defer lxc.Release(c)
	if c.Defined() {
		// liblxc removes the rootfs inside the user namespace, where the
		// guest's files (owned by subordinate ids) can be deleted.
		if err := c.Destroy(); err != nil {
			return fmt.Errorf("removing sandbox for %s: %w", peer, err)
		}
	}
	if err := os.RemoveAll(m.dir(name)); err != nil {
		return fmt.Errorf("removing sandbox for %s: %w", peer, err)
	}
	return nil
}

// Reset puts the peer's container back to the base: home, /etc and
// everything else it wrote are gone. A running container is restarted.
func (m *Manager) Reset(ctx context.Context, peer string) error {
	name := containerName(peer)
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return err
	}
	wasRunning := false
	if c, err := lxc.NewContainer(name, m.lxcpath); err == nil {
		wasRunning = c.Running()
		lxc.Release(c)
	}
	err = m.removeLocked(peer, name)
	unlock()
	if err != nil {
		return fmt.Errorf("resetting sandbox for %s: %w", peer, err)
	}
	if wasRunning {
		return m.Start(ctx, peer)
	}
	unlock, err = m.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	return m.define(peer, name, m.Limits(), "")
}

// List describes the user's containers, sorted by peer.
func (m *Manager) List() ([]Info, error) {
	all, err := m.containers()
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, ct := range all {
		info := Info{Peer: ct.md.Peer, Name: ct.name, Created: ct.md.Created, State: "STOPPED"}
		info.DiskBytes, info.DiskLimit = diskUsage(filepath.Join(m.lxcpath, ct.name, "rootfs"))
		if c, err := lxc.NewContainer(ct.name, m.lxcpath); err == nil {
			info.State = c.State().String()
			if c.Running() {
				if p, err := payloadOf(c.InitPid(), m.hs); err == nil {
					info.Pids, _ = p.processes(m.helperOf(c.InitPid()))
					info.Memory, _ = p.memory()
					info.CPU = p.cpu()
				}
			}
			lxc.Release(c)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out, nil
}

// Processes is the number of processes in the peer's container, its init
// included (not the init's fuse2fs, which serves the home).
func (m *Manager) Processes(peer string) (int, error) {
	c, err := m.running(peer)
	if err != nil {
		return -1, err
	}
	pid := c.InitPid()
	p, err := payloadOf(pid, m.hs)
	if err != nil {
		return -1, err
	}
	return p.processes(m.helperOf(pid))
}

// helperOf tells the init's own helpers (fuse2fs) among the processes of
// the container whose init is initPid.
func (m *Manager) helperOf(initPid int) func(pid int) bool {
	return func(pid int) bool { return isInitHelper(pid, initPid, int(m.uids.Start)) }
}

// checkLimits verifies the running container's limits lim from outside:
// from its cgroups, and its home, an image of disk bytes.
func (m *Manager) checkLimits(c *lxc.Container, lim Limits, rootfs string, disk int64) error {
	pid := c.InitPid()
	p, err := payloadOf(pid, m.hs)
	if err != nil {
		return err
	}
	cerr := p.checkLimits(lim, m.memsw)
	herr := checkHome(pid, rootfs, disk)
	if cerr != nil && herr != nil {
		return fmt.Errorf("%v; %v", cerr, herr)
	}
	if cerr != nil {
		return cerr
	}
	return herr
}

// InitPid is the host pid of the container's init.
func (m *Manager) InitPid(peer string) (int, error) {
	c, err := m.running(peer)
	if err != nil {
		return -1, err
	}
	return c.InitPid(), nil
}

// StopWhenIdle stops the peer's container once nothing but its init has run
// in it for idle, polling every poll. It returns when the container stopped
// or ctx ends.
func (m *Manager) StopWhenIdle(ctx context.Context, peer string, idle, poll time.Duration) error {
	var since time.Time
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		n, err := m.Processes(peer)
		if err != nil {
			return nil // not running: nothing to stop
		}
		if n <= 1 {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= idle {
				return m.Stop(ctx, peer)
			}
		} else {
			since = time.Time{}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
