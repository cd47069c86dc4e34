package control

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handler is a scripted Handler for protocol tests.
type handler struct {
	launchWait time.Duration
	refuse     error
	canceled   atomic.Bool
	seenPeer   atomic.Value
}

func (h *handler) Catalog(ctx context.Context, p Peer) ([]AppInfo, error) {
	h.seenPeer.Store(p)
	return []AppInfo{{ID: "xeyes", Name: "XEyes", Icon: []byte{0x89, 'P', 'N', 'G'}}}, nil
}

func (h *handler) Launch(ctx context.Context, p Peer, app string, progress func(string)) (*Grant, error) {
	progress("waiting for consent")
	select {
	case <-ctx.Done():
		h.canceled.Store(true)
		return nil, ctx.Err()
	case <-time.After(h.launchWait):
	}
	if h.refuse != nil {
		return nil, h.refuse
	}
	progress("starting sandbox")
	return &Grant{Session: "s1", Host: "127.0.0.1", Port: 2222, HostKey: "ssh-ed25519 AAAA", User: "guest", Command: app}, nil
}

func (h *handler) End(ctx context.Context, p Peer, session string) error {
	if session != "s1" {
		return Refuse(CodeBadRequest, "no such session")
	}
	return nil
}

type fixture struct {
	addr     string
	hostKey  ssh.Signer
	h        *handler
	srv      *Server
	clientID ssh.Signer
}

func start(t *testing.T, h *handler, tweak func(*Server)) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{addr: ln.Addr().String(), hostKey: newSigner(t), h: h, clientID: newSigner(t)}
	f.srv = &Server{Identity: f.hostKey, Name: "bob's laptop", Handler: h}
	if tweak != nil {
		tweak(f.srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fixture) dial(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Name: "alice", Expect: identity.FingerprintOf(f.hostKey.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCatalogAndLaunch(t *testing.T) {
	f := start(t, &handler{}, nil)
	c := f.dial(t)
	apps, err := c.Catalog(context.Background())
	if err != nil || len(apps) != 1 || apps[0].ID != "xeyes" || string(apps[0].Icon) != "\x89PNG" {
		t.Fatalf("catalog %+v %v", apps, err)
	}
	if c.Name != "bob's laptop" {
		t.Fatalf("peer name %q", c.Name)
	}
	p := f.h.seenPeer.Load().(Peer)
	if p.Fingerprint != identity.FingerprintOf(f.clientID.PublicKey()) || p.Name != "alice" {
		t.Fatalf("host saw peer %+v", p)
	}
	var stages []string
	g, err := c.Launch(context.Background(), "xeyes", func(s string) { stages = append(stages, s) })
	if err != nil || g.Session != "s1" || g.Command != "xeyes" {
		t.Fatalf("grant %+v %v", g, err)
	}
	if strings.Join(stages, ",") != "waiting for consent,starting sandbox" {
		t.Fatalf("progress %v", stages)
	}
	if err := c.End(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	if err := c.End(context.Background(), "nope"); !IsRefused(err, CodeBadRequest) {
		t.Fatalf("end of unknown session: %v", err)
	}
}

func TestRefusalReachesRequester(t *testing.T) {
	f := start(t, &handler{refuse: Refuse(CodeDenied, "bob said no")}, nil)
	_, err := f.dial(t).Launch(context.Background(), "xeyes", nil)
	var r *RefusedError
	if !errors.As(err, &r) || r.Code != CodeDenied || r.Reason != "bob said no" {
		t.Fatalf("refusal: %v", err)
	}
}

func TestCancelWithdrawsRequest(t *testing.T) {
	f := start(t, &handler{launchWait: time.Minute}, nil)
	c := f.dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Launch(ctx, "xeyes", nil); errc <- err }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("launch after cancel: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !f.h.canceled.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !f.h.canceled.Load() {
		t.Fatal("the host's handler never saw the cancel")
	}
	// The connection still serves.
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatalf("catalog after a cancel: %v", err)
	}
}

func TestHostKeyChecks(t *testing.T) {
	f := start(t, &handler{}, nil)
	other := newSigner(t)
	tests := []struct {
		name   string
		expect identity.Fingerprint
		verify func(ssh.PublicKey) error
		want   string
	}{
		{"announced fingerprint differs", identity.FingerprintOf(other.PublicKey()), nil, "not the announced"},
		{"pin store refuses", identity.FingerprintOf(f.hostKey.PublicKey()), func(ssh.PublicKey) error { return identity.ErrKeyChanged }, identity.ErrKeyChanged.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Expect: tt.expect, Verify: tt.verify})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial: %v (want %q)", err, tt.want)
			}
		})
	}
}

// A probe (a peer added by address, before the user confirmed its key)
// shows the key whatever it is, with the peer's name; Verify can still
// refuse it, and Probe cannot be mixed with an expected fingerprint.
func TestProbe(t *testing.T) {
	f := start(t, &handler{}, nil)
	c, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Probe: true})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	defer c.Close()
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatalf("catalog on a probe: %v", err)
	}
	if got, want := identity.FingerprintOf(c.HostKey), identity.FingerprintOf(f.hostKey.PublicKey()); got != want || c.Name != "bob's laptop" {
		t.Fatalf("probe saw %s %q, want %s %q", got, c.Name, want, "bob's laptop")
	}
	_, err = Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Probe: true, Verify: func(ssh.PublicKey) error { return identity.ErrKeyChanged }})
	if !errors.Is(err, identity.ErrKeyChanged) {
		t.Fatalf("a probe Verify refuses: %v", err)
	}
	if _, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Probe: true, Expect: identity.FingerprintOf(f.hostKey.PublicKey())}); err == nil {
		t.Fatal("Probe with Expect was accepted")
	}
	if _, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID}); err == nil {
		t.Fatal("no Expect and no Probe was accepted")
	}
}

func TestRSAIdentityRefused(t *testing.T) {
	f := start(t, &handler{}, nil)
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, _ := ssh.NewSignerFromKey(k)
	_, err := Dial(context.Background(), f.addr, ClientConfig{Identity: s, Expect: identity.FingerprintOf(f.hostKey.PublicKey())})
	if err == nil {
		t.Fatal("an RSA identity was accepted")
	}
}

// rawChannel opens a control channel without the client's hello.
func rawChannel(t *testing.T, f *fixture) ssh.Channel {
	t.Helper()
	c := f.dial(t)
	ch, reqs, err := c.ssh.OpenChannel(ChannelType, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	return ch
}

func TestProtocolErrors(t *testing.T) {
	f := start(t, &handler{}, func(s *Server) { s.HandshakeTimeout = 300 * time.Millisecond })
	t.Run("unknown version refused cleanly", func(t *testing.T) {
		ch := rawChannel(t, f)
		writeMsg(ch, &Msg{Type: TypeHello, Versions: []int{99}})
		m, err := readMsg(ch)
		if err != nil || m.Type != TypeRefused || m.Code != CodeVersion {
			t.Fatalf("reply %+v %v", m, err)
		}
	})
	t.Run("oversized message closes the channel", func(t *testing.T) {
		ch := rawChannel(t, f)
		ch.Write([]byte{0x7f, 0xff, 0xff, 0xff})
		if _, err := readMsg(ch); err == nil {
			t.Fatal("server answered an oversized message")
		}
	})
	t.Run("silent channel dropped after the deadline", func(t *testing.T) {
		ch := rawChannel(t, f)
		t0 := time.Now()
		if _, err := readMsg(ch); err == nil || time.Since(t0) > 3*time.Second {
			t.Fatalf("silent channel: %v after %s", err, time.Since(t0))
		}
	})
	t.Run("unknown request refused", func(t *testing.T) {
		ch := rawChannel(t, f)
		writeMsg(ch, &Msg{Type: TypeHello, Versions: Versions})
		readMsg(ch)
		writeMsg(ch, &Msg{Type: "format-disk"})
		if m, err := readMsg(ch); err != nil || m.Code != CodeBadRequest {
			t.Fatalf("reply %+v %v", m, err)
		}
	})
	t.Run("garbage and stalled handshakes do not stop the server", func(t *testing.T) {
		g, _ := net.Dial("tcp", f.addr)
		g.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		stalled, _ := net.Dial("tcp", f.addr)
		defer stalled.Close()
		buf := make([]byte, 256)
		g.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
		stalled.SetReadDeadline(time.Now().Add(3 * time.Second))
		t0 := time.Now()
		for {
			if _, err := stalled.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("a connection that never finished the handshake was kept open")
				}
				break
			}
		}
		t.Logf("stalled handshake dropped after %s", time.Since(t0).Round(time.Millisecond))
		if _, err := f.dial(t).Catalog(context.Background()); err != nil {
			t.Fatalf("server stopped serving: %v", err)
		}
	})
}

func TestConnectionLimits(t *testing.T) {
	f := start(t, &handler{}, func(s *Server) { s.MaxConnsPerIP = 2 })
	// Three connections from one address, at most two served. The server
	// counts a connection once its own side of the handshake is done,
	// which can be after the client's Dial returned: whichever is counted
	// third is closed before any request (not necessarily the last).
	clients := []*Client{f.dial(t), f.dial(t)}
	if c, err := Dial(context.Background(), f.addr, ClientConfig{Identity: f.clientID, Expect: identity.FingerprintOf(f.hostKey.PublicKey()), Timeout: 2 * time.Second}); err == nil {
		defer c.Close()
		clients = append(clients, c)
	}
	served := 0
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := c.Catalog(ctx); err == nil {
			served++
		}
		cancel()
	}
	if served != 2 {
		t.Fatalf("%d of 3 connections from one address served, want 2 (MaxConnsPerIP)", served)
	}
}
