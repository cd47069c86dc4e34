package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/systemd"
	lxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// The systemd driver (pure cgroup v2 hosts with systemd: Debian 12, Ubuntu,
// Fedora). Wherever the app was started from (a menu's app-*.scope, an
// autostart service, a login shell's session-N.scope), its own cgroup is no
// place for containers: it holds the app, and outside the user manager it
// is not even the user's. So:
//
//   - Containers are started by a small helper process of ours (the same
//     binary, `ebrainpool sandbox-helper`) that the user's systemd manager
//     puts in a transient scope with Delegate=yes, in app-ebrainpool.slice.
//     The helper moves itself into SCOPE/init.scope and enables the cpu,
//     memory and pids controllers in SCOPE; liblxc, which reads a cgroup
//     named init.scope as its parent, then makes SCOPE/lxc.monitor.NAME and
//     SCOPE/lxc.payload.NAME with the limits. The scope lives on while its
//     containers run, also after the helper exits.
//   - Attaching (exec) moves a process from the caller's cgroup into the
//     container's, which the kernel allows only where the nearest common
//     ancestor belongs to the user: anywhere below user@UID.service. A
//     process outside it (a login shell's session scope) first asks the
//     user manager to move it into a scope of its own there, as
//     `systemd-run --user --scope` does.
const (
	sandboxSlice = "app-ebrainpool.slice"
	helperLeaf   = "init.scope"
)

// delegatedControllers are the controllers the limits need.
var delegatedControllers = []string{"cpu", "memory", "pids"}

type scopeDriver struct {
	uid     int
	binary  string // the ebrainpool binary the helper runs from
	lxcpath string
	log     *slog.Logger

	mu     sync.Mutex
	helper *helperConn
}

func newScopeDriver(ctx context.Context, m *Manager) (*scopeDriver, error) {
	um := userManagerCgroup(m.uid)
	if _, err := os.Stat(um); err != nil {
		return nil, fmt.Errorf("%w: no systemd user manager runs for %s (user@%d.service: no login session and no linger)\n  fix: log in to the desktop as %s, or run `sudo loginctl enable-linger %s` once", ErrNoLimits, m.user, m.uid, m.user, m.user)
	}
	b, err := os.ReadFile(filepath.Join(um, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the controllers of user@%d.service: %v", ErrNoLimits, m.uid, err)
	}
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range delegatedControllers {
		if !contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: systemd does not delegate the %s controller(s) to user@%d.service\n  fix: create /etc/systemd/system/user@.service.d/delegate.conf with \"[Service]\" and \"Delegate=cpu memory pids\", run `sudo systemctl daemon-reload`, then log out and in", ErrNoLimits, strings.Join(missing, ", "), m.uid)
	}
	if err := enterUserManager(ctx, m.uid); err != nil {
		return nil, err
	}
	return &scopeDriver{uid: m.uid, binary: m.cfg.GuestBinary, lxcpath: m.lxcpath, log: m.log}, nil
}

// userManagerCgroup is the cgroup of the user's systemd manager.
func userManagerCgroup(uid int) string {
	u := strconv.Itoa(uid)
	return filepath.Join("/sys/fs/cgroup/user.slice", "user-"+u+".slice", "user@"+u+".service")
}

func inUserManager(cg string, uid int) bool {
	return strings.Contains(cg+"/", "/user@"+strconv.Itoa(uid)+".service/")
}

// enterUserManager moves the calling process below user@UID.service if it
// is not there, so that it may attach to its sandboxes.
func enterUserManager(ctx context.Context, uid int) error {
	cg, err := ownCgroupV2()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoLimits, err)
	}
	if inUserManager(cg, uid) {
		return nil
	}
	sd, err := systemd.DialUser(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoLimits, err)
	}
	defer sd.Close()
	pid := os.Getpid()
	if err := sd.StartScope(ctx, systemd.Scope{
		Name:        fmt.Sprintf("ebrainpool-%d.scope", pid),
		Slice:       sandboxSlice,
		Description: fmt.Sprintf("eBrainPool (%s, pid %d)", filepath.Base(os.Args[0]), pid),
		PIDs:        []uint32{uint32(pid)},
	}); err != nil {
		return fmt.Errorf("%w: %v", ErrNoLimits, err)
	}
	if cg, err = ownCgroupV2(); err != nil || !inUserManager(cg, uid) {
		return fmt.Errorf("%w: the systemd user manager did not move this process below user@%d.service (it is in %s)", ErrNoLimits, uid, cg)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *scopeDriver) start(ctx context.Context, c *lxc.Container) error {
	for try := 0; ; try++ {
		h, err := d.ensureHelper(ctx)
		if err != nil {
			return err
		}
		err = h.call(ctx, helperRequest{Start: c.Name()})
		if errors.Is(err, errHelperGone) && try == 0 {
			d.drop(h) // it exited (killed?): start a new one once
			continue
		}
		return err
	}
}

func (d *scopeDriver) warm(ctx context.Context) error {
	_, err := d.ensureHelper(ctx)
	return err
}

// roots is the slice all sandbox scopes go in.
func (d *scopeDriver) roots() []string {
	return []string{filepath.Join(userManagerCgroup(d.uid), "app.slice", sandboxSlice)}
}

func (d *scopeDriver) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.helper != nil {
		d.helper.close()
		d.helper = nil
	}
}

func (d *scopeDriver) drop(h *helperConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.helper == h {
		h.close()
		d.helper = nil
	}
}

// ensureHelper starts the helper in its delegated scope, once.
func (d *scopeDriver) ensureHelper(ctx context.Context) (*helperConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.helper != nil {
		return d.helper, nil
	}
	h, err := startHelper(ctx, d.binary, d.lxcpath)
	if err != nil {
		return nil, err
	}
	d.helper = h
	return h, nil
}

// helperRequest and helperReply are the messages on the helper's socket,
// one JSON object per datagram.
type helperRequest struct {
	Placed bool   `json:"placed,omitempty"` // the scope exists: set up and report
	Start  string `json:"start,omitempty"`  // container name
}

type helperReply struct {
	Error string `json:"error,omitempty"`
}

var errHelperGone = errors.New("the sandbox helper exited")

// helperConn is our end of a running helper.
type helperConn struct {
	mu   sync.Mutex // one request at a time
	sock *os.File
	cmd  *exec.Cmd
	done chan struct{}
}

// startHelper runs the helper, has the user's systemd manager put it in a
// delegated scope, and waits until it is ready.
func startHelper(ctx context.Context, binary, lxcpath string) (*helperConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox helper: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper"), os.NewFile(uintptr(fds[1]), "helper-peer")
	cmd := exec.Command(binary, "sandbox-helper", "--lxcpath", lxcpath)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("starting the sandbox helper %s: %w", binary, err)
	}
	h := &helperConn{sock: ours, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(h.done) }()
	fail := func(err error) (*helperConn, error) {
		h.close()
		return nil, err
	}
	sd, err := systemd.DialUser(ctx)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNoLimits, err))
	}
	defer sd.Close()
	pid := cmd.Process.Pid
	if err := sd.StartScope(ctx, systemd.Scope{
		Name:        fmt.Sprintf("ebrainpool-sandboxes-%d.scope", pid),
		Slice:       sandboxSlice,
		Description: "eBrainPool sandboxes (peers' apps, with their limits)",
		PIDs:        []uint32{uint32(pid)},
		Delegate:    true,
	}); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNoLimits, err))
	}
	if err := h.call(ctx, helperRequest{Placed: true}); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNoLimits, err))
	}
	return h, nil
}

// call sends one request and waits for its reply.
func (h *helperConn) call(ctx context.Context, req helperRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := h.sock.Write(b); err != nil {
		return fmt.Errorf("%w: %v", errHelperGone, err)
	}
	type result struct {
		rep helperReply
		err error
	}
	got := make(chan result, 1)
	go func() {
		buf := make([]byte, 64<<10)
		n, err := h.sock.Read(buf)
		if err != nil || n == 0 {
			got <- result{err: fmt.Errorf("%w (%v)", errHelperGone, err)}
			return
		}
		var rep helperReply
		if err := json.Unmarshal(buf[:n], &rep); err != nil {
			got <- result{err: fmt.Errorf("a bad reply from the sandbox helper: %w", err)}
			return
		}
		got <- result{rep: rep}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			return r.err
		}
		if r.rep.Error != "" {
			return errors.New(r.rep.Error)
		}
		return nil
	case <-ctx.Done():
		// The request may still finish; the helper is unusable until it
		// answers, so let it go.
		h.sock.Close()
		return ctx.Err()
	}
}

// close ends the helper: it exits when its socket closes.
func (h *helperConn) close() {
	h.sock.Close()
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

// RunHelper is the sandbox helper (`ebrainpool sandbox-helper`): it serves
// container starts for the process that started it, over the socket on fd
// 3, until that socket closes. See the systemd driver above.
func RunHelper(lxcpath string) error {
	sock := os.NewFile(3, "helper")
	if sock == nil {
		return errors.New("sandbox-helper: no socket on fd 3 (it is started by ebrainpool itself)")
	}
	defer sock.Close()
	var leaf string
	buf := make([]byte, 64<<10)
	for {
		n, err := sock.Read(buf)
		if err != nil || n == 0 {
			return nil // our parent is gone
		}
		var req helperRequest
		var rep helperReply
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			rep.Error = "bad request: " + err.Error()
		} else {
			switch {
			case req.Placed:
				leaf, err = enterHelperLeaf()
			case req.Start != "" && leaf == "":
				err = errors.New("the helper has no delegated scope")
			case req.Start != "":
				err = helperStart(lxcpath, req.Start, leaf)
			}
			if err != nil {
				rep.Error = err.Error()
			}
		}
		b, _ := json.Marshal(rep)
		if _, err := sock.Write(b); err != nil {
			return nil
		}
	}
}

// enterHelperLeaf moves the helper from its scope into SCOPE/init.scope and
// enables the limits' controllers in SCOPE.
func enterHelperLeaf() (string, error) {
	cg, err := ownCgroupV2()
	if err != nil {
		return "", err
	}
	scope := filepath.Join("/sys/fs/cgroup", cg)
	leaf := filepath.Join(scope, helperLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating %s (is the scope delegated?): %w", leaf, err)
	}
	if err := moveSelf(leaf); err != nil {
		return "", err
	}
	enable := "+" + strings.Join(delegatedControllers, " +")
	if err := os.WriteFile(filepath.Join(scope, "cgroup.subtree_control"), []byte(enable), 0); err != nil {
		return "", fmt.Errorf("enabling %s in %s: %w", enable, scope, err)
	}
	return leaf, nil
}

func moveSelf(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("moving into %s: %w", dir, err)
	}
	return nil
}

// helperStart starts a defined container; liblxc moves the helper into the
// container's monitor cgroup, so it moves back to its leaf afterwards.
func helperStart(lxcpath, name, leaf string) error {
	c, err := lxc.NewContainer(name, lxcpath)
	if err != nil {
		return fmt.Errorf("loading container %s: %w", name, err)
	}
	defer lxc.Release(c)
	if err := c.WantCloseAllFds(true); err != nil {
		return err
	}
	c.WantDaemonize(true)
	err = c.Start()
	if merr := moveSelf(leaf); merr != nil && err == nil {
		err = merr
	}
	return err
}
