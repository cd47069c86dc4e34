package session

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// A host must not point the requester's client at another machine: a
// grant is followed only to the address the control port was reached on.
func TestGrantAddrMatches(t *testing.T) {
	reached4 := &net.TCPAddr{IP: net.ParseIP("192.168.1.20"), Port: 7070}
	reached6 := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 7070, Zone: "eth0"}
	tests := []struct {
		name    string
		host    string
		reached net.Addr
		ok      bool
	}{
		{"the same IPv4 address", "192.168.1.20", reached4, true},
		{"IPv4-mapped form of it", "::ffff:192.168.1.20", reached4, true},
		{"another address", "192.168.1.99", reached4, false},
		{"loopback instead", "127.0.0.1", reached4, false},
		{"a host name", "evil.example", reached4, false},
		{"link-local with the same zone", "fe80::1%eth0", reached6, true},
		{"link-local without a zone", "fe80::1", reached6, true},
		// The zone in a grant is the host's name for its own interface:
		// it cannot point this side anywhere (grantDialAddr uses this
		// side's zone), so it is not compared.
		{"link-local with the host's interface name", "fe80::1%veth-b", reached6, true},
		{"another link-local address", "fe80::2%eth0", reached6, false},
		{"an IPv6 address reached by IPv4", "2001:db8::20", reached4, false},
		{"not a TCP connection", "192.168.1.20", &net.UnixAddr{Name: "/x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := grantAddrMatches(tt.host, tt.reached)
			if tt.ok != (err == nil) {
				t.Fatalf("grantAddrMatches(%q, %v) = %v, want ok=%v", tt.host, tt.reached, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrGrantAddress) {
				t.Fatalf("error %v is not ErrGrantAddress", err)
			}
		})
	}
}

// The requester connects to a grant at the address the control port was
// reached on, with this side's zone for a link-local one.
func TestGrantDialAddr(t *testing.T) {
	tests := []struct {
		name, host string
		reached    net.Addr
		want       string
	}{
		{"IPv4", "192.168.1.20", &net.TCPAddr{IP: net.ParseIP("192.168.1.20"), Port: 42331}, "192.168.1.20:40001"},
		{"IPv4 reached in its mapped form", "192.168.1.20", &net.TCPAddr{IP: net.ParseIP("::ffff:192.168.1.20"), Port: 42331}, "192.168.1.20:40001"},
		{"global IPv6", "2001:db8::20", &net.TCPAddr{IP: net.ParseIP("2001:db8::20"), Port: 42331}, "[2001:db8::20]:40001"},
		{"link-local without a zone in the grant", "fe80::1", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 42331, Zone: "eth0"}, "[fe80::1%eth0]:40001"},
		{"link-local with the host's zone in the grant", "fe80::1%veth-b", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 42331, Zone: "eth0"}, "[fe80::1%eth0]:40001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := grantAddrMatches(tt.host, tt.reached); err != nil {
				t.Fatal(err)
			}
			if got := grantDialAddr(tt.host, 40001, tt.reached); got != tt.want {
				t.Fatalf("grantDialAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

// hostileHost is a control server whose grants point elsewhere.
type hostileHost struct{ grantHost string }

func (h hostileHost) Catalog(context.Context, control.Peer) ([]control.AppInfo, error) {
	return nil, nil
}
func (h hostileHost) Launch(_ context.Context, _ control.Peer, app string, _ func(string)) (*control.Grant, error) {
	return &control.Grant{Session: "s1", Host: h.grantHost, Port: 22, HostKey: "ssh-ed25519 AAAA", User: "guest", Command: app, Expires: time.Now().Add(time.Minute)}, nil
}
func (h hostileHost) End(context.Context, control.Peer, string) error { return nil }

// Through the real control protocol: a host that grants another machine's
// address (here 127.0.0.2, a listener the test owns) is refused before
// the client connects anywhere, and nothing reaches that address.
func TestRunRefusesGrantForAnotherAddress(t *testing.T) {
	newID := func() *identity.Identity {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		id, err := identity.FromPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	hostID, reqID := newID(), newID()
	// The address the hostile grant names: would anything connect there?
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	touched := make(chan struct{}, 1)
	go func() {
		if c, err := other.Accept(); err == nil {
			c.Close()
			touched <- struct{}{}
		}
	}()
	port := other.Addr().(*net.TCPAddr).Port
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	srv := &control.Server{Identity: hostID.Signer(), Name: "mallory", Handler: hostilePort{hostileHost{"127.0.0.2"}, port}}
	go srv.Serve(ctx, ln)
	x := testenv.StartXvfb(t, os.Getuid(), os.Getgid())
	_, err = Run(ctx, Target{Addr: ln.Addr().String(), Fingerprint: hostID.Fingerprint()}, "xlogo", RunConfig{
		Identity: reqID.Signer(), Name: "alice", Display: x.Display, XAuthority: x.XAuthority,
	})
	if !errors.Is(err, ErrGrantAddress) {
		t.Fatalf("Run = %v, want ErrGrantAddress", err)
	}
	select {
	case <-touched:
		t.Fatal("the client connected to the address the hostile grant named")
	case <-time.After(300 * time.Millisecond):
	}
}

// hostilePort sets the grant's port to the test's listener.
type hostilePort struct {
	hostileHost
	port int
}

func (h hostilePort) Launch(ctx context.Context, p control.Peer, app string, progress func(string)) (*control.Grant, error) {
	g, err := h.hostileHost.Launch(ctx, p, app, progress)
	if g != nil {
		g.Port = h.port
	}
	return g, err
}
