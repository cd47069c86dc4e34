package sandbox_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns a new pseudo-terminal's master and slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestExecCannotInjectIntoTheCallersTerminal: `sandbox exec` run in a
// terminal gives the sandboxed process that terminal; with TIOCSTI it must
// not be able to push input ("echo INJECTED") into it, i.e. into the
// caller's shell.
func TestExecCannotInjectIntoTheCallersTerminal(t *testing.T) {
	u := newUser(t)
	u.MustRun(t, "sandbox", "start", "tty")
	_, slave := openPty(t)
	// perl (Debian's perl-base, in the host's /usr) does the ioctl: 0x5412
	// is TIOCSTI on x86_64 and arm64.
	script := `for my $c (split //, "echo INJECTED\n") { ioctl(STDIN, 0x5412, $c) or do { print STDERR "TIOCSTI: $!\n"; exit 0 } } print STDERR "TIOCSTI: injected\n"`
	cmd := u.Command(t.Context(), "sandbox", "exec", "tty", "--", "perl", "-e", script)
	cmd.Stdin, cmd.Stdout = slave, slave
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The caller runs in the terminal as a shell would: its session, its
	// controlling terminal.
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	if err := cmd.Run(); err != nil {
		t.Fatalf("sandbox exec: %v\n%s", err, stderr.String())
	}
	t.Logf("inside: %s", strings.TrimSpace(stderr.String()))
	// Whatever was injected would now wait in the terminal's input queue.
	time.Sleep(200 * time.Millisecond)
	queued, err := unix.IoctlGetInt(int(slave.Fd()), unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	if queued > 0 || strings.Contains(stderr.String(), "injected") {
		t.Fatalf("the sandboxed process pushed %d bytes into the caller's terminal (%s)", queued, stderr.String())
	}
}
