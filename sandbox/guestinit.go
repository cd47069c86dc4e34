package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InitOptions are guest-init's arguments, from lxc.init.cmd.
type InitOptions struct {
	// DiskBytes is the size of the guest's home (its image; a larger image
	// made for an earlier limit is kept).
	DiskBytes int64
	// StartID marks the init's report for this start (see initStatus).
	StartID string
}

// GuestInit is the container's init (PID 1, the container's root). It brings
// up loopback (X11 forwarding inside needs it), mounts the guest's home
// with its size limit (see setupHome), reports to the Manager that the
// sandbox is ready (or why not), then reaps orphans until it is told to
// stop. On its stop signal it kills the guest's processes and unmounts the
// home cleanly before it exits.
func GuestInit(o InitOptions) error {
	if os.Getpid() != 1 {
		return errors.New("guest-init runs only as a container's init")
	}
	// Before anything else, so that a stop during the setup is not lost.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR, unix.SIGHUP)
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	h, err := setupHome(o)
	if err == nil {
		if lerr := loopbackUp(); lerr != nil {
			err = fmt.Errorf("bringing up loopback: %w", lerr)
		}
	}
	h.report(err)
	if err != nil {
		h.stop()
		return err
	}
	for s := range sigs {
		switch s {
		case unix.SIGCHLD:
			if h.reap() {
				// The home's file system is gone: the guest cannot go on
				// (its home is unusable), so the sandbox stops; the next
				// start checks and mounts it again.
				h.stop()
				return errors.New("fuse2fs, which serves the guest's home, exited")
			}
		case unix.SIGHUP:
		default:
			h.stop()
			return nil
		}
	}
	return nil
}

// reap collects every exited child; it reports whether fuse2fs was one.
func (h *home) reap() (fuseExited bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return fuseExited
		}
		if pid == h.fusePid {
			h.fusePid = 0
			fuseExited = true
		}
	}
}

// stop ends the guest's processes, then fuse2fs, which unmounts the home
// and writes out what it holds (the file system is then clean).
func (h *home) stop() {
	h.killOthers(3 * time.Second)
	if h.fusePid <= 0 {
		return
	}
	unix.Kill(h.fusePid, unix.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for h.fusePid > 0 {
		if h.reap() {
			return
		}
		if time.Now().After(deadline) {
			unix.Kill(h.fusePid, unix.SIGKILL) // the next start checks the file system
			deadline = time.Now().Add(time.Hour)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// killOthers kills every process of the container but the init and
// fuse2fs, again and again until none is left (a fork bomb's children
// included) or the time is up.
func (h *home) killOthers(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		h.reap()
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		left := 0
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == 1 || pid == h.fusePid {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue // gone
			}
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
				continue // dead, waiting for its parent
			}
			unix.Kill(pid, unix.SIGKILL)
			left++
		}
		if left == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// loopbackUp sets IFF_UP on lo.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
