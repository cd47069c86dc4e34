package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	lxc "github.com/lxc/go-lxc"
)

// ExecSpec is a process to run inside a peer's container.
type ExecSpec struct {
	Args []string
	// AsRoot runs as the container's root (an unprivileged subordinate uid
	// on the host) instead of the guest user.
	AsRoot bool
	// Env is the whole environment besides PATH, HOME, USER, LOGNAME and
	// SHELL, which default to the guest's.
	Env []string
	Cwd string // default: the user's home
	// Stdin, Stdout and Stderr are handed to the process as they are (no
	// relay): a socket given as stdin and stdout is the process's own.
	// Nil means /dev/null.
	Stdin, Stdout, Stderr *os.File
}

// Process is a process started in a container. The caller must Wait for it.
type Process struct {
	Pid  int
	proc *os.Process
	// Where liblxc logs, and how long the log was before the attach: an
	// attach that fails after the fork only shows there.
	peer, logFile string
	logOff        int64
	// pids is the container's cgroups (nil when unknown), refusedBefore
	// the forks its pids limit had refused before the attach.
	pids          *payload
	refusedBefore int64
}

// EnterError is an attach that failed: the process never ran in the
// sandbox.
type EnterError struct {
	Peer    string
	Err     error    // go-lxc's, when the attach failed before it forked
	Lines   []string // liblxc's ERROR lines
	LogFile string
	// ProcessLimit is the container's pids limit when it refused the
	// attach's fork (0: another cause).
	ProcessLimit int
}

func (e *EnterError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "entering the sandbox for %s failed", e.Peer)
	if e.ProcessLimit > 0 {
		fmt.Fprintf(&b, ": the sandbox is at its process limit (%d processes)", e.ProcessLimit)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	if len(e.Lines) > 0 {
		fmt.Fprintf(&b, "; liblxc said:\n  %s", strings.Join(e.Lines, "\n  "))
	}
	fmt.Fprintf(&b, "\n  (full log: %s)", e.LogFile)
	return b.String()
}

func (e *EnterError) Unwrap() error { return e.Err }

// enterError is the EnterError of an attach that failed (after liblxc
// forked when err is nil), or nil when liblxc logged no attach error and
// err is nil (the process ran and exited with a failure of its own).
func (p *Process) enterError(err error) *EnterError {
	lines := attachErrors(p.logFile, p.logOff, 8)
	if len(lines) == 0 && err == nil {
		return nil
	}
	e := &EnterError{Peer: p.peer, Err: err, Lines: lines, LogFile: p.logFile}
	if p.pids != nil && p.refusedBefore >= 0 && p.pids.pidsRefused() > p.refusedBefore {
		e.ProcessLimit = p.pids.pidsLimit()
	}
	return e
}

// Wait waits for the process to exit and returns its exit code (128+signal
// when killed by a signal). When entering the container failed (liblxc's
// attach, after it forked), the error carries liblxc's own lines.
func (p *Process) Wait() (int, error) {
	st, err := p.proc.Wait()
	if err != nil {
		return -1, fmt.Errorf("waiting for pid %d: %w", p.Pid, err)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	if code := st.ExitCode(); code != 0 && p.logFile != "" {
		if e := p.enterError(nil); e != nil {
			return code, e
		}
	}
	return st.ExitCode(), nil
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.proc.Signal(sig) }

// Exec starts a process in the peer's running container, through attach:
// the process joins all the container's namespaces and cgroups, runs as the
// guest with the container's capability bounds and no_new_privs, and gets
// exactly the given stdio descriptors.
func (m *Manager) Exec(ctx context.Context, peer string, spec ExecSpec) (*Process, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("exec: no command")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := m.running(peer)
	if err != nil {
		return nil, err
	}
	var devnull *os.File
	std := [3]*os.File{spec.Stdin, spec.Stdout, spec.Stderr}
	for i := range std {
		if std[i] == nil {
			if devnull == nil {
				devnull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0)
				if err != nil {
					return nil, fmt.Errorf("exec in sandbox for %s: %w", peer, err)
				}
				defer devnull.Close()
			}
			std[i] = devnull
		}
	}
	opts := lxc.DefaultAttachOptions
	opts.ClearEnv = true
	uid, gid, home, user := GuestUID, GuestGID, GuestHome, GuestUser
	if spec.AsRoot {
		uid, gid, home, user = 0, 0, "/root", "root"
	}
	opts.UID, opts.GID = uid, gid
	opts.Cwd = spec.Cwd
	if opts.Cwd == "" {
		opts.Cwd = home
	}
	args := spec.Args
	if opts.Cwd == GuestHome || strings.HasPrefix(opts.Cwd, GuestHome+"/") {
		// liblxc changes directory before it takes the guest's ids, as the
		// desktop user, whom the home's FUSE file system does not know
		// (EOVERFLOW): the process changes directory itself.
		args = append([]string{"/bin/sh", "-c", `cd "$1" 2>/dev/null; shift; exec "$@"`, "sh", opts.Cwd}, args...)
		opts.Cwd = "/"
	}
	args = ownSession(args, std)
	opts.Env = append([]string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + home, "USER=" + user, "LOGNAME=" + user, "SHELL=/bin/sh",
	}, spec.Env...)
	opts.StdinFd, opts.StdoutFd, opts.StderrFd = std[0].Fd(), std[1].Fd(), std[2].Fd()
	logFile := filepath.Join(m.dir(containerName(peer)), "lxc.log")
	var logOff int64
	if st, err := os.Stat(logFile); err == nil {
		logOff = st.Size()
	}
	p := &Process{peer: peer, logFile: logFile, logOff: logOff}
	if pl, err := payloadOf(c.InitPid(), m.hs); err == nil {
		p.pids, p.refusedBefore = &pl, pl.pidsRefused()
	}
	pid, err := c.RunCommandNoWait(args, opts)
	if err != nil {
		return nil, p.enterError(fmt.Errorf("exec %q: %w", spec.Args[0], err))
	}
	if p.proc, err = os.FindProcess(pid); err != nil {
		return nil, fmt.Errorf("exec in sandbox for %s: %w", peer, err)
	}
	p.Pid = pid
	return p, nil
}

// WaitContext waits for the process; when ctx ends first the process gets
// SIGTERM, then SIGKILL after grace (0: SIGKILL at once).
func (p *Process) WaitContext(ctx context.Context, grace time.Duration) (int, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		if grace > 0 {
			p.Signal(syscall.SIGTERM)
			select {
			case <-done:
				return
			case <-time.After(grace):
			}
		}
		p.Signal(syscall.SIGKILL)
	}()
	return p.Wait()
}

// Run runs a process in the peer's container and waits for it; ctx
// cancellation kills it.
func (m *Manager) Run(ctx context.Context, peer string, spec ExecSpec) (int, error) {
	p, err := m.Exec(ctx, peer, spec)
	if err != nil {
		return -1, err
	}
	return p.WaitContext(ctx, 0)
}

// Export writes the peer's home directory as a gzip-compressed tar archive
// to w. The container is started if needed; the archive is made inside it,
// as the guest, by the host's tar.
func (m *Manager) Export(ctx context.Context, peer string, w io.Writer) error {
	if err := m.Start(ctx, peer); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("exporting sandbox home of %s: %w", peer, err)
	}
	p, err := m.Exec(ctx, peer, ExecSpec{Args: []string{"tar", "-C", GuestHome, "-czf", "-", "."}, Stdout: pw})
	pw.Close()
	if err != nil {
		pr.Close()
		return fmt.Errorf("exporting sandbox home of %s: %w", peer, err)
	}
	_, cerr := io.Copy(w, pr)
	pr.Close()
	code, err := p.Wait()
	switch {
	case err != nil:
		return fmt.Errorf("exporting sandbox home of %s: %w", peer, err)
	case cerr != nil:
		return fmt.Errorf("exporting sandbox home of %s: %w", peer, cerr)
	case code != 0:
		return fmt.Errorf("exporting sandbox home of %s: tar exited with status %d", peer, code)
	}
	return nil
}

// ServeConn runs spec in the peer's running container with conn itself as
// the process's stdin and stdout (inetd style: no relay process, no network
// device in the container), and waits for it. When ctx ends the process gets
// SIGTERM, then SIGKILL after grace.
func (m *Manager) ServeConn(ctx context.Context, peer string, conn *net.TCPConn, spec ExecSpec, grace time.Duration) (int, error) {
	f, err := conn.File()
	if err != nil {
		return -1, fmt.Errorf("handing a connection to the sandbox of %s: %w", peer, err)
	}
	spec.Stdin, spec.Stdout = f, f
	p, err := m.Exec(ctx, peer, spec)
	f.Close() // the process has its own copy
	if err != nil {
		return -1, err
	}
	return p.WaitContext(ctx, grace)
}

// RootfsPath is the host path of the peer's container root directory; files
// written below it (by the desktop user) appear inside, owned by nobody.
func (m *Manager) RootfsPath(peer string) string {
	return filepath.Join(m.dir(containerName(peer)), "rootfs")
}
