package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// The isolated display (issue 14's mode (b)): the app draws on an X server
// of its own inside the sandbox (Xpra's, an Xvfb), and only its windows
// travel, as Xpra's protocol over a channel of the session's SSH
// connection, to an `xpra attach` on the requester's side, which is the
// only client of the requester's display.
const (
	// isolatedDisplayRequest is the session request (no payload) that
	// asks the endpoint to run the approved command on an isolated
	// display; instead of x11-req, before exec.
	isolatedDisplayRequest = "isolated-display@ebrainpool"
	// XpraChannelType is the channel the client opens to the endpoint for
	// each connection of its `xpra attach`: a byte stream to the xpra
	// server's socket in the sandbox. Its open payload is empty.
	XpraChannelType = "xpra@ebrainpool"
	// maxXpraChannels caps the xpra channels of one session (xpra attach
	// uses one).
	maxXpraChannels = 4
	// xpraSocketWait bounds how long an xpra channel waits for the xpra
	// server's socket to appear (the server's start).
	xpraSocketWait = 30 * time.Second
	// xpraStopGrace is how long the xpra processes get after SIGTERM.
	xpraStopGrace = 2 * time.Second
)

// XpraPackage is what a computer needs installed for the isolated display
// (Debian 12: xpra 3.1.3, plus python3-pil to send window icons).
const XpraPackage = "xpra"

// xpraCommon are the options both sides give xpra: nothing but windows,
// keyboard and pointer travels.
var xpraCommon = []string{
	"--mdns=no", "--notifications=no", "--pulseaudio=no", "--webcam=no",
	"--speaker=disabled", "--microphone=disabled", "--printing=no",
	"--file-transfer=no", "--open-files=no", "--open-url=no", "--clipboard=no",
	"--dbus-proxy=no", "--system-tray=no", "--tray=no", "--mmap=no",
	"--av-sync=no", "--xsettings=no",
}

// xpraXvfb is the X server of an isolated display: a 3840x2160 Xvfb
// (Debian's xpra.conf uses 5760x2560, 59 MB of framebuffer), with GLX
// (llvmpipe) and Composite.
const xpraXvfb = "Xvfb +extension GLX +extension Composite -screen 0 3840x2160x24+32 -dpi 96 -nolisten tcp -noreset -auth $XAUTHORITY"

// xpraServerArgv is the endpoint's command for the approved argv on an
// isolated display whose socket is sock and whose state lives in dir.
func xpraServerArgv(xpra string, argv []string, dir, sock string) []string {
	// The app's exit status is kept in the directory for the endpoint to
	// report (xpra's own is not the app's).
	child := append([]string{"sh", "-c", `"$@"; s=$?; echo $s > "$0"; exit $s`, filepath.Join(dir, xpraStatusFile)}, argv...)
	out := []string{xpra, "start", "--daemon=no",
		"--start-child=" + ShellJoin(child), "--exit-with-children=yes", "--terminate-children=yes",
		"--exit-with-client=yes", "--bind=" + sock, "--socket-dirs=" + dir, "--socket-dir=" + dir,
		"--log-dir=" + dir, "--dbus-launch=", "--dbus-control=no", "--systemd-run=no", "--html=off",
		"--start-new-commands=no", "--forward-xdg-open=no", "--use-display=no", "--title=@title@",
		// As Debian's /etc/xpra does, which the sandbox's /etc lacks
		// (xpra's built-in default is Xorg with a dummy driver and a
		// configuration file from there).
		"--xvfb=" + xpraXvfb, "--fake-xinerama=no"}
	return append(out, xpraCommon...)
}

// xpraStatusFile, in a guestXpra's directory, holds the app's exit status.
const xpraStatusFile = "status"

// appStatus is the app's exit status, if it exited.
func (g *guestXpra) appStatus() (int, bool) {
	b, err := os.ReadFile(filepath.Join(g.dir, xpraStatusFile))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil && n >= 0 && n < 256
}

// xpraClientArgv is the requester's `xpra attach` of the local socket sock.
func xpraClientArgv(xpra, sock, dir string) []string {
	out := []string{xpra, "attach", "socket://" + sock, "--socket-dirs=" + dir, "--opengl=no", "--bell=no", "--title=@title@"}
	return append(out, xpraCommon...)
}

// ErrNoXpra is the error when this computer has no xpra for the isolated
// display.
var ErrNoXpra = errors.New("the isolated display needs xpra on this computer: install the xpra package (Debian, Ubuntu: sudo apt install xpra)")

// ErrHostNoIsolated is the error when the host cannot run the app on an
// isolated display (it has no xpra, or an older eBrainPool).
var ErrHostNoIsolated = errors.New("the host cannot run the app on an isolated display: it needs the xpra package installed (and an eBrainPool with the isolated display)")

// FindXpra returns the path of xpra in PATH or ErrNoXpra.
func FindXpra() (string, error) {
	p, err := exec.LookPath("xpra")
	if err != nil {
		return "", ErrNoXpra
	}
	return p, nil
}

// CheckIsolatedDisplay returns a *DisplayError wrapping ErrNoXpra when
// this computer cannot show an app on an isolated display (no xpra).
func CheckIsolatedDisplay() error {
	if _, err := FindXpra(); err != nil {
		return displayErrorf(err, "%v", err)
	}
	return nil
}

// guestXpra is an endpoint session's isolated display: the directory
// holding the xpra server's socket and state.
type guestXpra struct {
	xpra string
	dir  string
	sock string

	mu    sync.Mutex
	chans int
}

func newGuestXpra(env []string) (*guestXpra, error) {
	xpra := lookPathIn("xpra", env)
	hasPath := false
	for _, e := range env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
	}
	if !strings.Contains(xpra, "/") && hasPath {
		return nil, ErrNoXpra
	}
	if !strings.Contains(xpra, "/") {
		p, err := exec.LookPath(xpra)
		if err != nil {
			return nil, ErrNoXpra
		}
		xpra = p
	}
	dir, err := shortTempDir("")
	if err != nil {
		return nil, fmt.Errorf("isolated display: %w", err)
	}
	return &guestXpra{xpra: xpra, dir: dir, sock: filepath.Join(dir, "xpra.sock")}, nil
}

// maxSocketDir is the longest directory shortTempDir returns: a unix
// socket's path has at most 107 bytes, and xpra names its own sockets
// in it after the host and the display.
const maxSocketDir = 60

// shortTempDir makes a private directory for unix sockets in base (""
// for $TMPDIR), or in /tmp where base's path is too long for them.
func shortTempDir(base string) (string, error) {
	if base == "" {
		base = os.TempDir()
	}
	if len(base) > maxSocketDir-len("/ebp-xpra-0123456789") {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "ebp-xpra-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o700)
}

func (g *guestXpra) close() { os.RemoveAll(g.dir) }

// env is the xpra server's environment: the app's, with its runtime
// directory and Xauthority in the session's directory.
func (g *guestXpra) env(env []string) []string {
	out := make([]string, 0, len(env)+3)
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == "DISPLAY" || k == "XAUTHORITY" || k == "XDG_RUNTIME_DIR" {
			continue
		}
		out = append(out, e)
	}
	return append(out, "XDG_RUNTIME_DIR="+g.dir, "XAUTHORITY="+filepath.Join(g.dir, "Xauthority"))
}

// serveChannel relays one xpra channel to the xpra server's socket,
// waiting for the socket while the server starts.
func (g *guestXpra) serveChannel(ctx context.Context, nc ssh.NewChannel, log *slog.Logger) {
	if len(nc.ExtraData()) != 0 {
		nc.Reject(ssh.ConnectionFailed, "xpra channel takes no payload")
		return
	}
	g.mu.Lock()
	if g.chans >= maxXpraChannels {
		g.mu.Unlock()
		nc.Reject(ssh.ResourceShortage, "too many xpra channels")
		return
	}
	g.chans++
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.chans--; g.mu.Unlock() }()
	wctx, cancel := context.WithTimeout(ctx, xpraSocketWait)
	defer cancel()
	var c net.Conn
	for {
		var err error
		var d net.Dialer
		if c, err = d.DialContext(wctx, "unix", g.sock); err == nil {
			break
		}
		select {
		case <-wctx.Done():
			log.Warn("endpoint xpra channel: the xpra server's socket did not appear", "after", xpraSocketWait, "err", err)
			nc.Reject(ssh.ConnectionFailed, "the isolated display did not start")
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	relay(c.(*net.UnixConn), ch)
}

// processTree returns pid and its descendants (from /proc).
func processTree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// xpraTree keeps the processes an xpra started, which leave its process
// group (Xpra starts its Xvfb and the app in sessions of their own), so
// that all of them end with the session.
type xpraTree struct {
	mu   sync.Mutex
	pids map[int]bool
}

// watch records pid's tree every 200 ms until done is closed.
func (t *xpraTree) watch(pid int, done <-chan struct{}) {
	t.mu.Lock()
	t.pids = map[int]bool{}
	t.mu.Unlock()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		for _, p := range processTree(pid) {
			t.pids[p] = true
		}
		t.mu.Unlock()
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// signal sends sig to every process seen.
func (t *xpraTree) signal(sig syscall.Signal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.pids {
		syscall.Kill(p, sig)
	}
}

// runXpraAttach is the requester's side of an isolated session: it serves
// a unix socket (0600, in a 0700 directory of $XDG_RUNTIME_DIR) whose
// connections become xpra channels of client, runs `xpra attach` on it
// for target's display, and returns a stop function. When xpra attach
// exits on its own, ended is called (the session ends). Nothing else is
// served: the socket's only use is that channel.
func runXpraAttach(ctx context.Context, client *ssh.Client, xpra string, t *x11Target, ended func(), log *slog.Logger) (stop func(), err error) {
	dir, err := shortTempDir(os.Getenv("XDG_RUNTIME_DIR"))
	if err != nil {
		return nil, fmt.Errorf("isolated display: %w", err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("isolated display: %w", err)
	}
	os.Chmod(sock, 0o600)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		relayAccepted(ln, maxXpraChannels, func() (ssh.Channel, <-chan *ssh.Request, error) {
			ch, reqs, err := client.OpenChannel(XpraChannelType, nil)
			if err != nil {
				log.Warn("isolated display: xpra channel refused", "err", err)
			}
			return ch, reqs, err
		}, func() {}, func() bool { return false })
	}()
	argv := xpraClientArgv(xpra, sock, dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	env := make([]string, 0, len(os.Environ())+3)
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "DISPLAY" && k != "XAUTHORITY" && k != "XDG_RUNTIME_DIR" && k != "WAYLAND_DISPLAY" && k != "GDK_BACKEND" {
			env = append(env, e)
		}
	}
	// On the X display checked (on a Wayland desktop: Xwayland), not as
	// a Wayland client.
	env = append(env, "DISPLAY="+t.name, "XDG_RUNTIME_DIR="+dir, "GDK_BACKEND=x11")
	if t.xauth != "" && !t.xauthMissing {
		env = append(env, "XAUTHORITY="+t.xauth)
	}
	cmd.Env = env
	out := &logLines{log: log, msg: "xpra attach"}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group, and killed if this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("isolated display: starting %s: %w", xpra, err)
	}
	log.Info("isolated display: xpra attach started", "pid", cmd.Process.Pid, "display", t.name)
	var tree xpraTree
	done := make(chan struct{})
	go tree.watch(cmd.Process.Pid, done)
	var stopping sync.Once
	var stopped bool
	var smu sync.Mutex
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		smu.Lock()
		s := stopped
		smu.Unlock()
		if !s {
			log.Info("isolated display: xpra attach exited: ending the session", "err", err, "output", out.last())
			ended()
		}
	}()
	stop = func() {
		stopping.Do(func() {
			smu.Lock()
			stopped = true
			smu.Unlock()
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			tree.signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(xpraStopGrace):
			}
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			close(done)
			tree.signal(syscall.SIGKILL)
			<-exited
			ln.Close()
			wg.Wait()
			os.RemoveAll(dir)
		})
	}
	return stop, nil
}

// logLines logs each line written to it.
type logLines struct {
	log  *slog.Logger
	msg  string
	mu   sync.Mutex
	buf  []byte
	tail []string // the last lines
}

// last is the last lines written, for a message.
func (l *logLines) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.tail, " | ")
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" {
			l.log.Debug(l.msg, "line", line)
			l.tail = append(l.tail, line)
			if len(l.tail) > 8 {
				l.tail = l.tail[1:]
			}
		}
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

var _ io.Writer = (*logLines)(nil)
