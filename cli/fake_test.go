package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// fakeDaemon is a daemon's D-Bus API on a private bus with made-up
// peers, apps, requests and sessions; a launch ends as launches says.
type fakeDaemon struct {
	addr string
	conn *dbus.Conn

	mu       sync.Mutex
	srv      *dbusapi.Server
	launches map[string]fakeLaunch // by app ID
	asked    []string              // app IDs launched
	ended    []string
	answers  []string
	catalogs int // ListApps calls
	ending   map[string]chan struct{}
	trusted  map[string]bool // "PEER APP": trusted display access
	modes    map[string]dbusapi.DisplayMode
}

// fakeLaunch is how a launch of an app ends.
type fakeLaunch struct {
	exit    int32
	msg     string
	outcome dbusapi.Outcome
	hang    bool // runs until ended (then OutcomeEnded)
}

const (
	fakeBob   = "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"
	fakeAlice = "SHA256:WeXpogacdCqvmaxuNZFUpT1Te6ZU/j7aPAocB0T2i8o"
)

func (f *fakeDaemon) Peers() []dbusapi.Peer {
	return []dbusapi.Peer{
		{Fingerprint: fakeBob, Short: "UTQV-QOGX-SEXU-5R65", Name: "bob", Host: "bob-laptop.local", Address: "192.168.1.20", Port: 41527, Trust: dbusapi.TrustVerified},
		{Fingerprint: fakeAlice, Short: "LHS6-TIQG-TR2C-VL4Z", Name: "Alice Smith", Host: "alice-pc.local", Address: "192.168.1.21", Port: 40001, Trust: dbusapi.TrustNew},
	}
}

func (f *fakeDaemon) Apps(ctx context.Context, peer string) ([]dbusapi.App, error) {
	f.mu.Lock()
	f.catalogs++
	f.mu.Unlock()
	switch peer {
	case "bob":
		return []dbusapi.App{
			{ID: "org.gnome.Calculator", Name: "Calculator", Comment: "Arithmetic", Icon: []byte{1}},
			{ID: "xterm", Name: "XTerm"},
			{ID: "uxterm", Name: "UXTerm"},
			{ID: "xlogo", Name: "X Logo"},
			{ID: "viewer-a", Name: "Viewer"},
			{ID: "viewer-b", Name: "Viewer"},
			{ID: "denied", Name: "Denied"}, {ID: "noanswer", Name: "No Answer"}, {ID: "blocked", Name: "Blocked"},
			{ID: "ratelimited", Name: "R"}, {ID: "nolimits", Name: "N"}, {ID: "fails", Name: "F"},
			{ID: "exit3", Name: "Exit 3"}, {ID: "hang", Name: "Hang"}, {ID: "old-daemon-error", Name: "O"},
			{ID: "hostends", Name: "H"},
		}, nil
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	case "unreachable", "Alice Smith":
		return nil, errors.New("could not reach " + peer + ": connection refused")
	}
	return nil, errors.New("no peer matches \"" + peer + "\" (see `ebrainpool peers`)")
}

func (f *fakeDaemon) Launch(peer, app string) (string, error) {
	if peer == "nobody" {
		return "", errors.New("no peer matches \"nobody\" (see `ebrainpool peers`)")
	}
	f.mu.Lock()
	f.asked = append(f.asked, app)
	l, ok := f.launches[app]
	srv := f.srv
	id := fmt.Sprintf("L%d", len(f.asked))
	end := make(chan struct{})
	if l.hang {
		f.ending[id] = end
	}
	f.mu.Unlock()
	if !ok {
		l = fakeLaunch{exit: -1, msg: peer + ": this host does not share \"" + app + "\"", outcome: dbusapi.OutcomeNotShared}
	}
	go func() {
		time.Sleep(20 * time.Millisecond) // the reply first
		srv.LaunchProgress(id, dbusapi.StageAsking)
		if l.outcome == dbusapi.OutcomeExited || l.hang {
			srv.LaunchProgress(id, dbusapi.StageRunning)
		}
		if l.hang {
			<-end
			srv.LaunchFinished(id, -1, "", dbusapi.OutcomeEnded)
			return
		}
		if app == "old-daemon-error" {
			// A daemon from before the outcome argument.
			f.conn.Emit(dbusapi.Path, dbusapi.Interface+".LaunchFinished", id, int32(-1), "bob: refused")
			return
		}
		srv.LaunchFinished(id, l.exit, l.msg, l.outcome)
	}()
	return id, nil
}

func (f *fakeDaemon) Pending() []dbusapi.Request {
	return []dbusapi.Request{{ID: "5f1c2a9e0b7d", Peer: fakeAlice, PeerName: "Alice Smith", From: "192.168.1.21", App: "org.gnome.Calculator", FirstTime: true, Deadline: time.Now().Add(time.Minute).Unix()}}
}

func (f *fakeDaemon) Answer(id string, allow, remember bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != "5f1c2a9e0b7d" {
		return errors.New("no pending request " + id)
	}
	f.answers = append(f.answers, strings.Join([]string{id, map[bool]string{true: "allow", false: "deny"}[allow], map[bool]string{true: "remember", false: "once"}[remember]}, " "))
	return nil
}

func (f *fakeDaemon) Block(peer string) error { return nil }

func (f *fakeDaemon) Sessions() []dbusapi.Session {
	return []dbusapi.Session{
		{ID: "9a4e11c07b52", Direction: dbusapi.DirectionIncoming, Peer: fakeAlice, PeerName: "Alice Smith", App: "Calculator", Since: time.Now().Unix(), State: dbusapi.StageRunning, Session: "9a4e11c07b52"},
		{ID: "c3d0f5a1e866", Direction: dbusapi.DirectionOutgoing, Peer: fakeBob, PeerName: "bob", App: "xlogo", Since: time.Now().Unix(), State: dbusapi.StageRunning, Session: "5f2b7c90d1a3"},
	}
}

func (f *fakeDaemon) EndSession(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = append(f.ended, id)
	if ch, ok := f.ending[id]; ok {
		close(ch)
		delete(f.ending, id)
	}
	return nil
}

func (f *fakeDaemon) SandboxError() error                    { return nil }
func (f *fakeDaemon) CanSetUpSharing() bool                  { return false }
func (f *fakeDaemon) SetUpSharing(ctx context.Context) error { return nil }

// startFake exports a fake daemon on a private bus and points this
// process's session bus (and its children's) at it.
func startFake(t *testing.T) *fakeDaemon {
	t.Helper()
	bus := testenv.PrivateBus(t)
	conn, err := dbus.Connect(bus.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeDaemon{addr: bus.Addr, conn: conn, ending: map[string]chan struct{}{}, launches: map[string]fakeLaunch{
		"xlogo":            {exit: 0, outcome: dbusapi.OutcomeExited},
		"xterm":            {exit: 0, outcome: dbusapi.OutcomeExited},
		"exit3":            {exit: 3, outcome: dbusapi.OutcomeExited},
		"denied":           {exit: -1, msg: "bob: the host denied the request", outcome: dbusapi.OutcomeDenied},
		"noanswer":         {exit: -1, msg: "bob: the host did not answer in time", outcome: dbusapi.OutcomeNoAnswer},
		"blocked":          {exit: -1, msg: "bob: you are blocked", outcome: dbusapi.OutcomeBlocked},
		"ratelimited":      {exit: -1, msg: "bob: too many requests", outcome: dbusapi.OutcomeRateLimited},
		"nolimits":         {exit: -1, msg: "bob: this host cannot limit sandboxes", outcome: dbusapi.OutcomeNoLimits},
		"fails":            {exit: -1, msg: "something broke", outcome: dbusapi.OutcomeFailed},
		"hostends":         {exit: -1, msg: "bob ended the session", outcome: dbusapi.OutcomeEndedByHost},
		"hang":             {hang: true},
		"old-daemon-error": {},
	}}
	srv, err := dbusapi.Export(conn, f)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	return f
}

func TestRunExitStatuses(t *testing.T) {
	f := startFake(t)
	for _, tc := range []struct {
		app      string
		code     int
		stderr   string   // in stderr
		launched []string // the app IDs asked for, in order
	}{
		{"xlogo", 0, "xlogo: running", []string{"xlogo"}},
		{"exit3", 3, "exit3: exited with status 3", []string{"exit3"}},
		{"denied", ExitDenied, "the host denied the request", []string{"denied"}},
		{"noanswer", ExitNoAnswer, "did not answer in time", []string{"noanswer"}},
		{"blocked", ExitBlocked, "you are blocked", []string{"blocked"}},
		{"ratelimited", ExitRateLimited, "too many requests", []string{"ratelimited"}},
		{"nolimits", ExitUnavailable, "cannot limit sandboxes", []string{"nolimits"}},
		{"hostends", ExitEnded, "bob ended the session", []string{"hostends"}},
		{"fails", ExitFailure, "something broke", []string{"fails"}},
		{"old-daemon-error", ExitFailure, "bob: refused", []string{"old-daemon-error"}},
		// By visible name, ignoring case; by ID ignoring case: asked as
		// given first, refused (not shared), then by the catalog's ID.
		{"XTerm", 0, "xterm: running", []string{"XTerm", "xterm"}},
		{"x logo", 0, "xlogo: running", []string{"x logo", "xlogo"}},
		{"XLOGO", 0, "xlogo: running", []string{"XLOGO", "xlogo"}},
		// Ambiguous: a usage error naming the IDs, not asked again.
		{"Viewer", ExitUsage, "bob shares 2 apps named \"Viewer\": give one of their IDs: viewer-a, viewer-b", []string{"Viewer"}},
		// Not in the catalog: not shared, with what is.
		{"gimp", ExitNotShared, "bob does not share \"gimp\"; it shares", []string{"gimp"}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			f.mu.Lock()
			f.asked = nil
			f.mu.Unlock()
			code, out, errs := run(t, "run", "bob", tc.app)
			if code != tc.code || out != "" || !strings.Contains(errs, tc.stderr) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr:\n%s", code, tc.code, out, errs)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !slices.Equal(f.asked, tc.launched) {
				t.Errorf("launched %q, want %q", f.asked, tc.launched)
			}
			// A refusal for an app not shared says nothing before the
			// second try; every other launch shows its stages.
			if n := strings.Count(errs, ": asking"); tc.code == 0 && n != 1 || tc.code == ExitNotShared && n != 0 {
				t.Errorf("%d \"asking\" lines:\n%s", n, errs)
			}
		})
	}
	t.Run("an ID is asked for without reading the catalog", func(t *testing.T) {
		f.mu.Lock()
		f.asked, f.catalogs = nil, 0
		f.mu.Unlock()
		code, _, errs := run(t, "run", "bob", "xlogo")
		f.mu.Lock()
		defer f.mu.Unlock()
		if code != 0 || !slices.Equal(f.asked, []string{"xlogo"}) || f.catalogs != 0 {
			t.Fatalf("exit %d, asked %q, %d catalog reads, stderr:\n%s", code, f.asked, f.catalogs, errs)
		}
	})
	t.Run("not shared and the catalog unreadable: the refusal", func(t *testing.T) {
		code, _, errs := run(t, "run", "unreachable", "gimp")
		if code != ExitNotShared || !strings.Contains(errs, "this host does not share \"gimp\"") {
			t.Fatalf("exit %d, stderr:\n%s", code, errs)
		}
	})
	t.Run("unknown peer", func(t *testing.T) {
		code, _, errs := run(t, "run", "nobody", "xlogo")
		if code != ExitFailure || !strings.Contains(errs, "no peer matches") {
			t.Fatalf("exit %d, stderr:\n%s", code, errs)
		}
	})
	t.Run("detach", func(t *testing.T) {
		code, _, errs := run(t, "run", "--detach", "bob", "hang")
		if code != 0 || !strings.Contains(errs, "hang: running") {
			t.Fatalf("exit %d, stderr:\n%s", code, errs)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.ending) != 1 || len(f.ended) != 0 {
			t.Fatalf("after --detach: running %v, ended %q; want the app left running", f.ending, f.ended)
		}
		for id, ch := range f.ending {
			close(ch)
			delete(f.ending, id)
		}
	})
	t.Run("interrupted: the session ends, 128+SIGINT", func(t *testing.T) {
		f.mu.Lock()
		f.ended = nil
		f.mu.Unlock()
		done := make(chan struct{})
		var code int
		var errs string
		go func() { code, _, errs = run(t, "run", "bob", "hang"); close(done) }()
		id := waitLaunch(t, f)
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-done
		f.mu.Lock()
		defer f.mu.Unlock()
		if code != 130 || !strings.Contains(errs, "interrupted") || !slices.Equal(f.ended, []string{id}) {
			t.Fatalf("exit %d, ended %q (want %s), stderr:\n%s", code, f.ended, id, errs)
		}
	})
	t.Run("ended here", func(t *testing.T) {
		done := make(chan struct{})
		var code int
		var errs string
		go func() { code, _, errs = run(t, "run", "bob", "hang"); close(done) }()
		id := waitLaunch(t, f)
		if c, _, e := run(t, "end", id); c != 0 {
			t.Fatalf("end %s: exit %d %s", id, c, e)
		}
		<-done
		if code != ExitEnded || !strings.Contains(errs, "was ended here") {
			t.Fatalf("exit %d, stderr:\n%s", code, errs)
		}
	})
}

// waitLaunch waits for a launch that runs until ended and returns its id.
func waitLaunch(t *testing.T, f *fakeDaemon) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		var id string
		for k := range f.ending {
			id = k
		}
		f.mu.Unlock()
		if id != "" {
			time.Sleep(50 * time.Millisecond) // the app runs
			return id
		}
		if time.Now().After(deadline) {
			t.Fatal("the launch never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each --json command's real output has its golden shape's keys.
func TestJSONCommandsThroughTheAPI(t *testing.T) {
	startFake(t)
	for _, args := range [][]string{
		{"peers", "--json"}, {"apps", "bob", "--json"}, {"pending", "--json"}, {"sessions", "--json"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, out, errs := run(t, args...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			golden, err := os.ReadFile(goldenPath(args[0]))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := keysOf(t, []byte(out)), keysOf(t, golden); !slices.Equal(got, want) {
				t.Errorf("keys %q, want %q:\n%s", got, want, out)
			}
		})
	}
	t.Run("tables", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"peers"}, "bob-laptop.local"},
			{[]string{"apps", "bob"}, "org.gnome.Calculator"},
			{[]string{"pending"}, "5f1c2a9e0b7d"},
			{[]string{"sessions"}, "c3d0f5a1e866"},
		} {
			code, out, errs := run(t, tc.args...)
			if code != 0 || errs != "" || !strings.Contains(out, tc.want) || strings.HasPrefix(strings.TrimSpace(out), "[") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, out, errs)
			}
		}
	})
	t.Run("errors on stderr only", func(t *testing.T) {
		code, out, errs := run(t, "apps", "--json", "nobody")
		if code != ExitFailure || out != "" || !strings.Contains(errs, "no peer matches") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
}

func TestAnswerFlagsAfterID(t *testing.T) {
	f := startFake(t)
	for _, args := range [][]string{{"allow", "5f1c2a9e0b7d", "--remember"}, {"deny", "--remember", "5f1c2a9e0b7d"}, {"allow", "5f1c2a9e0b7d"}} {
		if code, _, errs := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errs)
		}
	}
	want := []string{"5f1c2a9e0b7d allow remember", "5f1c2a9e0b7d deny remember", "5f1c2a9e0b7d allow once"}
	if !slices.Equal(f.answers, want) {
		t.Fatalf("answers %q, want %q", f.answers, want)
	}
}

func TestCompleteCandidates(t *testing.T) {
	startFake(t)
	for _, tc := range []struct {
		args []string
		want []string // candidate values, in order
	}{
		// Alice's name has a space: her host name stands for her.
		{[]string{"peer"}, []string{"bob", "alice-pc"}},
		{[]string{"app", "bob"}, []string{"org.gnome.Calculator", "xterm", "uxterm", "xlogo"}},
		{[]string{"app", "nobody"}, nil},
		{[]string{"app", "slow"}, nil},
		{[]string{"request"}, []string{"5f1c2a9e0b7d"}},
		{[]string{"session"}, []string{"9a4e11c07b52", "c3d0f5a1e866"}},
		{[]string{"peer-or-request"}, []string{"bob", "alice-pc", "5f1c2a9e0b7d"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t0 := time.Now()
			code, out, errs := run(t, append([]string{"__complete"}, tc.args...)...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if took := time.Since(t0); took > completeCatalogTimeout+time.Second {
				t.Errorf("took %s", took)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if l == "" {
					continue
				}
				v, desc, ok := strings.Cut(l, "\t")
				if !ok || desc == "" {
					t.Errorf("line %q lacks a description", l)
				}
				got = append(got, v)
			}
			if len(got) < len(tc.want) || !slices.Equal(got[:len(tc.want)], tc.want) || tc.want == nil && got != nil {
				t.Errorf("candidates %q, want %q first", got, tc.want)
			}
		})
	}
}

func TestCompleteWithoutDaemon(t *testing.T) {
	noDaemon(t)
	for _, kind := range []string{"peer", "app", "request", "session", "peer-or-request"} {
		code, out, errs := run(t, "__complete", kind, "bob")
		if code != 0 || out != "" || errs != "" {
			t.Errorf("__complete %s without a daemon: exit %d, stdout %q, stderr %q", kind, code, out, errs)
		}
	}
	// A bus without the daemon on it.
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	if code, out, errs := run(t, "__complete", "peer"); code != 0 || out != "" || errs != "" {
		t.Errorf("__complete peer on a bus without the daemon: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := run(t, "peers"); code != ExitNoDaemon || !strings.Contains(errs, "not running") {
		t.Errorf("peers on a bus without the daemon: exit %d, stderr %q", code, errs)
	}
}

func TestPeerHandles(t *testing.T) {
	ps := []dbusapi.Peer{
		{Name: "bob", Host: "bob.local.", Short: "AAAA"},          // name not unique, host is Bob's name: short
		{Name: "Bob", Host: "bob2.local", Short: "BBBB"},          // same name, other case: host
		{Name: "Carol Jones", Host: "carol.local", Short: "CCCC"}, // a space: host
		{Name: "Dan Brown", Host: "", Short: "DDDD"},              // no host: short fingerprint
		{Name: "eve", Host: "eve.local", Short: "EEEE"},
		{Name: "x y", Host: "eve.local", Short: "FFFF"}, // host taken by eve: short
	}
	var got []string
	for _, c := range peerHandles(ps) {
		got = append(got, c.value)
	}
	want := []string{"AAAA", "bob2", "carol", "DDDD", "eve", "FFFF"}
	if !slices.Equal(got, want) {
		t.Fatalf("handles %q, want %q", got, want)
	}
}
