package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// Wide-area DNS-SD: B is on another subnet (no mDNS across the router);
// an administrator publishes it in the unicast DNS zone ebp.test (PTR,
// SRV, TXT with v, fp and name); A, browsing ebp.test (--browse-domain),
// lists B and lists its apps. A record whose TXT fingerprint is not the
// key at its address is listed but refused on connect.
func TestWideAreaBrowsing(t *testing.T) {
	testbed.Require(t, "xlogo", "setpriv", "dbus-send", "avahi-publish", "dnsmasq")
	bed := testbed.NewWithOptions(t, testbed.Options{Hosts: 3, Subnets: 2, IPv6: true, DNS: true})
	A, B, C := newLANNodes(t, bed)
	B.start(t)
	C.start(t)
	A.startCmd(t, "daemon", "--log-level", "debug", "--browse-domain", "ebp.test")
	A.waitPeers(t, 5*time.Second, map[string]string{C.fp: ""})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zone := func(extra ...string) []string {
		return append([]string{
			"ptr-record=_ebrainpool._tcp.ebp.test,bob._ebrainpool._tcp.ebp.test",
			"srv-host=bob._ebrainpool._tcp.ebp.test,bob-laptop.ebp.test," + B.port,
			`txt-record=bob._ebrainpool._tcp.ebp.test,"v=1","fp=` + B.fp + `","name=bob"`,
			"host-record=bob-laptop.ebp.test," + B.h.IP.String(),
		}, extra...)
	}
	// B's records, and a record claiming another key at B's address.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherID, err := identity.FromPrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = bed.DNS.SetRecords(ctx, "ebp.test", zone(
		"ptr-record=_ebrainpool._tcp.ebp.test,mallory._ebrainpool._tcp.ebp.test",
		"srv-host=mallory._ebrainpool._tcp.ebp.test,bob-laptop.ebp.test,"+B.port,
		`txt-record=mallory._ebrainpool._tcp.ebp.test,"v=1","fp=`+string(otherID.Fingerprint())+`","name=mallory"`,
	))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var bob, mallory bool
		for _, p := range A.peers(t) {
			bob = bob || (p.Name == "bob" && p.Fingerprint == B.fp)
			mallory = mallory || p.Name == "mallory"
		}
		if bob && mallory {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A lists %+v, want bob and mallory from ebp.test\nDNS log:\n%s", A.peers(t), bed.DNS.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("A listed B through wide-area DNS-SD %v after the records were published", time.Since(t0).Round(time.Millisecond))
	if r := A.u.Run(t, "apps", "bob"); r.Code != 0 || !strings.Contains(r.Stdout, "xlogo") {
		t.Fatalf("apps bob through wide-area: %s", r)
	}
	r := A.u.Run(t, "apps", "mallory")
	if r.Code != cli.ExitUnreachable || !strings.Contains(r.Stderr, "does not match its announced fingerprint") {
		t.Fatalf("apps of a record whose fingerprint is not the key there: %s", r)
	}
}
