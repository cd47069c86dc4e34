package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

func fp(t *testing.T) identity.Fingerprint {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := ssh.NewSignerFromKey(k)
	return identity.FingerprintOf(s.PublicKey())
}

func TestResolve(t *testing.T) {
	d := &Daemon{manual: map[identity.Fingerprint]discovery.Peer{}, changed: map[identity.Fingerprint]bool{}, subs: map[chan Event]struct{}{}}
	bob, bob2, carol := fp(t), fp(t), fp(t)
	for _, p := range []discovery.Peer{
		{Fingerprint: bob, Name: "Bob", Host: "bob-laptop.local", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Port: 4000},
		{Fingerprint: bob2, Name: "bob", Host: "other.local", Addresses: []netip.Addr{netip.MustParseAddr("fe80::1"), netip.MustParseAddr("10.0.0.9")}, Port: 4001},
		{Fingerprint: carol, Name: "Carol", Host: "carol.local", Port: 4002},
	} {
		d.manual[p.Fingerprint] = p
	}
	tests := []struct {
		q, want, err string
	}{
		{q: string(carol), want: string(carol)},
		{q: "carol", want: string(carol)},
		{q: "CAROL", want: string(carol)},
		{q: "bob-laptop", want: string(bob)},
		{q: "bob-laptop.local", want: string(bob)},
		{q: string(bob)[:12], want: string(bob)},
		{q: strings.TrimPrefix(string(bob), "SHA256:")[:6], want: string(bob)},
		{q: bob.Short()[:9], want: string(bob)},
		{q: "bob", err: "matches 2 peers"},
		{q: "dave", err: "no peer matches"},
		{q: "SHA", err: "no peer matches"}, // prefixes shorter than 4 never match
		{q: "", err: "no peer given"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			p, err := d.Resolve(tt.q)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve(%q) = %v, %v; want error %q", tt.q, p.Name, err, tt.err)
				}
				return
			}
			if err != nil || string(p.Fingerprint) != tt.want {
				t.Fatalf("Resolve(%q) = %s, %v; want %s", tt.q, p.Fingerprint, err, tt.want)
			}
		})
	}
	// The address used: IPv4 first, link-local IPv6 never without a zone.
	if a, ok := pickAddr(d.manual[bob2]); !ok || a.String() != "10.0.0.9" {
		t.Fatalf("pickAddr = %v %v", a, ok)
	}
	if _, ok := pickAddr(d.manual[carol]); ok {
		t.Fatal("a peer without addresses got one")
	}
}
