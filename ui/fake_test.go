package ui

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// answer is one AnswerFull call.
type answer struct {
	id                     string
	allow, remember, block bool
}

// fakeBackend is a Backend without network or sandboxes.
type fakeBackend struct {
	mu        sync.Mutex
	peers     []dbusapi.Peer
	apps      map[string][]dbusapi.App
	appsErr   map[string]error
	launchErr error
	launched  []string // "peer/app"
	nextID    int
	pending   []dbusapi.Request
	answers   []answer
	sessions  []dbusapi.Session
	ended     []string
	usage     []daemon.SandboxUsage
	sbErr     error
	canSetUp  bool
	// setUpErr is what SetUpSharing returns (nil: sharing becomes
	// available); onSetUp, if set, runs inside it (the dialog is open).
	setUpErr  error
	onSetUp   func()
	setUps    int
	settings  config.Settings
	saved     int
	local     []catalog.App
	sharing   catalog.Sharing
	pins      []identity.Pin
	forgotten []identity.Fingerprint
	blocked   map[string]string
	rules     []dbusapi.Rule
	discovery dbusapi.Discovery
	self      dbusapi.Self
	events    chan daemon.Event

	// brought is each LaunchWith's files and folders, by launch id;
	// candidates and candErr are what AppsForFiles answers.
	brought    map[string]fakeBrought
	candidates []dbusapi.Candidate
	candErr    error
	candAsked  [][]string

	// The display modes (displaymode_test.go): kept in settings as the
	// daemon keeps them; isolatedDefault is a display without SECURITY
	// with xpra installed, modeErr what SetDisplayMode fails with, modeSets
	// each SetDisplayMode ("peer/app=mode").
	isolatedDefault bool
	modeErr         error
	modeSets        []string
}

func newFake() *fakeBackend {
	return &fakeBackend{
		apps: map[string][]dbusapi.App{}, appsErr: map[string]error{}, blocked: map[string]string{}, brought: map[string]fakeBrought{},
		settings: config.Settings{DisplayName: "me", Sharing: true, ConsentTimeout: config.Duration(30 * time.Second)},
		events:   make(chan daemon.Event, 64),
	}
}

func (f *fakeBackend) Peers() []dbusapi.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dbusapi.Peer(nil), f.peers...)
}

func (f *fakeBackend) Apps(_ context.Context, peer string) ([]dbusapi.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apps[peer], f.appsErr[peer]
}

func (f *fakeBackend) Launch(peer, app string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.launchErr != nil {
		return "", f.launchErr
	}
	f.launched = append(f.launched, peer+"/"+app)
	f.nextID++
	return fmt.Sprintf("launch-%d", f.nextID), nil
}

// fakeBrought is what one LaunchWith brought.
type fakeBrought struct {
	files   []string
	folders []dbusapi.Folder
}

func (f *fakeBackend) LaunchWith(peer, app string, files []string, folders []dbusapi.Folder) (string, error) {
	id, err := f.Launch(peer, app)
	if err == nil {
		f.mu.Lock()
		f.brought[id] = fakeBrought{files, folders}
		f.mu.Unlock()
	}
	return id, err
}

func (f *fakeBackend) AppsForFiles(_ context.Context, _ string, files []string) ([]dbusapi.Candidate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.candAsked = append(f.candAsked, files)
	return f.candidates, f.candErr
}

func (f *fakeBackend) Pending() []dbusapi.Request { return f.pending }

func (f *fakeBackend) AnswerFull(id string, allow, remember, block bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers = append(f.answers, answer{id, allow, remember, block})
	return nil
}

func (f *fakeBackend) Sessions() []dbusapi.Session { return f.sessions }

func (f *fakeBackend) EndSession(id string) error {
	for i, s := range f.sessions {
		if s.ID == id {
			f.sessions = append(f.sessions[:i:i], f.sessions[i+1:]...)
			f.ended = append(f.ended, id)
			return nil
		}
	}
	return errors.New("no such session")
}

func (f *fakeBackend) SandboxUsage() []daemon.SandboxUsage { return f.usage }
func (f *fakeBackend) Settings() config.Settings           { return f.settings }
func (f *fakeBackend) SaveSettings(s config.Settings) error {
	f.settings = s
	f.saved++
	return nil
}
func (f *fakeBackend) LocalApps() ([]catalog.App, catalog.Sharing, error) {
	return f.local, f.sharing, nil
}
func (f *fakeBackend) SetShared(id string, shared bool) error {
	f.sharing.Set(id, shared)
	return nil
}
func (f *fakeBackend) LocalIcon(catalog.App) []byte { return nil }
func (f *fakeBackend) KnownPeers() []identity.Pin   { return f.pins }
func (f *fakeBackend) Blocked() map[string]string   { return f.blocked }
func (f *fakeBackend) Unblock(fp string) error      { delete(f.blocked, fp); return nil }
func (f *fakeBackend) ForgetPeer(fp identity.Fingerprint) error {
	f.forgotten = append(f.forgotten, fp)
	for i, p := range f.pins {
		if p.Fingerprint == fp {
			f.pins = append(f.pins[:i:i], f.pins[i+1:]...)
			break
		}
	}
	return nil
}

func (f *fakeBackend) Events(context.Context) <-chan daemon.Event { return f.events }

// addPeer adds a peer and emits peer-added, as the daemon does.
func (f *fakeBackend) addPeer(p dbusapi.Peer) {
	f.mu.Lock()
	f.peers = append(f.peers, p)
	f.mu.Unlock()
	f.events <- daemon.Event{Kind: daemon.EventPeerAdded, Peer: p}
}

// removePeer removes a peer and emits peer-removed.
func (f *fakeBackend) removePeer(fp string) {
	f.mu.Lock()
	for i, p := range f.peers {
		if p.Fingerprint == fp {
			f.peers = append(f.peers[:i:i], f.peers[i+1:]...)
			break
		}
	}
	f.mu.Unlock()
	f.events <- daemon.Event{Kind: daemon.EventPeerRemoved, Peer: dbusapi.Peer{Fingerprint: fp}}
}

// drain hands every queued event to the interface, through the same pump
// Start uses.
func (f *fakeBackend) drain(u *UI) {
	ch := make(chan daemon.Event, 64)
	for {
		select {
		case ev := <-f.events:
			ch <- ev
		default:
			close(ch)
			u.pump(ch)
			return
		}
	}
}

func peer(name, host string, trust dbusapi.Trust) dbusapi.Peer {
	fp := "SHA256:" + name
	return dbusapi.Peer{Fingerprint: fp, Short: name[:1] + "x7-k2m9-" + name, Name: name, Host: host,
		Address: "192.168.1.20", Port: 7400, Trust: trust}
}

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// newTestUI builds the interface on the Fyne test driver with everything
// synchronous.
func newTestUI(t testing.TB, f *fakeBackend, clock *fakeClock) *UI {
	t.Helper()
	a := test.NewTempApp(t)
	opts := Options{App: a, Backend: f, Sync: true, AutostartFile: t.TempDir() + "/autostart/x.desktop", Exec: []string{"/usr/bin/ebrainpool"}}
	if clock != nil {
		opts.Now = clock.now
	}
	u := New(opts)
	t.Cleanup(u.cancel)
	return u
}

func (f *fakeBackend) SandboxError() error   { return f.sbErr }
func (f *fakeBackend) CanSetUpSharing() bool { return f.canSetUp }

// SetUpSharing fails with setUpErr, or makes sharing available and
// emits sharing-changed, as the daemon does.
func (f *fakeBackend) SetUpSharing(context.Context) error {
	f.setUps++
	if f.onSetUp != nil {
		f.onSetUp()
	}
	if f.setUpErr != nil {
		return f.setUpErr
	}
	f.sbErr, f.canSetUp = nil, false
	f.events <- daemon.Event{Kind: daemon.EventSharingChanged}
	return nil
}
