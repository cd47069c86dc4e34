package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// A process given the caller's terminal (the debug CLI's `sandbox exec` in
// a terminal) would share the caller's session: with TIOCSTI it could push
// input into the caller's shell. Such a process is started through
// GuestExec, which puts it in a session of its own first, without a
// controlling terminal: TIOCSTI then fails (only a controlling terminal
// takes it, short of CAP_SYS_ADMIN on the host), and TIOCSCTTY cannot take
// the caller's terminal either (it is another session's).

// GuestExec runs argv in a new session (`ebrainpool guest-exec -- CMD...`,
// inside a container).
func GuestExec(argv []string) error {
	if len(argv) == 0 {
		return errors.New("guest-exec: no command")
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("guest-exec: a session of its own: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("guest-exec: %w", err)
	}
	return syscall.Exec(path, argv, os.Environ())
}

// ownSession wraps argv in guest-exec when the process gets a terminal.
func ownSession(argv []string, std [3]*os.File) []string {
	for _, f := range std {
		if isTerminal(f) {
			return append([]string{GuestBinaryPath, "guest-exec", "--"}, argv...)
		}
	}
	return argv
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
