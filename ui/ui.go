package ui

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// Options configure the interface.
type Options struct {
	// App is the Fyne application (app.NewWithID in the binary,
	// test.NewTempApp in tests).
	App     fyne.App
	Backend Backend
	// AutostartFile is the desktop entry written for "start at login"
	// (default $XDG_CONFIG_HOME/autostart/io.github.ebrainpool.EBrainPool.desktop).
	AutostartFile string
	// Exec is the command line of that entry, before its own arguments
	// (default: this executable; in a Flatpak: flatpak run APP-ID).
	Exec []string
	// Now is the clock of the request countdown (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Notifier, if set, shows a request as a desktop notification whose
	// Allow/Deny answer it when no popup can be shown (see askElsewhere),
	// and the sessions a remembered decision let in (sessionEvent).
	Notifier *Notifier
	// Sync runs slow backend calls (a peer's app list) inline instead of
	// in a goroutine; tests set it to be deterministic.
	Sync bool
	// SystemTray publishes the tray icon straight through D-Bus
	// (fyne.io/systray) instead of Fyne's tray, which needs a hidden
	// window and so loads the GL driver even when nothing is shown.
	SystemTray bool
	// ParkWhenIdle pauses Fyne's event loop while no window or popup is
	// open (see parker).
	ParkWhenIdle bool
	// WindowProcess, if set, is the command line of the window process
	// (`ebrainpool gui-windows`): windows and popups are drawn there,
	// started when one is needed, and this process keeps the tray, the
	// notifications and the launch list (see windowProc).
	WindowProcess []string
	// Linger is how long a window process stays after its last window
	// closed (default DefaultLinger); RunWindows reads it.
	Linger time.Duration
	// IsolatedDisplay says why the isolated display (xpra) cannot run on
	// this computer, nil if it can (default tunnel.CheckIsolatedDisplay);
	// the peer browser offers Isolated only where it can.
	IsolatedDisplay func() error
}

// UI is the running desktop interface.
type UI struct {
	app    fyne.App
	b      Backend
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc

	launches *launches
	peers    *peerBrowser
	sessions *sessionsView
	settings *settingsView
	prompts  map[string]*prompt
	tray     *tray
	systray  *systemTray // nil unless Options.SystemTray
	park     *parker
	shown    map[fyne.Window]bool // windows on screen (prompts aside)
	// win draws the windows in a window process (Options.WindowProcess);
	// asked then holds how to withdraw each request's notification.
	win   *windowProc
	asked map[string]func()
	// told withdraws the notification of each session a remembered
	// decision let in, by session id (see sessionEvent).
	told map[string]func()
	// child is set in the window process (RunWindows).
	child *childState
}

// AppID is the application (and desktop entry) id.
const AppID = "io.github.ebrainpool.EBrainPool"

// New builds the interface; nothing is shown until Run or one of the Show
// methods.
func New(opts Options) *UI { return newUI(opts, nil) }

// newUI builds the interface of the desktop app, or with child that of its
// window process.
func newUI(opts Options, child *childState) *UI {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AutostartFile == "" {
		opts.AutostartFile = defaultAutostartFile()
	}
	if opts.IsolatedDisplay == nil {
		opts.IsolatedDisplay = tunnel.CheckIsolatedDisplay
	}
	if len(opts.Exec) == 0 {
		if exe, err := os.Executable(); err == nil {
			opts.Exec = []string{exe}
		} else {
			opts.Exec = []string{"ebrainpool"}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &UI{app: opts.App, b: opts.Backend, opts: opts, log: opts.Logger, now: opts.Now,
		ctx: ctx, cancel: cancel, prompts: map[string]*prompt{}, park: newParker(),
		shown: map[fyne.Window]bool{}, asked: map[string]func(){}, told: map[string]func(){}, child: child}
	u.launches = newLaunches()
	u.tray = newTray(u, nil)
	if len(opts.WindowProcess) > 0 {
		u.win = newWindowProc(u, opts.WindowProcess)
	}
	switch d, ok := opts.App.(desktopTrayApp); {
	case child != nil:
		// The window process: no tray (the app has it), and a window
		// never shown keeps Fyne's loop running when the last popup
		// closes, until the process decides to end (endIfIdle).
		u.tray.off = true
		u.app.NewWindow("eBrainPool")
	case opts.SystemTray:
		u.systray = newSystemTray("eBrainPool", u.do, func() { u.do(u.tray.reset) })
		u.systray.toggle = func(i *fyne.MenuItem) bool { return i == u.tray.toggle }
		u.tray.host = u.systray
		// Fyne ends its loop when its last window closes. Its own tray
		// keeps a hidden window for that; here a window that is never
		// shown (so never gets a GL context) keeps the app running when
		// the last popup closes.
		u.app.NewWindow("eBrainPool")
	case ok:
		u.tray.host = desktopTray{d}
	}
	return u
}

func defaultAutostartFile() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "autostart", AppID+".desktop")
}

// do runs f on the Fyne thread, waking its loop if it is parked.
func (u *UI) do(f func()) {
	if u.opts.Sync {
		f()
		return
	}
	u.park.unpark()
	fyne.Do(f)
}

// parkIfIdle parks the Fyne loop (on its thread) while nothing is on screen.
func (u *UI) parkIfIdle() {
	if u.opts.ParkWhenIdle && len(u.shown) == 0 && len(u.prompts) == 0 {
		u.log.Debug("nothing on screen: event loop parked")
		u.park.park(u.ctx)
		u.log.Debug("event loop woken")
	}
}

// showWindow shows one of the app's windows and brings it to the front.
func (u *UI) showWindow(w fyne.Window) {
	u.shown[w] = true
	w.Show()
	w.RequestFocus()
}

// spawn runs a slow call off the Fyne thread (inline when Options.Sync).
func (u *UI) spawn(f func()) {
	if u.opts.Sync {
		f()
		return
	}
	go f()
}

// Start subscribes to the backend's events and sets up the tray; it returns
// at once. Run calls it.
func (u *UI) Start(ctx context.Context) {
	go func() {
		<-ctx.Done()
		u.cancel()
	}()
	// Subscribe before reading the state, so that nothing happening in
	// between is missed (windows opened before Start read theirs earlier).
	events := u.b.Events(u.ctx)
	if u.child == nil {
		u.tray.install()
	}
	if u.peers != nil {
		u.peers.reload()
	}
	for _, r := range u.b.Pending() {
		u.showPrompt(r)
	}
	go u.pump(events)
	go u.tick()
}

// pump hands the backend's events to the Fyne thread until the channel
// closes.
func (u *UI) pump(events <-chan daemon.Event) {
	for ev := range events {
		u.do(func() { u.handle(ev) })
	}
}

// Run shows the tray and runs the Fyne event loop until Quit or ctx ends.
func (u *UI) Run(ctx context.Context) {
	u.Start(ctx)
	go func() {
		<-u.ctx.Done()
		fyne.Do(u.quitLoop)
	}()
	u.app.Run()
	u.cancel()
	if u.systray != nil {
		u.systray.close()
	}
	if u.win != nil {
		u.win.close()
	}
}

// Quit ends the interface (and with it the embedded daemon).
func (u *UI) Quit() {
	u.cancel()
	u.quitLoop()
}

// quitLoop ends Fyne's event loop; GLFW's termination then destroys the
// windows. Not fyne.App.Quit: it closes every window first, and a pointer
// event the loop still polls for a closed window crashes Fyne 2.7's GLFW
// driver (nil window in processMouseMoved when the cursor shape changes).
func (u *UI) quitLoop() { u.app.Driver().Quit() }

// tick refreshes what changes with time: prompt countdowns and the
// sessions window.
func (u *UI) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
			n++
			if u.park.parked.Load() {
				continue // nothing on screen to refresh
			}
			f := func() {
				for _, p := range u.prompts {
					p.tick()
				}
				if n%2 == 0 && u.sessions != nil && u.sessions.visible {
					u.sessions.refresh()
				}
				if u.child != nil {
					u.endIfIdle()
				}
				u.parkIfIdle()
			}
			if u.opts.Sync {
				f()
			} else {
				fyne.Do(f) // not u.do: this must not wake a parked loop
			}
		}
	}
}

// handle applies one backend event; it runs on the Fyne thread.
func (u *UI) handle(ev daemon.Event) {
	switch ev.Kind {
	case daemon.EventPeerAdded:
		if u.peers != nil {
			u.peers.upsert(ev.Peer)
		}
		u.tray.peerChanged(ev.Peer.Fingerprint)
	case daemon.EventPeerRemoved:
		if u.peers != nil {
			u.peers.remove(ev.Peer.Fingerprint)
		}
		u.tray.peerChanged(ev.Peer.Fingerprint)
	case daemon.EventRequestPending:
		u.showPrompt(ev.Request)
	case daemon.EventRequestResolved:
		if p := u.prompts[ev.Request.ID]; p != nil {
			p.close()
		}
		if unnotify, ok := u.asked[ev.Request.ID]; ok {
			delete(u.asked, ev.Request.ID)
			if unnotify != nil {
				unnotify()
			}
		}
		u.refreshSessions()
	case daemon.EventLaunchProgress:
		u.launches.progress(ev.Launch, ev.Stage)
		u.launchesChanged()
	case daemon.EventLaunchFinished:
		u.launches.finished(ev.Launch, ev.Exit, ev.Err, ev.Outcome)
		u.launchesChanged()
		u.refreshSessions()
	case daemon.EventSharingChanged:
		u.sharingChanged()
	case daemon.EventSessionStarted, daemon.EventSessionEnded:
		u.sessionEvent(ev)
	case daemon.EventRulesChanged:
		u.rulesChanged()
	case daemon.EventPeerAppsChanged:
		u.peerAppsChanged(ev)
	case daemon.EventDiscoveryChanged:
		if u.peers != nil {
			u.peers.self.refresh()
		}
	case daemon.EventDisplayModesChanged:
		// Also a choice made elsewhere (`ebrainpool display`).
		if u.peers != nil {
			u.peers.reloadDisplayModes()
		}
		if u.settings != nil {
			u.settings.loadDisplayModes()
		}
	}
	if u.win != nil {
		u.win.tell(Message{Event: &ev})
	}
}

func (u *UI) launchesChanged() {
	if u.peers != nil {
		u.peers.showLaunches()
	}
	u.tray.update()
	u.refreshSessions()
}

func (u *UI) refreshSessions() {
	if u.sessions != nil {
		u.sessions.refresh()
	}
	u.tray.update()
}

// peerName is a peer's display name from the backend's list, or its short
// fingerprint.
func (u *UI) peer(fp string) (dbusapi.Peer, bool) {
	for _, p := range u.b.Peers() {
		if p.Fingerprint == fp {
			return p, true
		}
	}
	return dbusapi.Peer{}, false
}

// launch starts an app on a peer and tracks its progress (in a window
// process, through the app, which keeps the list).
func (u *UI) launch(p dbusapi.Peer, app dbusapi.App) { u.launchWith(p, app, nil, nil) }

// launchWith is launch bringing files (the app's arguments) and folders
// (in its home).
func (u *UI) launchWith(p dbusapi.Peer, app dbusapi.App, files []string, folders []dbusapi.Folder) {
	if u.child != nil {
		u.launches.restore(u.child.rb.LaunchApp(LaunchArgs{Peer: p, App: app, Files: files, Folders: folders}))
		u.launchesChanged()
		return
	}
	u.recordLaunch(LaunchArgs{Peer: p, App: app, Files: files, Folders: folders})
}

// recordLaunch launches and records it (the window process shows it too).
func (u *UI) recordLaunch(a LaunchArgs) LaunchRecord {
	var id string
	var err error
	if len(a.Files) > 0 || len(a.Folders) > 0 {
		id, err = u.b.LaunchWith(a.Peer.Fingerprint, a.App.ID, a.Files, a.Folders)
	} else {
		id, err = u.b.Launch(a.Peer.Fingerprint, a.App.ID)
	}
	l := u.launches.started(id, a.Peer, a.App, broughtNames(a.Files, a.Folders), err)
	l.trusted = u.b.Settings().Trusts(a.Peer.Fingerprint, a.App.ID)
	l.isolated = u.b.Settings().Isolates(a.Peer.Fingerprint, a.App.ID) || !l.trusted && isolatedByDefault()
	rec := l.record()
	if u.win != nil {
		u.win.tell(Message{Launch: &rec})
	}
	u.launchesChanged()
	return rec
}

// dismissLaunch forgets a finished launch (in the app's list too).
func (u *UI) dismissLaunch(id string) {
	u.launches.dismiss(id)
	if u.child != nil {
		u.child.rb.DismissLaunch(id)
	}
}

// hideOnClose makes closing a window (or Ctrl+W in it) hide it: the app
// lives in the tray.
func (u *UI) hideOnClose(w fyne.Window, onHide func()) {
	hide := func() {
		if onHide != nil {
			onHide()
		}
		delete(u.shown, w)
		w.Hide()
	}
	w.SetCloseIntercept(hide)
	w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyW, Modifier: fyne.KeyModifierShortcutDefault},
		func(fyne.Shortcut) { hide() })
}
