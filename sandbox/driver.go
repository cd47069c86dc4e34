package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	lxc "github.com/lxc/go-lxc"
)

// cgroupDriver is how this host gives sandboxes cgroups where their limits
// apply. liblxc (Debian 12's 5.0.2, built without systemd support) creates a
// container's cgroups below the cgroup of the process that starts it, and
// on cgroup v2 it must enable controllers in that cgroup, which the kernel
// allows only in a cgroup the user owns and that holds no process.
type cgroupDriver interface {
	// start starts the defined container c with its limits.
	start(ctx context.Context, c *lxc.Container) error
	// warm prepares what the first start needs, so that it costs nothing
	// extra (the systemd driver's helper).
	warm(ctx context.Context) error
	// roots are the cgroup directories below which sandboxes' cgroups are
	// made (for the benchmark's leak counts); may be empty.
	roots() []string
	close()
}

// newDriver picks the driver for this host: the user's systemd manager on
// systemd hosts with pure cgroup v2, setup's per-user directories
// elsewhere. Root needs neither.
func newDriver(ctx context.Context, m *Manager, hs []hierarchy) (cgroupDriver, error) {
	switch {
	case m.uid == 0:
		return &dirDriver{}, nil
	case pureV2(hs) && isSystemdHost():
		return newScopeDriver(ctx, m)
	}
	d := &dirDriver{dirs: m.cfg.Layout.userCgroupDirs(hs, m.user), user: m.user, v2: pureV2(hs)}
	if err := d.enter(); err != nil {
		return nil, setupHint(m.user, err)
	}
	return d, nil
}

// dirDriver uses the cgroup directories the one-time setup gave the user
// (hosts without systemd): the process moves itself into them, liblxc
// makes the containers' cgroups below.
type dirDriver struct {
	dirs []string // empty for root: liblxc places containers itself
	user string
	v2   bool // a pure cgroup v2 host: the process lives in a leaf below the directory
}

// enter moves the process into the user's directories. On cgroup v2 it
// goes into DIR/init.scope: liblxc takes a cgroup named init.scope to mean
// its parent, and the parent must hold no process for liblxc to enable
// controllers there.
func (d *dirDriver) enter() error {
	dirs := d.dirs
	if d.v2 {
		dirs = nil
		for _, dir := range d.dirs {
			leaf := filepath.Join(dir, "init.scope")
			if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%w: cannot create %s: %v", ErrNotSetUp, leaf, err)
			}
			dirs = append(dirs, leaf)
		}
	}
	return enterCgroups(dirs, d.user)
}

func (d *dirDriver) start(ctx context.Context, c *lxc.Container) error {
	if err := c.WantCloseAllFds(true); err != nil {
		return err
	}
	c.WantDaemonize(true)
	err := c.Start()
	// liblxc moves the calling process into the container's monitor cgroup;
	// move back, or the next start nests below it and neither cgroup can
	// ever be removed.
	if len(d.dirs) > 0 {
		if rerr := d.enter(); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

func (d *dirDriver) warm(context.Context) error { return nil }
func (d *dirDriver) roots() []string            { return d.dirs }
func (d *dirDriver) close()                     {}

// isSystemdHost reports whether systemd is the init system.
func isSystemdHost() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// ownCgroupV2 is the calling process's cgroup on a pure v2 host, e.g.
// /user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope.
func ownCgroupV2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("this process has no cgroup v2 cgroup")
}
