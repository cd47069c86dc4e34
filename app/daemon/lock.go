package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockName is the lock file in the user's state directory: one daemon per
// identity on a machine, whatever session bus each would run on (a
// private dbus-run-session bus, the desktop's), since two would answer
// for the same key.
const lockName = "daemon.lock"

// ErrAlreadyRunning means another daemon of this identity runs.
var ErrAlreadyRunning = errors.New("another eBrainPool daemon of this identity already runs on this computer")

// lockIdentity takes the lock (flock, released by the kernel when the
// process ends, however it ends) and writes this process's pid in it;
// unlock releases it.
func lockIdentity(stateDir string) (unlock func(), err error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", stateDir, err)
	}
	path := filepath.Join(stateDir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := strings.TrimSpace(string(b[:n])); pid != "" {
				return nil, fmt.Errorf("%w (pid %s; %s)", ErrAlreadyRunning, pid, path)
			}
			return nil, fmt.Errorf("%w (%s)", ErrAlreadyRunning, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		f.Close() // releases the lock
	}, nil
}
