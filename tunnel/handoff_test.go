package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// ExecHandoff (test support) starts a program per connection with the socket as its
// stdin and stdout (inetd style, no relay process), e.g. an SSH endpoint
// started inside a container, or `sshd -i`. The program runs in its own
// process group; when the Handoff's context ends the group gets SIGTERM,
// then SIGKILL after KillGrace.
type ExecHandoff struct {
	Path string
	Args []string // argv[1:]
	Env  []string // nil: inherit
	Dir  string
	// Stderr receives the program's stderr (nil: discarded).
	Stderr io.Writer
	// KillGrace is the wait between SIGTERM and SIGKILL (default 2s).
	KillGrace time.Duration
	// Started, if set, is called with the pid once the program runs.
	Started func(pid int)
}

// Serve runs the program on conn and waits for it.
func (h ExecHandoff) Serve(ctx context.Context, conn *net.TCPConn) error {
	f, err := conn.File()
	if err != nil {
		return fmt.Errorf("handing off connection to %s: %w", h.Path, err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, h.Path, h.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, h.Stderr
	cmd.Env, cmd.Dir = h.Env, h.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = h.KillGrace
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("handing off connection to %s: %w", h.Path, err)
	}
	f.Close()
	if h.Started != nil {
		h.Started(cmd.Process.Pid)
	}
	err = cmd.Wait()
	// Whatever the program left in its group goes with it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Path, err)
	}
	return nil
}
