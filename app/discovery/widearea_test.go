package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// Wide-area DNS-SD: a peer an administrator published in a unicast DNS
// domain (PTR, SRV and TXT with v, fp and name) is found by browsing that
// domain through avahi, from another subnet; one with a malformed TXT is
// not.
func TestBrowseDomain(t *testing.T) {
	testbed.Require(t, "dnsmasq")
	bed := testbed.NewWithOptions(t, testbed.Options{Hosts: 2, Subnets: 2, DNS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob, bad := newFingerprint(t), newFingerprint(t)
	err := bed.DNS.SetRecords(ctx, "ebp.test", []string{
		"ptr-record=_ebrainpool._tcp.ebp.test,bob._ebrainpool._tcp.ebp.test",
		"srv-host=bob._ebrainpool._tcp.ebp.test,bob-laptop.ebp.test,42331",
		`txt-record=bob._ebrainpool._tcp.ebp.test,"v=1","fp=` + string(bob) + `","name=bob"`,
		"host-record=bob-laptop.ebp.test," + bed.Host(1).IP.String(),
		"ptr-record=_ebrainpool._tcp.ebp.test,broken._ebrainpool._tcp.ebp.test",
		"srv-host=broken._ebrainpool._tcp.ebp.test,bob-laptop.ebp.test,42332",
		`txt-record=broken._ebrainpool._tcp.ebp.test,"v=1","fp=` + string(bad)[:20] + `","name=broken"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	found := make(chan discovery.Peer, 16)
	svc, err := discovery.New(discovery.Options{
		Dial:          func(ctx context.Context) (*dbus.Conn, error) { return bed.Host(2).DialBus(ctx) },
		Self:          discovery.Announcement{Fingerprint: newFingerprint(t), Name: "alice"},
		BrowseDomains: []string{"ebp.test"},
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent: func(ev discovery.Event) {
			if ev.Kind != discovery.PeerRemoved {
				found <- ev.Peer
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(runCtx) }()
	defer func() { stop(); <-done }()
	start := time.Now()
	select {
	case p := <-found:
		if p.Fingerprint != bob || p.Name != "bob" || p.Port != 42331 || len(p.Addresses) != 1 || p.Addresses[0] != bed.Host(1).IP {
			t.Fatalf("found %v, want bob at %s:42331", p, bed.Host(1).IP)
		}
		t.Logf("found bob in ebp.test %v after browsing started", time.Since(start).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatalf("bob was not found in ebp.test; DNS log:\n%s", bed.DNS.Log())
	}
	time.Sleep(time.Second)
	for _, p := range svc.Peers() {
		if p.Fingerprint != bob {
			t.Errorf("listed %v (a malformed TXT)", p)
		}
	}
}
