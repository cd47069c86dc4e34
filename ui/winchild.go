package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/rpc"
	"os"
	"time"

	"fyne.io/fyne/v2"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// DefaultLinger is how long a window process stays after its last window
// or popup closed: opening one again meanwhile is immediate.
const DefaultLinger = 4 * time.Second

// childState is the window process's side of the interface (see
// windowProc): no tray, and the Fyne loop ends once nothing has been on
// screen for Linger and the desktop app agrees.
type childState struct {
	rb     *remoteBackend
	linger time.Duration
	// handled is the last message handled (on the Fyne thread).
	handled   int64
	idleSince time.Time
}

// RunWindows runs the window process (`ebrainpool gui-windows`): the
// desktop app's windows and popups, over conn, its connection to the app
// (descriptor 3). opts.Backend, SystemTray, ParkWhenIdle and Notifier are
// not used. It returns when the app lets it end (no window open for
// opts.Linger), when ctx ends, or when the app is gone; in the last case,
// should Fyne not stop within a few seconds, the process exits.
func RunWindows(ctx context.Context, opts Options, conn io.ReadWriteCloser) error {
	u := newWindowsUI(opts, conn)
	// Queued before any message from the app: no window exists yet.
	fyne.Do(noFocusOnShow)
	gone := make(chan struct{})
	go func() {
		u.receive()
		close(gone)
	}()
	go func() {
		select {
		case <-gone:
		case <-u.ctx.Done():
		}
		// The app is gone or we quit: Fyne's loop ends now, or the
		// process does.
		time.Sleep(5 * time.Second)
		u.log.Warn("the window process did not stop: exiting")
		os.Exit(1)
	}()
	u.Run(ctx)
	conn.Close()
	return nil
}

// newWindowsUI builds the window process's interface on conn.
func newWindowsUI(opts Options, conn io.ReadWriteCloser) *UI {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rb := &remoteBackend{c: rpc.NewClient(conn), log: opts.Logger}
	opts.Backend = rb
	opts.SystemTray, opts.ParkWhenIdle, opts.Notifier, opts.WindowProcess = false, false, nil, nil
	linger := opts.Linger
	if linger == 0 {
		linger = DefaultLinger
	}
	u := newUI(opts, &childState{rb: rb, linger: linger})
	// The launches the app knew when it started this process; what
	// changed since is in its queue.
	for _, r := range rb.Launches() {
		u.launches.restore(r)
	}
	return u
}

// receive hands the app's messages to the Fyne thread, in order, until
// the connection ends; then the interface quits.
func (u *UI) receive() {
	var after int64
	for {
		msgs, err := u.child.rb.next(after)
		if err != nil {
			if u.ctx.Err() == nil {
				u.log.Info("the desktop app is gone: closing its windows", "err", err)
			}
			u.do(u.Quit)
			return
		}
		for _, m := range msgs {
			after = m.Seq
			u.do(func() { u.deliver(m) })
		}
	}
}

// deliver handles one message from the app (on the Fyne thread).
func (u *UI) deliver(m Message) {
	switch {
	case m.Event != nil:
		u.handle(*m.Event)
	case m.Window == "peers" && len(m.Open) > 0:
		u.OpenFiles(m.Open, m.OpenFolders)
	case m.Window == "peers" && m.Peer != "":
		u.showPeer(m.Peer)
	case m.Window != "":
		u.Show(m.Window)
	case m.SetUp:
		u.setUpSharing()
	case m.SharingSet:
		if u.settings != nil {
			u.settings.sharing.SetChecked(u.b.Settings().Sharing)
		}
	case m.Launch != nil:
		// Recorded once: what came since (events) is newer.
		if _, ok := u.launches.byID[m.Launch.ID]; !ok {
			u.launches.restore(*m.Launch)
			u.launchesChanged()
		}
	}
	u.child.handled = m.Seq
	u.child.idleSince = time.Time{}
}

// endIfIdle ends the window process once nothing has been on screen for
// its linger time and the app has nothing more for it (on the Fyne
// thread, each tick).
func (u *UI) endIfIdle() {
	c := u.child
	if len(u.shown) > 0 || len(u.prompts) > 0 || (u.settings != nil && u.settings.settingUp) {
		c.idleSince = time.Time{}
		return
	}
	now := u.now()
	if c.idleSince.IsZero() {
		c.idleSince = now
	}
	if now.Sub(c.idleSince) < c.linger {
		return
	}
	if c.rb.idle(c.handled) {
		u.log.Debug("no window open: the window process ends")
		u.Quit()
	}
}

// remoteBackend is the Backend of a window process: the desktop app's,
// through the connection.
type remoteBackend struct {
	c   *rpc.Client
	log *slog.Logger
}

var _ Backend = (*remoteBackend)(nil)

// call calls the app; its errors come back as plain errors.
func (r *remoteBackend) call(method string, args, reply any) error {
	err := r.c.Call(serviceName+"."+method, args, reply)
	var se rpc.ServerError
	if errors.As(err, &se) {
		return errors.New(string(se))
	}
	if err != nil {
		return fmt.Errorf("the desktop app does not answer: %w", err)
	}
	return nil
}

// get is call for the methods without an error result: a failure is
// logged and gives the zero value.
func (r *remoteBackend) get(method string, reply any) {
	if err := r.call(method, 0, reply); err != nil {
		r.log.Warn("asking the desktop app", "method", method, "err", err)
	}
}

func (r *remoteBackend) next(after int64) ([]Message, error) {
	var msgs []Message
	err := r.c.Call(serviceName+".Next", after, &msgs)
	return msgs, err
}

func (r *remoteBackend) idle(handled int64) bool {
	var ok bool
	if err := r.call("Idle", handled, &ok); err != nil {
		return true // the app is gone: nothing to stay for
	}
	return ok
}

// Launches is the app's launch list.
func (r *remoteBackend) Launches() []LaunchRecord {
	var l []LaunchRecord
	r.get("Launches", &l)
	return l
}

// LaunchApp launches through the app, which records the launch.
func (r *remoteBackend) LaunchApp(a LaunchArgs) LaunchRecord {
	var rec LaunchRecord
	if err := r.call("Launch", a, &rec); err != nil {
		return LaunchRecord{ID: fmt.Sprintf("failed-here-%d", time.Now().UnixNano()), PeerName: a.Peer.Name, App: a.App.Name,
			Done: true, Err: err.Error(), Files: broughtNames(a.Files, a.Folders)}
	}
	return rec
}

// DismissLaunch makes the app forget a finished launch.
func (r *remoteBackend) DismissLaunch(id string) {
	if err := r.call("DismissLaunch", id, new(bool)); err != nil {
		r.log.Warn("dismissing a launch", "err", err)
	}
}

func (r *remoteBackend) Peers() []dbusapi.Peer {
	var p []dbusapi.Peer
	r.get("Peers", &p)
	return p
}

// callCtx is an RPC to the app that gives up when ctx ends.
func (r *remoteBackend) callCtx(ctx context.Context, method string, args, reply any) error {
	call := r.c.Go(serviceName+"."+method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
	case <-ctx.Done():
		return ctx.Err()
	}
	var se rpc.ServerError
	if errors.As(call.Error, &se) {
		return errors.New(string(se))
	}
	return call.Error
}

// Apps asks through the app; it gives up when ctx ends (the window
// process quits), the app's own call then ends at its timeout.
func (r *remoteBackend) Apps(ctx context.Context, peer string) ([]dbusapi.App, error) {
	var apps []dbusapi.App
	if err := r.callCtx(ctx, "Apps", peer, &apps); err != nil {
		return nil, err
	}
	return apps, nil
}

func (r *remoteBackend) Launch(peer, app string) (string, error) {
	return r.LaunchWith(peer, app, nil, nil)
}

func (r *remoteBackend) LaunchWith(peer, app string, files []string, folders []dbusapi.Folder) (string, error) {
	rec := r.LaunchApp(LaunchArgs{Peer: dbusapi.Peer{Fingerprint: peer}, App: dbusapi.App{ID: app}, Files: files, Folders: folders})
	if rec.Err != "" && rec.Stage == "" {
		return "", errors.New(rec.Err)
	}
	return rec.ID, nil
}

// AppsForFiles asks through the app; it gives up when ctx ends.
func (r *remoteBackend) AppsForFiles(ctx context.Context, peer string, files []string) ([]dbusapi.Candidate, error) {
	var out []dbusapi.Candidate
	if err := r.callCtx(ctx, "AppsForFiles", AppsForFilesArgs{Peer: peer, Files: files}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *remoteBackend) Pending() []dbusapi.Request {
	var p []dbusapi.Request
	r.get("Pending", &p)
	return p
}

func (r *remoteBackend) AnswerFull(id string, allow, remember, block bool) error {
	return r.call("Answer", AnswerArgs{ID: id, Allow: allow, Remember: remember, Block: block}, new(bool))
}

func (r *remoteBackend) Sessions() []dbusapi.Session {
	var s []dbusapi.Session
	r.get("Sessions", &s)
	return s
}

func (r *remoteBackend) EndSession(id string) error { return r.call("EndSession", id, new(bool)) }

func (r *remoteBackend) SandboxUsage() []daemon.SandboxUsage {
	var u []daemon.SandboxUsage
	r.get("SandboxUsage", &u)
	return u
}

func (r *remoteBackend) sharing() SharingReply {
	var s SharingReply
	r.get("Sharing", &s)
	return s
}

func (r *remoteBackend) SandboxError() error {
	if s := r.sharing(); s.Err != "" {
		return errors.New(s.Err)
	}
	return nil
}

func (r *remoteBackend) CanSetUpSharing() bool { return r.sharing().CanSetUp }

func (r *remoteBackend) SetUpSharing(ctx context.Context) error {
	return r.callCtx(ctx, "SetUpSharing", 0, new(bool))
}

func (r *remoteBackend) Settings() config.Settings {
	var s config.Settings
	r.get("Settings", &s)
	return s
}

func (r *remoteBackend) SaveSettings(s config.Settings) error {
	return r.call("SaveSettings", s, new(bool))
}

func (r *remoteBackend) LocalApps() ([]catalog.App, catalog.Sharing, error) {
	var l LocalAppsReply
	if err := r.call("LocalApps", 0, &l); err != nil {
		return nil, catalog.Sharing{}, err
	}
	if l.Err != "" {
		return l.Apps, l.Sharing, errors.New(l.Err)
	}
	return l.Apps, l.Sharing, nil
}

func (r *remoteBackend) SetShared(id string, shared bool) error {
	return r.call("SetShared", SharedArgs{ID: id, Shared: shared}, new(bool))
}

func (r *remoteBackend) LocalIcon(a catalog.App) []byte {
	var b []byte
	if err := r.call("LocalIcon", a, &b); err != nil {
		r.log.Warn("asking the desktop app for an icon", "err", err)
	}
	return b
}

func (r *remoteBackend) KnownPeers() []identity.Pin {
	var p []identity.Pin
	r.get("KnownPeers", &p)
	return p
}

func (r *remoteBackend) ForgetPeer(fp identity.Fingerprint) error {
	return r.call("ForgetPeer", fp, new(bool))
}

func (r *remoteBackend) Blocked() map[string]string {
	var b map[string]string
	r.get("Blocked", &b)
	return b
}

func (r *remoteBackend) Unblock(fp string) error { return r.call("Unblock", fp, new(bool)) }

// Events gives nothing: the window process gets the daemon's events from
// the app's queue, as the app handles them, in order with its commands and
// launches (receive).
func (r *remoteBackend) Events(ctx context.Context) <-chan daemon.Event {
	ch := make(chan daemon.Event)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}
