package ui

import (
	"net"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// testChild is a window process run in the test's process, on the same
// Fyne test app; the test hands it its messages (step).
type testChild struct {
	u     *UI
	after int64
	conn  net.Conn
	done  chan struct{}
	once  sync.Once
}

func (c *testChild) end() { c.once.Do(func() { c.conn.Close(); close(c.done) }) }

// step handles the messages queued for the child (waiting for at least
// one).
func (c *testChild) step(t *testing.T) []Message {
	t.Helper()
	type result struct {
		msgs []Message
		err  error
	}
	got := make(chan result, 1)
	go func() {
		m, err := c.u.child.rb.next(c.after)
		got <- result{m, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("next: %v", r.err)
		}
		for _, m := range r.msgs {
			c.after = m.Seq
			c.u.deliver(m)
		}
		return r.msgs
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came for the window process")
		return nil
	}
}

// newSplitUI is the desktop app with its windows in (test) window
// processes, listed in the returned slice as they start.
func newSplitUI(t *testing.T, f *fakeBackend, clock *fakeClock) (*UI, *[]*testChild) {
	t.Helper()
	a := test.NewTempApp(t)
	opts := Options{App: a, Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop",
		Exec: []string{"/usr/bin/ebrainpool"}, WindowProcess: []string{"/nonexistent/ebrainpool", "gui-windows"}, Now: clock.now}
	u := New(opts)
	t.Cleanup(u.cancel)
	var children []*testChild
	var mu sync.Mutex
	u.win.spawn = func(sock *os.File) (func() error, func(), error) {
		conn, err := net.FileConn(sock)
		sock.Close()
		if err != nil {
			return nil, nil, err
		}
		copts := opts
		copts.Backend, copts.WindowProcess, copts.Linger = nil, nil, 3*time.Second
		c := &testChild{conn: conn, done: make(chan struct{})}
		// Built on its own goroutine: its first call (Launches) is
		// answered while the app still holds its lock.
		built := make(chan *UI)
		go func() { built <- newWindowsUI(copts, conn) }()
		c.u = <-built
		go func() {
			select {
			case <-c.u.ctx.Done():
			case <-c.done:
			}
			c.end()
		}()
		mu.Lock()
		children = append(children, c)
		mu.Unlock()
		return func() error { <-c.done; return nil }, c.end, nil
	}
	return u, &children
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

func ctrlW(t *testing.T, w fyne.Window) {
	t.Helper()
	sc, ok := w.Canvas().(interface{ TypedShortcut(fyne.Shortcut) })
	if !ok {
		t.Fatalf("canvas %T takes no shortcuts", w.Canvas())
	}
	sc.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyW, Modifier: fyne.KeyModifierShortcutDefault})
}

// The windows in a window process: opened from the app (tray, second
// start), reading and changing everything through the app; the launch
// list stays with the app; requests show their popup there and are
// answered there; the process ends once nothing is on screen for its
// linger time, and a crash leaves the app working (a request waiting
// starts a new one).
func TestWindowProcess(t *testing.T) {
	f := newFake()
	alice := peer("alice", "alice-desk", dbusapi.TrustVerified)
	f.peers = []dbusapi.Peer{alice}
	f.apps[alice.Fingerprint] = []dbusapi.App{{ID: "xterm", Name: "XTerm"}}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	app, children := newSplitUI(t, f, clock)

	// Opened from the app: drawn in a window process, none here.
	app.showPeer(alice.Fingerprint)
	if len(*children) != 1 {
		t.Fatalf("%d window processes started, want 1", len(*children))
	}
	w := (*children)[0]
	w.step(t)
	if app.peers != nil {
		t.Error("the app made a peer browser itself")
	}
	if w.u.peers == nil || !w.u.shown[w.u.peers.win] {
		t.Fatal("the window process shows no peer browser")
	}
	if got := w.u.peers.names(); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("peer browser lists %q", got)
	}
	if w.u.peers.sel != alice.Fingerprint {
		t.Errorf("selected %q, want alice", w.u.peers.sel)
	}
	if app.tray.apps[alice.Fingerprint].apps == nil {
		t.Error("the apps the peer browser fetched did not reach the tray's menu")
	}

	// A launch from the window is the app's: it outlives the process.
	// One from the tray shows in the window too.
	w.u.launch(alice, f.apps[alice.Fingerprint][0])
	if !reflect.DeepEqual(f.launched, []string{"SHA256:alice/xterm"}) {
		t.Errorf("launched %q", f.launched)
	}
	if len(app.launches.list()) != 1 || len(w.u.launches.list()) != 1 || app.launches.list()[0].id != w.u.launches.list()[0].id {
		t.Fatalf("launches: app %v, window process %v", app.launches.list(), w.u.launches.list())
	}
	id := app.launches.list()[0].id
	w.step(t) // the app's record of it, already there
	app.tray.menu().Items[0].ChildMenu.Items[0].Action()
	w.step(t)
	if len(w.u.launches.list()) != 2 {
		t.Fatalf("the tray's launch is not in the window process: %v", w.u.launches.list())
	}
	app.handle(daemon.Event{Kind: daemon.EventLaunchProgress, Launch: id, Stage: dbusapi.StageRunning})
	w.step(t)
	if got := w.u.launches.byID[id].stage; got != dbusapi.StageRunning {
		t.Errorf("window process's launch at %q", got)
	}

	// A request: the popup in the window process, answered there.
	req := dbusapi.Request{ID: "r1", Peer: alice.Fingerprint, PeerName: "alice", App: "XTerm", Deadline: clock.t.Add(30 * time.Second).Unix()}
	f.pending = []dbusapi.Request{req}
	app.handle(daemon.Event{Kind: daemon.EventRequestPending, Request: req})
	w.step(t)
	p := w.u.prompts["r1"]
	if p == nil {
		t.Fatal("no popup in the window process")
	}
	if len(app.prompts) != 0 {
		t.Error("the app made a popup itself")
	}
	armNow(p, clock)
	test.Tap(p.allow)
	if len(f.answers) != 1 || f.answers[0] != (answer{"r1", true, false, false}) {
		t.Errorf("answers %+v", f.answers)
	}
	f.pending = nil

	// Nothing on screen: it stays for its linger time, then ends with
	// the app's agreement; the launch list stays with the app.
	ctrlW(t, w.u.peers.win)
	w.u.endIfIdle()
	clock.t = clock.t.Add(2 * time.Second)
	w.u.endIfIdle()
	if w.u.ctx.Err() != nil {
		t.Fatal("the window process ended before its linger time")
	}
	clock.t = clock.t.Add(2 * time.Second)
	w.u.endIfIdle()
	if w.u.ctx.Err() == nil {
		t.Fatal("the window process did not end with nothing on screen")
	}
	waitFor(t, "the app sees the window process gone", func() bool {
		app.win.mu.Lock()
		defer app.win.mu.Unlock()
		return app.win.cur == nil && len(app.win.live) == 0
	})

	// The next window starts a new one, which has the launch list.
	app.ShowSettings()
	if len(*children) != 2 {
		t.Fatalf("%d window processes started, want 2", len(*children))
	}
	w2 := (*children)[1]
	if l := w2.u.launches.list(); len(l) != 2 || l[1].id != id || l[1].stage != dbusapi.StageRunning {
		t.Errorf("the new window process's launches: %v", l)
	}
	w2.step(t)
	if w2.u.settings == nil || !w2.u.shown[w2.u.settings.win] {
		t.Fatal("the window process shows no settings")
	}
	// The tray turns sharing off: Settings shows it.
	app.setSharing(false)
	w2.step(t)
	if w2.u.settings.sharing.Checked {
		t.Error("Settings still shows sharing on after the tray turned it off")
	}

	// It ends a moment after the last message was handled, not while one
	// waits: a message queued after its last step keeps it.
	ctrlW(t, w2.u.settings.win)
	app.win.tell(Message{SharingSet: true})
	w2.u.endIfIdle()
	clock.t = clock.t.Add(10 * time.Second)
	w2.u.endIfIdle()
	if w2.u.ctx.Err() != nil {
		t.Fatal("the window process ended with a message not handled")
	}

	// A crash: the app goes on; with a request waiting, a new window
	// process starts and shows its popup.
	f.pending = []dbusapi.Request{req}
	w2.end()
	waitFor(t, "a window process started again for the request", func() bool {
		app.win.mu.Lock()
		defer app.win.mu.Unlock()
		return len(*children) == 3
	})
	w3 := (*children)[2]
	w3.u.Start(t.Context())
	if w3.u.prompts["r1"] == nil {
		t.Error("the new window process shows no popup for the waiting request")
	}
}
