package dbusapi

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// sessionBus starts a private dbus-daemon and returns its address.
func sessionBus(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "dbus-daemon")
	dir := t.TempDir()
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1", "--address=unix:path="+filepath.Join(dir, "bus"))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(line)
}

func connect(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type backend struct {
	mu      sync.Mutex
	srv     *Server
	answers []string
	// sharing: why it is unavailable, whether setup would help, what the
	// next SetUpSharing returns, how often it was called.
	sbErr    error
	canSetUp bool
	setUpErr error
	setUps   int
}

func (b *backend) Peers() []Peer {
	return []Peer{{Fingerprint: "SHA256:abc", Short: "ABCD-EFGH", Name: "bob", Host: "bob.local", Address: "10.0.0.2", Port: 40000, Trust: "verified"}}
}
func (b *backend) Apps(ctx context.Context, peer string) ([]App, error) {
	if peer != "bob" {
		return nil, errors.New("no peer matches " + peer)
	}
	return []App{{ID: "xeyes", Name: "XEyes", Icon: []byte{1, 2, 3}}}, nil
}
func (b *backend) server() *Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

func (b *backend) Launch(peer, app string) (string, error) {
	srv := b.server()
	go func() {
		time.Sleep(20 * time.Millisecond)
		srv.LaunchProgress("other", "running") // someone else's launch
		srv.LaunchProgress("L1", "waiting for consent")
		srv.LaunchProgress("L1", "running")
		if app == "denied" {
			srv.LaunchFinished("L1", -1, "refused (denied): the host denied the request", OutcomeDenied)
			return
		}
		srv.LaunchFinished("L1", 3, "", OutcomeExited)
	}()
	return "L1", nil
}
func (b *backend) Pending() []Request {
	return []Request{{ID: "r1", Peer: "SHA256:abc", PeerName: "bob", App: "XEyes", FirstTime: true, Deadline: 123}}
}
func (b *backend) Answer(id string, allow, remember bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answers = append(b.answers, id)
	if id != "r1" {
		return errors.New("no such pending request")
	}
	return nil
}
func (b *backend) Block(peer string) error { return nil }
func (b *backend) Sessions() []Session {
	return []Session{{ID: "s1", Direction: "incoming", App: "XEyes", State: "running"}}
}
func (b *backend) EndSession(id string) error { return nil }
func (b *backend) SandboxError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sbErr
}
func (b *backend) CanSetUpSharing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.canSetUp
}

// SetUpSharing fails with setUpErr, or makes sharing available and
// announces it, as the daemon does.
func (b *backend) SetUpSharing(ctx context.Context) error {
	b.mu.Lock()
	b.setUps++
	err, srv := b.setUpErr, b.srv
	if err == nil {
		b.sbErr, b.canSetUp = nil, false
	}
	b.mu.Unlock()
	if err == nil {
		srv.SharingChanged(true, "")
	}
	return err
}

func TestAPI(t *testing.T) {
	addr := sessionBus(t)
	b := &backend{}
	srv, err := Export(connect(t, addr), b)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	c := NewClient(connect(t, addr))
	ctx := context.Background()

	t.Run("introspection", func(t *testing.T) {
		node, err := introspect.Call(c.conn.Object(BusName, Path))
		if err != nil {
			t.Fatal(err)
		}
		var methods, sigs []string
		for _, i := range node.Interfaces {
			if i.Name == Interface {
				for _, m := range i.Methods {
					methods = append(methods, m.Name)
				}
				for _, s := range i.Signals {
					sigs = append(sigs, s.Name)
				}
			}
		}
		for _, want := range []string{"ListPeers", "ListApps", "Launch", "Pending", "Answer", "Block", "Sessions", "EndSession", "SharingStatus", "SetUpSharing"} {
			if !strings.Contains(strings.Join(methods, " "), want) {
				t.Errorf("method %s not introspectable (have %v)", want, methods)
			}
		}
		if len(sigs) != 13 || !slices.Contains(sigs, "DisplayModesChanged") || !slices.Contains(sigs, "SharingChanged") || !slices.Contains(sigs, "SessionStarted") || !slices.Contains(sigs, "RulesChanged") {
			t.Errorf("signals %v", sigs)
		}
		for _, i := range node.Interfaces {
			for _, sig := range i.Signals {
				if i.Name == Interface && sig.Name == "LaunchFinished" {
					var out []string
					for _, a := range sig.Args {
						out = append(out, a.Name+":"+a.Type)
					}
					if got := strings.Join(out, " "); got != "id:s exit_status:i error:s outcome:s" {
						t.Errorf("LaunchFinished args %q, want id:s exit_status:i error:s outcome:s", got)
					}
				}
			}
			for _, m := range i.Methods {
				if i.Name == Interface && m.Name == "SharingStatus" {
					var out []string
					for _, a := range m.Args {
						out = append(out, a.Direction+":"+a.Type)
					}
					if got := strings.Join(out, " "); got != "out:b out:b out:s" {
						t.Errorf("SharingStatus args %q, want out:b out:b out:s", got)
					}
				}
			}
		}
	})
	t.Run("typed calls", func(t *testing.T) {
		peers, err := c.Peers(ctx)
		if err != nil || len(peers) != 1 || peers[0].Port != 40000 || peers[0].Trust != "verified" {
			t.Fatalf("peers %+v %v", peers, err)
		}
		apps, err := c.Apps(ctx, "bob")
		if err != nil || len(apps) != 1 || string(apps[0].Icon) != "\x01\x02\x03" {
			t.Fatalf("apps %+v %v", apps, err)
		}
		if _, err := c.Apps(ctx, "carol"); err == nil || err.Error() != "no peer matches carol" {
			t.Fatalf("error not carried: %v", err)
		}
		p, err := c.Pending(ctx)
		if err != nil || len(p) != 1 || !p[0].FirstTime {
			t.Fatalf("pending %+v %v", p, err)
		}
		if err := c.Answer(ctx, "r1", true, true); err != nil {
			t.Fatal(err)
		}
		if err := c.Answer(ctx, "zz", true, false); err == nil {
			t.Fatal("unknown request answered")
		}
	})
	t.Run("run waits for its own launch", func(t *testing.T) {
		var stages []string
		code, err := c.Run(ctx, "bob", "xeyes", false, func(s string) { stages = append(stages, s) })
		if err != nil || code != 3 || strings.Join(stages, ",") != "waiting for consent,running" {
			t.Fatalf("run: %d %v %v", code, err, stages)
		}
		_, err = c.Run(ctx, "bob", "denied", false, nil)
		var le *LaunchError
		if !errors.As(err, &le) || le.Outcome != OutcomeDenied || !strings.Contains(err.Error(), "denied") {
			t.Fatalf("refusal: %v, want a *LaunchError with outcome %q", err, OutcomeDenied)
		}
		if code, err := c.Run(ctx, "bob", "xeyes", true, func(string) {}); err != nil || code != 0 {
			t.Fatalf("detach: %d %v", code, err)
		}
	})
	t.Run("set up sharing", func(t *testing.T) {
		b.mu.Lock()
		b.sbErr = errors.New("eBrainPool's one-time setup has not been done for this user")
		b.canSetUp = true
		b.setUpErr = errors.New("setup was cancelled or not authorized")
		b.mu.Unlock()
		available, canSetUp, reason, err := c.SharingStatus(ctx)
		if err != nil || available || !canSetUp || !strings.Contains(reason, "one-time setup") {
			t.Fatalf("status before setup: available %v, can set up %v, reason %q, %v", available, canSetUp, reason, err)
		}
		if err := c.SetUpSharing(ctx); err == nil || err.Error() != "setup was cancelled or not authorized" {
			t.Fatalf("cancelled setup: %v", err)
		}
		match := []dbus.MatchOption{dbus.WithMatchObjectPath(Path), dbus.WithMatchMember("SharingChanged")}
		if err := c.conn.AddMatchSignal(match...); err != nil {
			t.Fatal(err)
		}
		defer c.conn.RemoveMatchSignal(match...)
		sigs := make(chan *dbus.Signal, 8)
		c.conn.Signal(sigs)
		defer c.conn.RemoveSignal(sigs)
		b.mu.Lock()
		b.setUpErr = nil
		b.mu.Unlock()
		if err := c.SetUpSharing(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-sigs:
			if s.Name != Interface+".SharingChanged" || !reflect.DeepEqual(s.Body, []any{true, ""}) {
				t.Errorf("signal %s %v, want SharingChanged [true \"\"]", s.Name, s.Body)
			}
		case <-time.After(5 * time.Second):
			t.Error("no SharingChanged signal")
		}
		available, canSetUp, reason, err = c.SharingStatus(ctx)
		if err != nil || !available || canSetUp || reason != "" {
			t.Errorf("status after setup: available %v, can set up %v, reason %q, %v", available, canSetUp, reason, err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.setUps != 2 {
			t.Errorf("SetUpSharing reached the backend %d times, want 2", b.setUps)
		}
	})
	t.Run("one daemon per user", func(t *testing.T) {
		if _, err := Export(connect(t, addr), &backend{}); err == nil || !strings.Contains(err.Error(), "already runs") {
			t.Fatalf("second export: %v", err)
		}
	})
}

func TestNotRunning(t *testing.T) {
	c := NewClient(connect(t, sessionBus(t)))
	if _, err := c.Peers(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no daemon: %v", err)
	}
}
