package discovery_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// node is one discovery.Service running against a test bed host's bus.
type node struct {
	host   *testbed.Host
	fp     identity.Fingerprint
	name   string
	port   uint16
	svc    *discovery.Service
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	conns []*dbus.Conn
	added map[identity.Fingerprint]time.Time
}

func newFingerprint(t testing.TB) identity.Fingerprint {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return id.Fingerprint()
}

// logWriter sends slog output to the test log while the test runs.
type logWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	closed bool
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && testing.Verbose() {
		w.t.Log(w.prefix + strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// startNode runs a discovery service on h until the test ends.
func startNode(t testing.TB, h *testbed.Host, name string, port uint16) *node {
	t.Helper()
	n := &node{host: h, fp: newFingerprint(t), name: name, port: port, done: make(chan struct{}),
		added: map[identity.Fingerprint]time.Time{}}
	lw := &logWriter{t: t, prefix: h.Name + "/" + name + ": "}
	var out io.Writer = lw
	svc, err := discovery.New(discovery.Options{
		Dial: func(ctx context.Context) (*dbus.Conn, error) {
			c, err := h.DialBus(ctx)
			if err == nil {
				n.mu.Lock()
				n.conns = append(n.conns, c)
				n.mu.Unlock()
			}
			return c, err
		},
		Self: discovery.Announcement{Fingerprint: n.fp, Name: name},
		Port: port,
		OnEvent: func(ev discovery.Event) {
			if ev.Kind == discovery.PeerAdded {
				n.mu.Lock()
				n.added[ev.Peer.Fingerprint] = time.Now()
				n.mu.Unlock()
			}
		},
		Logger:     slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		_ = svc.Run(ctx)
	}()
	t.Cleanup(func() {
		n.stop()
		lw.mu.Lock()
		lw.closed = true
		lw.mu.Unlock()
	})
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

// dropConn closes the node's current D-Bus connection under it.
func (n *node) dropConn() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.conns) > 0 {
		n.conns[len(n.conns)-1].Close()
	}
}

// dials returns how many connections the node has opened.
func (n *node) dials() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

func (n *node) addedAt(fp identity.Fingerprint) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.added[fp]
	return at, ok
}

func fps(peers []discovery.Peer) []identity.Fingerprint {
	var out []identity.Fingerprint
	for _, p := range peers {
		out = append(out, p.Fingerprint)
	}
	return out
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// sees reports whether n lists exactly the given peers.
func (n *node) sees(want ...*node) bool {
	got := fps(n.svc.Peers())
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(got, w.fp) {
			return false
		}
	}
	return true
}

func (n *node) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, published as %q) sees:", n.host.Name, n.fp.Short(), n.svc.PublishedName())
	for _, p := range n.svc.Peers() {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return b.String()
}

func TestDiscoveryE2E(t *testing.T) {
	testbed.Require(t, "avahi-publish")
	bed := testbed.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var nodes []*node
	for i, h := range bed.Hosts {
		nodes = append(nodes, startNode(t, h, fmt.Sprintf("Colleague %d", i+1), uint16(40000+i)))
	}
	others := func(n *node) []*node {
		var out []*node
		for _, o := range nodes {
			if o != n && o.host != n.host {
				out = append(out, o)
			}
		}
		return out
	}

	t.Run("each lists the other two", func(t *testing.T) {
		took := waitFor(t, 2*time.Second, "not every host lists the other two", func() bool {
			for _, n := range nodes {
				if !n.sees(others(n)...) {
					return false
				}
			}
			return true
		})
		t.Logf("all three hosts list each other %v after the services started", took.Round(time.Millisecond))
		for _, n := range nodes {
			for _, o := range others(n) {
				p, ok := n.svc.Peer(o.fp)
				if !ok {
					t.Fatalf("%s", n.describe())
				}
				if p.Name != o.name || p.Port != o.port || p.Version != discovery.ProtocolVersion {
					t.Errorf("%s lists %s as %+v", n.host.Name, o.host.Name, p)
				}
				if !slices.Contains(p.Addresses, o.host.IP) {
					t.Errorf("%s lists %s at %v, want %s among them", n.host.Name, o.host.Name, p.Addresses, o.host.IP)
				}
				if p.Host != o.host.Name+".local" {
					t.Errorf("%s lists %s with host %q", n.host.Name, o.host.Name, p.Host)
				}
			}
			if _, ok := n.svc.Peer(n.fp); ok {
				t.Errorf("%s lists itself", n.host.Name)
			}
		}
	})

	t.Run("avahi restart", func(t *testing.T) {
		gone := nodes[2]
		if err := gone.host.StopAvahi(); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 5*time.Second, "host3 still listed after its avahi-daemon stopped", func() bool {
			return nodes[0].sees(nodes[1]) && nodes[1].sees(nodes[0])
		})
		t.Logf("host3 gone from the others' lists %v after its avahi-daemon stopped", took.Round(time.Millisecond))
		waitFor(t, 2*time.Second, "host3 still lists peers without an avahi-daemon", func() bool {
			return len(gone.svc.Peers()) == 0 && gone.svc.PublishedName() == ""
		})
		if err := gone.host.StartAvahi(ctx); err != nil {
			t.Fatal(err)
		}
		took = waitFor(t, 10*time.Second, "host3 not back after avahi-daemon restarted", func() bool {
			for _, n := range nodes {
				if !n.sees(others(n)...) {
					return false
				}
			}
			return gone.svc.PublishedName() != ""
		})
		t.Logf("host3 re-published and all lists complete %v after avahi-daemon restarted", took.Round(time.Millisecond))
	})

	t.Run("avahi crash", func(t *testing.T) {
		n := nodes[0]
		if err := n.host.KillAvahi(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "host1 still lists peers after its avahi-daemon was killed", func() bool {
			return len(n.svc.Peers()) == 0 && n.svc.PublishedName() == ""
		})
		if err := n.host.StartAvahi(ctx); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 10*time.Second, "host1 did not recover after its avahi-daemon was restarted", func() bool {
			for _, m := range nodes {
				if !m.sees(others(m)...) {
					return false
				}
			}
			return n.svc.PublishedName() != ""
		})
		t.Logf("host1 recovered %v after its killed avahi-daemon was restarted", took.Round(time.Millisecond))
	})

	t.Run("interface down and up", func(t *testing.T) {
		n := nodes[0]
		ctx := context.Background()
		if err := bed.Host(1).Down(ctx); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 10*time.Second, "host1 still lists peers with its link down", func() bool {
			return len(n.svc.Peers()) == 0
		})
		t.Logf("host1's list emptied %v after its link went down", took.Round(time.Millisecond))
		if err := bed.Host(1).Up(ctx); err != nil {
			t.Fatal(err)
		}
		took = waitFor(t, 15*time.Second, "host1 did not come back after its link came up", func() bool {
			for _, m := range nodes {
				if !m.sees(others(m)...) {
					return false
				}
			}
			return n.svc.PublishedName() != ""
		})
		t.Logf("all lists complete again %v after host1's link came up", took.Round(time.Millisecond))
	})

	t.Run("reconnect after D-Bus connection loss", func(t *testing.T) {
		n := nodes[0]
		dials := n.dials()
		n.dropConn()
		took := waitFor(t, 10*time.Second, "host1 did not recover after losing its D-Bus connection", func() bool {
			return n.dials() > dials && n.sees(others(n)...) && n.svc.PublishedName() != "" &&
				nodes[1].sees(others(nodes[1])...) && nodes[2].sees(others(nodes[2])...)
		})
		t.Logf("host1 redialled, re-published and relisted its peers %v after its connection was closed", took.Round(time.Millisecond))
	})

	t.Run("same display name on two hosts", func(t *testing.T) {
		a := startNode(t, bed.Host(1), "Twin", 41000)
		b := startNode(t, bed.Host(2), "Twin", 41001)
		defer a.stop()
		defer b.stop()
		obs := nodes[2]
		// Avahi resolves the name collision (probe, rename to "Twin #2",
		// re-probe): not a latency goal, so a generous bound.
		waitFor(t, 30*time.Second, "host3 does not list both twins", func() bool {
			_, okA := obs.svc.Peer(a.fp)
			_, okB := obs.svc.Peer(b.fp)
			return okA && okB && a.svc.PublishedName() != "" && b.svc.PublishedName() != ""
		})
		pa, _ := obs.svc.Peer(a.fp)
		pb, _ := obs.svc.Peer(b.fp)
		if pa.Name != "Twin" || pb.Name != "Twin" || pa.Fingerprint == pb.Fingerprint {
			t.Errorf("twins listed as %v and %v", pa, pb)
		}
		if a.svc.PublishedName() == b.svc.PublishedName() || pa.Instance == pb.Instance {
			t.Errorf("both twins published as %q / %q", a.svc.PublishedName(), b.svc.PublishedName())
		}
		t.Logf("twins published as %q and %q", a.svc.PublishedName(), b.svc.PublishedName())
	})

	t.Run("malformed TXT ignored", func(t *testing.T) {
		obs := nodes[0]
		waitFor(t, 5*time.Second, "stopped twins still listed", func() bool { return obs.sees(others(obs)...) })
		h := bed.Host(2)
		good := newFingerprint(t)
		records := [][]string{
			{"bad-fp", "v=1", "fp=SHA256:tooshort", "name=Mallory"},
			{"long-name", "v=1", "fp=" + string(newFingerprint(t)), "name=" + strings.Repeat("x", 200)},
			{"no-version", "fp=" + string(newFingerprint(t)), "name=Mallory"},
			{"dup-fp", "v=1", "fp=" + string(newFingerprint(t)), "fp=" + string(newFingerprint(t)), "name=Mallory"},
			{"good-control", "v=1", "fp=" + string(good), "name=Control"},
		}
		for _, r := range records {
			argv := append([]string{"avahi-publish", "-s", r[0], discovery.ServiceType, "42000"}, r[1:]...)
			cmd := h.Command(ctx, argv...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		}
		waitFor(t, 10*time.Second, "well-formed control announcement not listed", func() bool {
			_, ok := obs.svc.Peer(good)
			return ok
		})
		// Give the malformed ones, published at the same time, a moment more.
		time.Sleep(500 * time.Millisecond)
		want := append(fps([]discovery.Peer{}), good, nodes[1].fp, nodes[2].fp)
		for _, p := range obs.svc.Peers() {
			if !slices.Contains(want, p.Fingerprint) {
				t.Errorf("malformed announcement listed: %v", p)
			}
		}
		if len(obs.svc.Peers()) != len(want) {
			t.Errorf("%s", obs.describe())
		}
	})
}

// BenchmarkDiscoveryLatency measures the time from starting to announce on
// one host to being listed on another.
func BenchmarkDiscoveryLatency(b *testing.B) {
	bed := testbed.New(b, 2)
	obs := startNode(b, bed.Host(2), "Observer", 40000)
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		pub := startNode(b, bed.Host(1), fmt.Sprintf("Announcer %d", i), 40001)
		waitFor(b, 10*time.Second, "announcement not listed", func() bool {
			_, ok := obs.addedAt(pub.fp)
			return ok
		})
		at, _ := obs.addedAt(pub.fp)
		d := at.Sub(start)
		total += d
		b.Logf("iteration %d: announce -> listed on host2 in %v", i, d.Round(time.Millisecond))
		pub.stop()
		removed := time.Now()
		waitFor(b, 10*time.Second, "withdrawn announcement still listed", func() bool {
			_, ok := obs.svc.Peer(pub.fp)
			return !ok
		})
		b.Logf("iteration %d: withdrawn -> removed on host2 in %v", i, time.Since(removed).Round(time.Millisecond))
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-listed/op")
}
