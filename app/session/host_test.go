package session

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// fakeSandboxes records what the host asks of its sandboxes. ServeConn
// serves the connection with the real endpoint in this process, on the
// arguments EndpointHandoff gives guest-sshd, and its claim descriptor.
type fakeSandboxes struct {
	root     string
	startErr error
	// serveErr is what ServeConn fails with before any endpoint runs (an
	// attach that could not enter the sandbox), if set.
	serveErr error

	mu      sync.Mutex
	started []string
	idle    []string    // StopWhenIdle calls, by peer
	idleC   chan string // each StopWhenIdle call, if set
}

func newFakeSandboxes(t *testing.T) *fakeSandboxes {
	return &fakeSandboxes{root: t.TempDir(), idleC: make(chan string, 16)}
}

func (f *fakeSandboxes) Start(ctx context.Context, peer string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, peer)
	return f.startErr
}

func (f *fakeSandboxes) RootfsPath(peer string) string { return filepath.Join(f.root, "rootfs") }

// StopWhenIdle waits as long as a real one would before the sandbox has
// been idle for idle: until ctx ends.
func (f *fakeSandboxes) StopWhenIdle(ctx context.Context, peer string, idle, poll time.Duration) error {
	f.mu.Lock()
	f.idle = append(f.idle, peer)
	f.mu.Unlock()
	f.idleC <- peer
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeSandboxes) idleStops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.idle...)
}

func (f *fakeSandboxes) ServeConn(ctx context.Context, peer string, conn *net.TCPConn, spec sandbox.ExecSpec, grace time.Duration) (int, error) {
	if f.serveErr != nil {
		return 1, f.serveErr
	}
	// guest-sshd --host-key PATH --authorized-key KEY --claim-fd 2 -- ARGV
	args := spec.Args
	if len(args) < 9 || args[1] != "guest-sshd" || args[2] != "--host-key" || args[4] != "--authorized-key" || args[6] != "--claim-fd" || args[7] != "2" || args[8] != "--" {
		return 2, fmt.Errorf("unexpected endpoint arguments %q", args)
	}
	signer, err := tunnel.LoadOrCreateHostKey(filepath.Join(f.root, "rootfs", args[3]))
	if err != nil {
		return 2, err
	}
	key, err := tunnel.ParseAuthorizedKey(args[5])
	if err != nil {
		return 2, err
	}
	err = tunnel.ServeEndpoint(ctx, conn, tunnel.EndpointConfig{
		HostKey: signer, AuthorizedKey: key, Command: args[9:], Env: []string{"PATH=" + os.Getenv("PATH")},
		Claim:  tunnel.ClaimOver(spec.Stderr, 5*time.Second),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 1, nil // as guest-sshd exits
	}
	return 0, nil
}

// memPins is a Pins in memory.
type memPins struct {
	mu   sync.Mutex
	pins map[identity.Fingerprint]identity.Pin
}

func (m *memPins) Lookup(fp identity.Fingerprint) (identity.Pin, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pins[fp]
	return p, ok
}

func (m *memPins) Observe(name string, key ssh.PublicKey) (identity.Pin, identity.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fp := identity.FingerprintOf(key)
	if p, ok := m.pins[fp]; ok {
		return p, identity.StatusKnown, nil
	}
	p := identity.Pin{Fingerprint: fp, Name: name}
	m.pins[fp] = p
	return p, identity.StatusNew, nil
}

// allowRules is a consent store whose rules allow the test app to anyone.
type allowRules struct{ peer string }

func (a allowRules) Load() (consent.Rules, error) {
	return consent.Rules{Version: consent.RulesVersion, Allowed: map[string][]consent.AppRule{a.peer: {{ID: "true", Command: "true"}}}}, nil
}
func (allowRules) Save(consent.Rules) error { return nil }

type hostRig struct {
	h      *Host
	sb     *fakeSandboxes
	pins   *memPins
	peer   control.Peer
	signer ssh.Signer
}

func newHostRig(t *testing.T) *hostRig {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	fp := identity.FingerprintOf(signer.PublicKey())
	engine, err := consent.New(consent.Config{Store: allowRules{string(fp)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(engine.Close)
	r := &hostRig{sb: newFakeSandboxes(t), pins: &memPins{pins: map[identity.Fingerprint]identity.Pin{}}, signer: signer}
	r.h = NewHost(HostConfig{
		Sandboxes: r.sb, Consent: engine, Pins: r.pins,
		Apps:     func() []catalog.App { return []catalog.App{{ID: "true", Name: "True", Exec: []string{"true"}}} },
		IdleStop: time.Minute, ForwardIdle: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	r.peer = control.Peer{Fingerprint: fp, Key: signer.PublicKey(), Name: "alice", Addr: lo, LocalAddr: lo}
	return r
}

func (r *hostRig) launch(ctx context.Context) (*control.Grant, error) {
	return r.h.Launch(ctx, r.peer, "true", func(string) {})
}

// closeWithin closes the host and fails the test if that takes longer
// than d (an idle stop Close should have cancelled, or a launch it waits
// for, would hold it).
func (r *hostRig) closeWithin(t *testing.T, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { r.h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("Host.Close still waits after %v", d)
	}
}

func wantIdleStop(t *testing.T, sb *fakeSandboxes, peer string) {
	t.Helper()
	select {
	case got := <-sb.idleC:
		if got != peer {
			t.Errorf("idle stop scheduled for %s, want %s", got, peer)
		}
	case <-time.After(5 * time.Second):
		t.Error("no idle stop scheduled for the started sandbox")
	}
}

// Each step of a launch that fails unwinds what the steps before did: the
// sandbox's start gets its idle stop, an open forward is closed, a
// registered session is forgotten.
func TestLaunchUnwindsEachStep(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, r *hostRig)
		wantCode control.Code // a refusal, or "" for another error
		idleStop bool
	}{
		{name: "the sandbox does not start", wantCode: control.CodeNoLimits,
			setup: func(t *testing.T, r *hostRig) {
				r.sb.startErr = fmt.Errorf("%w: no systemd user manager", sandbox.ErrNoLimits)
			}},
		{name: "the endpoint hand-off fails", idleStop: true,
			setup: func(t *testing.T, r *hostRig) {
				// The sandbox's root is a file: the endpoint's key cannot be made.
				if err := os.WriteFile(filepath.Join(r.sb.root, "rootfs"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "the forward cannot listen", idleStop: true,
			setup: func(t *testing.T, r *hostRig) {
				r.peer.LocalAddr = &net.TCPAddr{IP: net.ParseIP("192.0.2.1")} // not an address of this machine
			}},
		{name: "the grant fails after the forward opened", wantCode: control.CodeInternal, idleStop: true,
			setup: func(t *testing.T, r *hostRig) {
				r.h.granting = func(s *HostSession) error {
					if got := r.h.Sessions(); len(got) != 1 || got[0].ID != s.ID {
						t.Errorf("at the grant step, sessions %+v, want the one being granted", got)
					}
					addr := s.fwd.Addr().String()
					t.Cleanup(func() {
						if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
							c.Close()
							t.Errorf("the forward on %s still accepts after the failed launch", addr)
						}
					})
					return control.Refuse(control.CodeInternal, "the grant could not be sent")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newHostRig(t)
			tc.setup(t, r)
			g, err := r.launch(context.Background())
			if err == nil {
				t.Fatalf("launch granted %+v, want a failure", g)
			}
			var re *control.RefusedError
			if tc.wantCode != "" && (!errors.As(err, &re) || re.Code != tc.wantCode) {
				t.Errorf("launch: %v, want a refusal %q", err, tc.wantCode)
			}
			if len(r.sb.started) != 1 {
				t.Errorf("sandbox started %d times, want 1", len(r.sb.started))
			}
			if tc.idleStop {
				wantIdleStop(t, r.sb, string(r.peer.Fingerprint))
			} else if got := r.sb.idleStops(); len(got) != 0 {
				t.Errorf("idle stops %v for a sandbox that did not start", got)
			}
			if got := r.h.Sessions(); len(got) != 0 {
				t.Errorf("sessions after the failed launch: %+v", got)
			}
			r.closeWithin(t, 5*time.Second)
		})
	}
}

// A withdrawn request (the requester closed the channel) while the
// sandbox starts leaves nothing behind either.
func TestLaunchWithdrawnWhilePreparing(t *testing.T) {
	r := newHostRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	r.h.cfg.Sandboxes = startHook{r.sb, cancel}
	if _, err := r.launch(ctx); !control.IsRefused(err, control.CodeCanceled) {
		t.Fatalf("launch: %v, want canceled", err)
	}
	wantIdleStop(t, r.sb, string(r.peer.Fingerprint))
	if got := r.h.Sessions(); len(got) != 0 {
		t.Errorf("sessions: %+v", got)
	}
	r.closeWithin(t, 5*time.Second)
}

// startHook calls after once the sandbox started.
type startHook struct {
	*fakeSandboxes
	after func()
}

func (s startHook) Start(ctx context.Context, peer string) error {
	err := s.fakeSandboxes.Start(ctx, peer)
	s.after()
	return err
}

// A granted launch: a wrong key does not use up its forward, the right
// key is the session (and only then is it connected); the peer is pinned
// after its request.
func TestLaunchGrantedSession(t *testing.T) {
	r := newHostRig(t)
	g, err := r.launch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.pins.Lookup(r.peer.Fingerprint); !ok {
		t.Error("the peer was not pinned after its request")
	}
	hostKey, err := tunnel.ParseAuthorizedKey(g.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	run := func(id ssh.Signer) (int, error) {
		return tunnel.RunApp(context.Background(), tunnel.ClientConfig{
			Addr: net.JoinHostPort(g.Host, fmt.Sprint(g.Port)), HostKey: hostKey, Identity: id,
			User: g.User, Command: g.Command, NoX11: true,
		})
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(priv)
	if _, err := run(other); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("another key: %v, want an authentication error", err)
	}
	if s := r.h.Sessions(); len(s) != 1 || s[0].Connected {
		t.Fatalf("after a wrong key, sessions %+v, want one not connected", s)
	}
	if st, err := run(r.signer); err != nil || st != 0 {
		t.Fatalf("the requester's key after a wrong one: status %d, %v", st, err)
	}
	// The session ended: forgotten, and the sandbox's idle stop scheduled.
	wantIdleStop(t, r.sb, string(r.peer.Fingerprint))
	if s := r.h.Sessions(); len(s) != 0 {
		t.Errorf("sessions after the app exited: %+v", s)
	}
	r.closeWithin(t, 5*time.Second)
}

// Close right after a session ended never waits for an idle stop (a
// stop scheduled after Close cancelled the others held it up for
// IdleStop), and a session the host ended is said so to its requester.
func TestHostCloseAfterSessionEnds(t *testing.T) {
	for i := 0; i < 20; i++ {
		r := newHostRig(t)
		g, err := r.launch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go r.h.EndSession(g.Session)
		r.closeWithin(t, 3*time.Second)
		if err := r.h.End(context.Background(), r.peer, g.Session); !control.IsRefused(err, control.CodeEnded) {
			t.Fatalf("End of a session the host ended: %v, want %q", err, control.CodeEnded)
		}
	}
	r := newHostRig(t)
	if err := r.h.End(context.Background(), r.peer, "nosuchsession"); !control.IsRefused(err, control.CodeBadRequest) {
		t.Errorf("End of an unknown session: %v, want %q", err, control.CodeBadRequest)
	}
	r.h.Close()
	if _, err := r.launch(context.Background()); !control.IsRefused(err, control.CodeShuttingDown) {
		t.Errorf("launch after Close: %v, want %q", err, control.CodeShuttingDown)
	}
}

// blockingStart is a sandbox whose start lasts until its ctx ends.
type blockingStart struct {
	*fakeSandboxes
	started chan struct{}
}

func (s blockingStart) Start(ctx context.Context, peer string) error {
	close(s.started)
	<-ctx.Done()
	return ctx.Err()
}

// Closing the host (the daemon quitting) ends its sessions and tells their
// requesters why, and a launch still starting its sandbox gives up though
// its request's connection goes on (the daemon serves requests until the
// sandboxes stopped).
func TestHostCloseWhenQuitting(t *testing.T) {
	t.Run("a session's End says the host quit", func(t *testing.T) {
		r := newHostRig(t)
		g, err := r.launch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		r.closeWithin(t, 3*time.Second)
		err = r.h.End(t.Context(), r.peer, g.Session)
		if !control.IsRefused(err, control.CodeEnded) || !strings.Contains(err.Error(), "eBrainPool is quitting there") {
			t.Errorf("End after Close: %v, want %q saying the host quit", err, control.CodeEnded)
		}
	})
	t.Run("a launch starting its sandbox gives up", func(t *testing.T) {
		r := newHostRig(t)
		started := make(chan struct{})
		r.h.cfg.Sandboxes = blockingStart{r.sb, started}
		done := make(chan error, 1)
		go func() { _, err := r.launch(context.Background()); done <- err }()
		<-started
		r.closeWithin(t, 3*time.Second)
		if err := <-done; err == nil {
			t.Error("the launch was granted after Close")
		}
	})
}

// When the app's endpoint could not enter the sandbox, the requester's
// End learns why (its SSH connection only broke off); a connection that
// failed for another reason is told nothing.
func TestEndSaysWhyTheAppDidNotStart(t *testing.T) {
	tests := []struct {
		name     string
		serveErr error
		want     string // in the refusal; "" for none
	}{
		{"at the pids limit", &sandbox.EnterError{Peer: "p", Lines: []string{"Resource temporarily unavailable - Failed to clone attached process"}, ProcessLimit: 64},
			"your sandbox on this host is at its process limit (64 processes)"},
		{"entering failed otherwise", &sandbox.EnterError{Peer: "p", Lines: []string{"Failed to attach"}}, "entering your sandbox on this host failed"},
		{"the files' stage failed", fmt.Errorf("%w: %w", tunnel.ErrNotAuthenticated, &tunnel.StageError{Message: `guest-mount: "x" in the guest's home is not a folder`}),
			`bringing your files into your sandbox on this host failed: guest-mount: "x" in the guest's home is not a folder`},
		{"the endpoint failed after it entered", errors.New("endpoint exited with status 1"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newHostRig(t)
			r.sb.serveErr = tc.serveErr
			g, err := r.launch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			hostKey, _ := tunnel.ParseAuthorizedKey(g.HostKey)
			_, err = tunnel.RunApp(context.Background(), tunnel.ClientConfig{
				Addr: net.JoinHostPort(g.Host, fmt.Sprint(g.Port)), HostKey: hostKey, Identity: r.signer,
				User: g.User, Command: g.Command, NoX11: true, HandshakeTimeout: 5 * time.Second,
			})
			if err == nil {
				t.Fatal("the app ran")
			}
			eerr := r.h.End(context.Background(), r.peer, g.Session)
			switch {
			case tc.want == "" && eerr != nil:
				t.Errorf("End: %v, want nil", eerr)
			case tc.want != "" && (!control.IsRefused(eerr, control.CodeSandboxFailed) || !strings.Contains(eerr.Error(), tc.want)):
				t.Errorf("End: %v, want %s refusal saying %q", eerr, control.CodeSandboxFailed, tc.want)
			}
			for deadline := time.Now().Add(5 * time.Second); len(r.h.Sessions()) != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("sessions after End: %+v", r.h.Sessions())
				}
			}
			r.closeWithin(t, 5*time.Second)
		})
	}
}
