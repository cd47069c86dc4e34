package ui

import (
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// The desktop app draws its windows in a child process, the window process
// (Options.WindowProcess: `ebrainpool gui-windows`), started when a window
// or popup is needed and ending a few seconds after its last one closed
// (Options.Linger). Drawing loads the GL driver, and with Mesa's software
// renderer that is about 110 MB the process keeps until it exits (libLLVM,
// the driver, their heaps, Fyne's caches); the tray (fyne.io/systray, no
// GL), the daemon and the desktop notifications stay in the app's own
// process, which so stays at its idle size.
//
// The window process talks to the app only, over a private socket pair
// (winproto.go): it reads and changes everything through the app's Backend
// and gets the daemon's events as the app handles them, in order with the
// app's own launches (the app keeps the launch list, so it outlives each
// window process). The daemon never waits for it: a request nobody
// answers is denied at the daemon's timeout as before, whether the popup
// shows, closes or its process crashes. A window
// process that crashes leaves the app running; a request still waiting
// starts a new one (at most maxRestarts a minute), anything else starts
// one when the user opens a window. The window process ends when the
// socket closes, so it never outlives the app.
type windowProc struct {
	u *UI
	// spawn starts the window process with sock as its connection to
	// the app (descriptor 3), returns once it runs, and gives how to wait
	// for its end and how to kill it.
	spawn func(sock *os.File) (wait func() error, kill func(), err error)

	mu   sync.Mutex
	cur  *winChild              // the window process taking work, or nil
	live map[*winChild]struct{} // all still running, cur and retiring ones
	// restarts are the recent starts after a crash.
	restarts []time.Time
	closed   bool
	// settingUp counts SetUpSharing calls in progress in window
	// processes (the tray says "Setting up sharing…").
	settingUp atomic.Int32
}

// maxQueue bounds what waits for a window process that does not fetch.
const maxQueue = 4096

// maxRestarts is how many window processes may be started a minute after
// crashes, for requests that wait.
const maxRestarts = 3

// winChild is one window process.
type winChild struct {
	conn  net.Conn
	queue []Message // not yet acknowledged (fetched again by Next)
	seq   int64     // of the last message queued
	// wake holds at most one wake-up for a Next waiting.
	wake chan struct{}
	// gone is closed when the connection ends; exited when the process
	// has.
	gone, exited chan struct{}
	dropped      bool
	// retired: it said it ends (Idle), or it ended: nothing more for it.
	retired bool
	kill    func()
	// launches is the app's launch list when it started (Launches):
	// what changes after is queued.
	launches []LaunchRecord
}

func newWindowProc(u *UI, argv []string) *windowProc {
	wp := &windowProc{u: u, live: map[*winChild]struct{}{}}
	wp.spawn = func(sock *os.File) (func() error, func(), error) {
		defer sock.Close()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.ExtraFiles = []*os.File{sock}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		return cmd.Wait, func() { cmd.Process.Kill() }, nil
	}
	return wp
}

// send queues m for the window process, starting one if none runs. send,
// tell and ensure run on the Fyne thread (the launch list is read there).
func (wp *windowProc) send(m Message) {
	wp.mu.Lock()
	c, err := wp.ensureLocked()
	if c != nil {
		c.push(m, wp.u)
	}
	wp.mu.Unlock()
	if err != nil {
		wp.u.notifyError(fmt.Errorf("could not open the window: %w", err))
	}
}

// tell queues m for a window process that runs, and drops it otherwise.
func (wp *windowProc) tell(m Message) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if wp.cur != nil {
		wp.cur.push(m, wp.u)
	}
}

// ensure starts a window process if none runs (it shows the requests
// waiting when it starts); the error says why none could be started.
func (wp *windowProc) ensure() error {
	wp.mu.Lock()
	_, err := wp.ensureLocked()
	wp.mu.Unlock()
	if err != nil {
		wp.u.log.Warn("no window process for the request popup", "err", err)
	}
	return err
}

func (wp *windowProc) ensureLocked() (*winChild, error) {
	if wp.cur != nil {
		return wp.cur, nil
	}
	if wp.closed {
		return nil, errors.New("eBrainPool is shutting down")
	}
	c, err := wp.startLocked()
	if err != nil {
		return nil, fmt.Errorf("starting the window process: %w", err)
	}
	wp.cur = c
	return c, nil
}

// startLocked starts a window process (wp.mu held).
func (wp *windowProc) startLocked() (*winChild, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "windows"), os.NewFile(uintptr(fds[1]), "app")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	c := &winChild{conn: conn, wake: make(chan struct{}, 1), gone: make(chan struct{}), exited: make(chan struct{})}
	// From here on every event the app handles is queued for it (handle
	// runs on this thread), before it reads any state: as Start
	// subscribes before reading in one process.
	for _, l := range wp.u.launches.list() {
		c.launches = append(c.launches, l.record())
	}
	srv := rpc.NewServer()
	if err := srv.RegisterName(serviceName, &AppService{wp: wp, c: c}); err != nil {
		conn.Close()
		theirs.Close()
		return nil, err
	}
	go func() {
		srv.ServeConn(conn)
		close(c.gone)
	}()
	wait, kill, err := wp.spawn(theirs)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.kill = kill
	wp.live[c] = struct{}{}
	go func() {
		err := wait()
		conn.Close()
		close(c.exited)
		wp.ended(c, err)
	}()
	wp.u.log.Debug("window process started")
	return c, nil
}

// push queues m (wp.mu held).
func (c *winChild) push(m Message, u *UI) {
	if len(c.queue) >= maxQueue {
		if !c.dropped {
			u.log.Warn("the window process does not keep up: dropping what it should show")
			c.dropped = true
		}
		return
	}
	c.seq++
	m.Seq = c.seq
	c.queue = append(c.queue, m)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// ended follows a window process's exit.
func (wp *windowProc) ended(c *winChild, err error) {
	wp.mu.Lock()
	if wp.cur == c {
		wp.cur = nil
	}
	delete(wp.live, c)
	crashed := !c.retired && !wp.closed && wp.u.ctx.Err() == nil
	c.retired = true
	closed := wp.closed
	wp.mu.Unlock()
	if !crashed {
		wp.u.log.Debug("window process exited", "err", err)
		return
	}
	wp.u.log.Warn("the window process ended unexpectedly; the tray and the daemon go on", "err", err)
	if closed || len(wp.u.b.Pending()) == 0 {
		return
	}
	wp.mu.Lock()
	now := time.Now()
	recent := wp.restarts[:0]
	for _, t := range wp.restarts {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	wp.restarts = recent
	again := len(recent) < maxRestarts
	if again {
		wp.restarts = append(wp.restarts, now)
	}
	wp.mu.Unlock()
	// A request waits: its popup again (the daemon's timeout still
	// decides if nobody answers), or, when that cannot be, its desktop
	// notification.
	wp.u.do(func() {
		var err error
		if again {
			err = wp.ensure()
		}
		if !again || err != nil {
			for _, r := range wp.u.b.Pending() {
				wp.u.notifyRequest(r)
			}
		}
	})
}

// close ends the window processes (the app quits): their connections
// close, which ends them; one still running after a few seconds is killed.
func (wp *windowProc) close() {
	wp.mu.Lock()
	wp.closed = true
	wp.cur = nil
	var live []*winChild
	for c := range wp.live {
		c.retired = true
		live = append(live, c)
	}
	wp.mu.Unlock()
	for _, c := range live {
		c.conn.Close()
	}
	for _, c := range live {
		select {
		case <-c.exited:
		case <-time.After(3 * time.Second):
			c.kill()
			<-c.exited
		}
	}
}

// await runs f on the Fyne thread and waits for it; false if the
// interface ended first (f may then still run later).
func (u *UI) await(f func()) bool {
	if u.opts.Sync {
		f()
		return true
	}
	done := make(chan struct{})
	u.do(func() {
		defer close(done)
		f()
	})
	select {
	case <-done:
		return true
	case <-u.ctx.Done():
		return false
	}
}

// AppService is what the desktop app serves its window process: the
// Backend, the app's launch list, and the queue of messages. Only
// exported for net/rpc.
type AppService struct {
	wp *windowProc
	c  *winChild
}

func (s *AppService) b() Backend { return s.wp.u.b }

// errGone ends a Next whose window process went away.
var errGone = errors.New("the window process is gone")

// Next returns the messages queued after the one numbered after, waiting
// until there is one.
func (s *AppService) Next(after int64, reply *[]Message) error {
	wp, c := s.wp, s.c
	for {
		wp.mu.Lock()
		i := 0
		for i < len(c.queue) && c.queue[i].Seq <= after {
			i++
		}
		c.queue = c.queue[i:]
		if len(c.queue) > 0 || c.retired {
			*reply = append([]Message(nil), c.queue...)
			wp.mu.Unlock()
			return nil
		}
		wp.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.gone:
			return errGone
		}
	}
}

// Idle is the window process asking to end, with no window open and
// every message up to handled handled. It may if nothing came since; from
// then on a window needs a new window process.
func (s *AppService) Idle(handled int64, ok *bool) error {
	wp, c := s.wp, s.c
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if handled != c.seq || c.retired {
		*ok = c.retired
		return nil
	}
	c.retired, *ok = true, true
	if wp.cur == c {
		wp.cur = nil
	}
	return nil
}

// Launches is the app's launch list as the window process started.
func (s *AppService) Launches(_ int, reply *[]LaunchRecord) error {
	*reply = s.c.launches
	return nil
}

// Launch launches an app and records it in the app's list (the tray's
// icon and every later window process show it); the reply is the record,
// a failure included.
func (s *AppService) Launch(a LaunchArgs, reply *LaunchRecord) error {
	var rec LaunchRecord
	u := s.wp.u
	if !u.await(func() {
		rec = u.recordLaunch(a)
	}) {
		return errors.New("eBrainPool is shutting down")
	}
	*reply = rec
	return nil
}

// DismissLaunch forgets a finished launch.
func (s *AppService) DismissLaunch(id string, _ *bool) error {
	u := s.wp.u
	u.await(func() {
		u.launches.dismiss(id)
		u.tray.update()
	})
	return nil
}

// AppsForFiles lists the apps that open the files.
func (s *AppService) AppsForFiles(a AppsForFilesArgs, reply *[]dbusapi.Candidate) error {
	u := s.wp.u
	c, err := u.b.AppsForFiles(u.ctx, a.Peer, a.Files)
	*reply = c
	return err
}

func (s *AppService) Peers(_ int, reply *[]dbusapi.Peer) error {
	*reply = s.b().Peers()
	return nil
}

// Apps asks a peer for its apps; the tray's menu takes them too.
func (s *AppService) Apps(fp string, reply *[]dbusapi.App) error {
	u := s.wp.u
	apps, err := u.b.Apps(u.ctx, fp)
	if err != nil {
		return err
	}
	u.do(func() { u.tray.setApps(fp, apps, nil) })
	*reply = apps
	return nil
}

func (s *AppService) Pending(_ int, reply *[]dbusapi.Request) error {
	*reply = s.b().Pending()
	return nil
}

func (s *AppService) Answer(a AnswerArgs, _ *bool) error {
	return s.b().AnswerFull(a.ID, a.Allow, a.Remember, a.Block)
}

func (s *AppService) Sessions(_ int, reply *[]dbusapi.Session) error {
	*reply = s.b().Sessions()
	return nil
}

func (s *AppService) EndSession(id string, _ *bool) error { return s.b().EndSession(id) }

func (s *AppService) SandboxUsage(_ int, reply *[]daemon.SandboxUsage) error {
	*reply = s.b().SandboxUsage()
	return nil
}

func (s *AppService) Sharing(_ int, reply *SharingReply) error {
	if err := s.b().SandboxError(); err != nil {
		reply.Err = err.Error()
	}
	reply.CanSetUp = s.b().CanSetUpSharing()
	return nil
}

// SetUpSharing runs the one-time setup; meanwhile the tray says so.
func (s *AppService) SetUpSharing(_ int, _ *bool) error {
	u := s.wp.u
	s.wp.settingUp.Add(1)
	u.do(u.tray.update)
	err := u.b.SetUpSharing(u.ctx)
	s.wp.settingUp.Add(-1)
	u.do(u.tray.update)
	return err
}

func (s *AppService) Settings(_ int, reply *config.Settings) error {
	*reply = s.b().Settings()
	return nil
}

// SaveSettings saves the settings; the tray shows them (sharing on or off).
func (s *AppService) SaveSettings(st config.Settings, _ *bool) error {
	err := s.b().SaveSettings(st)
	s.wp.u.do(s.wp.u.tray.update)
	return err
}

func (s *AppService) LocalApps(_ int, reply *LocalAppsReply) error {
	apps, sharing, err := s.b().LocalApps()
	reply.Apps, reply.Sharing = apps, sharing
	if err != nil {
		reply.Err = err.Error()
	}
	return nil
}

func (s *AppService) SetShared(a SharedArgs, _ *bool) error { return s.b().SetShared(a.ID, a.Shared) }

func (s *AppService) LocalIcon(a catalog.App, reply *[]byte) error {
	*reply = s.b().LocalIcon(a)
	return nil
}

func (s *AppService) KnownPeers(_ int, reply *[]identity.Pin) error {
	*reply = s.b().KnownPeers()
	return nil
}

func (s *AppService) ForgetPeer(fp identity.Fingerprint, _ *bool) error {
	return s.b().ForgetPeer(fp)
}

func (s *AppService) Blocked(_ int, reply *map[string]string) error {
	*reply = s.b().Blocked()
	return nil
}

func (s *AppService) Unblock(fp string, _ *bool) error { return s.b().Unblock(fp) }
