package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a process gets to exit after SIGTERM before it is
// killed.
const stopTimeout = 5 * time.Second

// proc is a long-running process started by the test bed.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
	log  *os.File
}

// startProc starts cmd with stdout and stderr going to logPath; when marker
// is not empty it waits up to timeout until a line containing it is written.
func startProc(name string, cmd *exec.Cmd, logPath, marker string, timeout time.Duration) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	w := &markerWriter{w: logf, marker: []byte(marker), seen: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if marker == "" {
		return p, nil
	}
	select {
	case <-w.seen:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("starting %s: exited before it was ready (%v); log %s:\n%s", name, p.err, logPath, tail(logPath, 2000))
	case <-time.After(timeout):
		p.stop()
		return nil, fmt.Errorf("starting %s: not ready after %v; log %s:\n%s", name, timeout, logPath, tail(logPath, 2000))
	}
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, then SIGKILL after stopTimeout, and
// waits for it. It is a no-op for a process that has already ended.
func (p *proc) stop() error {
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("stopping %s (pid %d): killed after ignoring SIGTERM for %v", p.name, p.pid(), stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("stopping %s (pid %d): still running after SIGKILL", p.name, p.pid())
	}
}

// markerWriter copies output to w and closes seen the first time a line
// containing marker is written.
type markerWriter struct {
	w      io.Writer
	marker []byte

	mu   sync.Mutex
	line []byte
	seen chan struct{}
	hit  bool
}

func (m *markerWriter) Write(b []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.marker) > 0 && !m.hit {
		m.line = append(m.line, b...)
		for {
			i := bytes.IndexByte(m.line, '\n')
			if i < 0 {
				break
			}
			if bytes.Contains(m.line[:i], m.marker) {
				m.hit = true
				close(m.seen)
				m.line = nil
				break
			}
			m.line = m.line[i+1:]
		}
	}
	return m.w.Write(b)
}

// tail returns at most the last n bytes of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// procStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat), which tells a live process from a reused pid.
func procStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
