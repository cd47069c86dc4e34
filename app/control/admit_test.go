package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestStartupsDropChance(t *testing.T) {
	m := Startups{Start: 256, Rate: 30, Full: 1024}
	for _, tt := range []struct {
		n    int
		want float64
	}{{0, 0}, {255, 0}, {256, 0.3}, {640, 0.65}, {1023, 0.9991}, {1024, 1}, {5000, 1}} {
		if got := m.dropChance(tt.n); math.Abs(got-tt.want) > 0.001 {
			t.Errorf("dropChance(%d) = %.4f, want %.4f", tt.n, got, tt.want)
		}
	}
}

func TestAddrKey(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.168.1.7:22", "192.168.1.7"},
		{"[::ffff:192.168.1.7]:22", "192.168.1.7"},
		{"[2001:db8:1:2:aaaa::1]:22", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:22", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:22", "fe80::1"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := addrKey(a); got != tt.want {
			t.Errorf("addrKey(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// fakeConn is enough of a net.Conn for the gate: an address and Close.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	closed atomic.Bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error         { c.closed.Store(true); return nil }

func conn(ip string) *fakeConn {
	return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

func testGate(lim limits, r float64) *gate {
	g := newGate(lim, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.rand = func() float64 { return r }
	return g
}

func TestGate(t *testing.T) {
	lim := limits{startups: Startups{Start: 4, Rate: 30, Full: 8}, startupsPerIP: 2, reserved: 3, conns: 2, connsPer: 1}

	t.Run("an address at its share displaces its own oldest", func(t *testing.T) {
		g := testGate(lim, 0.99)
		a1, a2, a3 := conn("10.0.0.1"), conn("10.0.0.1"), conn("10.0.0.1")
		s1, s2, s3 := g.admit(a1), g.admit(a2), g.admit(a3)
		if s1 == nil || s2 == nil || s3 == nil {
			t.Fatal("refused")
		}
		if !a1.closed.Load() || a2.closed.Load() || a3.closed.Load() {
			t.Fatalf("closed: %v %v %v, want only the oldest", a1.closed.Load(), a2.closed.Load(), a3.closed.Load())
		}
		if st := g.stats(); st.Strangers != 2 || st.Displaced != 1 {
			t.Fatalf("stats %+v", st)
		}
		if g.authenticated(s1) {
			t.Fatal("a displaced connection was counted as authenticated")
		}
		for _, s := range []*slot{s1, s2, s3} {
			g.release(s)
		}
		if st := g.stats(); st.Strangers != 0 {
			t.Fatalf("after release: %+v", st)
		}
	})

	t.Run("strangers meet the random early drop, known addresses do not", func(t *testing.T) {
		g := testGate(lim, 0.5)
		// A connection from K authenticates: K is known from now on.
		k := g.admit(conn("10.0.9.9"))
		if !g.mayAuthenticate(k) || !g.authenticated(k) {
			t.Fatal("K could not authenticate")
		}
		for _, ip := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.3"} {
			if g.admit(conn(ip)) == nil { // chance at 4 and 5 is 0.30 and 0.475
				t.Fatalf("%s refused", ip)
			}
		}
		// 6 pending: a new stranger is refused with chance 0.65 > 0.5.
		if g.admit(conn("10.0.0.4")) != nil {
			t.Fatal("a stranger was admitted at 65% drop chance with rand 0.5")
		}
		if g.admit(conn("10.0.9.9")) == nil {
			t.Fatal("a known address was refused")
		}
		if st := g.stats(); st.Strangers != 6 || st.Known != 1 || st.Dropped != 1 || st.KnownAddrs != 1 || st.Authenticated != 1 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("a full reserved pool makes room at the heaviest address", func(t *testing.T) {
		g := testGate(lim, 0.99)
		for _, ip := range []string{"10.0.1.1", "10.0.1.2"} {
			s := g.admit(conn(ip))
			g.authenticated(s)
			g.release(s)
		}
		k1 := conn("10.0.1.1")
		k2a, k2b := conn("10.0.1.2"), conn("10.0.1.2")
		for _, c := range []*fakeConn{k2a, k1, k2b} {
			if g.admit(c) == nil {
				t.Fatal("refused")
			}
		}
		// Full (3): another from 10.0.1.1 displaces 10.0.1.2's oldest,
		// not its own.
		k1b := conn("10.0.1.1")
		if g.admit(k1b) == nil {
			t.Fatal("refused")
		}
		if !k2a.closed.Load() || k1.closed.Load() || k2b.closed.Load() {
			t.Fatalf("closed: k2a %v k1 %v k2b %v, want k2a only", k2a.closed.Load(), k1.closed.Load(), k2b.closed.Load())
		}
		// Strangers are not in this pool: one is admitted while it is full.
		if g.admit(conn("10.0.0.1")) == nil {
			t.Fatal("a stranger was refused with the reserved pool full")
		}
		if st := g.stats(); st.Known != 3 || st.Strangers != 1 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("authenticated limits", func(t *testing.T) {
		g := testGate(lim, 0.99)
		a, b := g.admit(conn("10.0.2.1")), g.admit(conn("10.0.2.1"))
		if !g.authenticated(a) {
			t.Fatal("first")
		}
		if g.mayAuthenticate(b) || g.authenticated(b) {
			t.Fatal("a second authenticated connection from one address with connsPer 1")
		}
		c, d := g.admit(conn("10.0.2.2")), g.admit(conn("10.0.2.3"))
		if !g.authenticated(c) || g.authenticated(d) {
			t.Fatal("conns 2 not applied")
		}
		for _, s := range []*slot{a, b, c, d} {
			g.release(s)
		}
		if st := g.stats(); st.Authenticated != 0 || st.Strangers+st.Known != 0 || st.RefusedAuth != 2 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("known addresses are forgotten after a while", func(t *testing.T) {
		g := testGate(lim, 0.99)
		now := time.Unix(1e9, 0)
		g.now = func() time.Time { return now }
		s := g.admit(conn("10.0.3.1"))
		g.authenticated(s)
		g.release(s)
		if s := g.admit(conn("10.0.3.1")); s.class != known {
			t.Fatal("not known right after authenticating")
		}
		now = now.Add(knownFor + time.Second)
		if s := g.admit(conn("10.0.3.1")); s.class != stranger {
			t.Fatal("still known after knownFor")
		}
	})
}

// Each stage of the handshake has its own deadline: a connection that
// sends nothing is closed at the banner deadline, one that sends its
// version line and stops at the key exchange's, one that stops during
// authentication at the authentication's; a client that does not stall
// is served throughout.
func TestStageDeadlines(t *testing.T) {
	const stageT = 300 * time.Millisecond
	f := start(t, &handler{}, func(s *Server) {
		s.BannerTimeout, s.KexTimeout, s.AuthTimeout = stageT, stageT, stageT
	})
	closedAfter := func(c net.Conn) time.Duration {
		t0 := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept a stalled connection for 5s")
		}
		return time.Since(t0)
	}
	check := func(what string, d time.Duration) {
		t.Logf("%s: closed after %s", what, d.Round(time.Millisecond))
		if d < stageT-50*time.Millisecond || d > stageT+700*time.Millisecond {
			t.Errorf("%s closed after %s, want about %s", what, d, stageT)
		}
	}

	idle, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	check("idle connection", closedAfter(idle))

	banner, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer banner.Close()
	banner.Write([]byte("SSH-2.0-stall\r\n"))
	check("version line, then nothing", closedAfter(banner))

	// A client that stalls in authentication: its key is offered only
	// once the test lets it.
	raw, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	release := make(chan struct{})
	authStarted := make(chan time.Time, 1)
	cfg := &ssh.ClientConfig{
		User: "x",
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			authStarted <- time.Now()
			<-release
			return []ssh.Signer{f.clientID}, nil
		})},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	done := make(chan error, 1)
	go func() {
		_, _, _, err := ssh.NewClientConn(raw, f.addr, cfg)
		done <- err
	}()
	t0 := <-authStarted
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.gate.stats().TimedOut[stageAuth] == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	check("stalled in authentication", time.Since(t0))
	close(release)
	if err := <-done; err == nil {
		t.Error("the stalled client authenticated after its deadline")
	}

	st := f.srv.gate.stats()
	if st.TimedOut != [stageCount]uint64{1, 1, 1} {
		t.Errorf("timed out by stage (banner, key exchange, auth): %v, want one each", st.TimedOut)
	}
	if _, err := f.dial(t).Catalog(context.Background()); err != nil {
		t.Fatalf("a client that does not stall: %v", err)
	}
}
