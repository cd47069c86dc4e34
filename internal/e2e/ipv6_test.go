package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// An IPv6-only LAN (link-local addresses only, no IPv4): the hosts
// discover each other, A runs B's app through the grant's forward on
// B's link-local address (listening with its interface as zone, reached
// with A's), and the window opens on A.
func TestIPv6OnlyLAN(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "setpriv", "dbus-send", "avahi-publish")
	bed := testbed.NewWithOptions(t, testbed.Options{Hosts: 3, IPv6: true, IPv6Only: true})
	A, B, C := newLANNodes(t, bed, "alice")
	for _, n := range []*lanNode{A, B, C} {
		n.start(t)
	}
	took := A.waitPeers(t, 10*time.Second, map[string]string{B.fp: "", C.fp: ""})
	t.Logf("A listed B and C over IPv6 %v after the daemons started", took.Round(time.Millisecond))
	for _, p := range A.peers(t) {
		if !strings.HasPrefix(p.Address, "fe80::") || !strings.Contains(p.Address, "%") {
			t.Errorf("peer %s listed at %q, want a link-local address with its zone", p.Name, p.Address)
		}
	}
	run := startRun(t, A.u, "bob", "xlogo")
	B.u.MustRun(t, "allow", waitPending(t, &B.node))
	win := A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	t.Logf("window on A %v after B allowed", win.Round(time.Millisecond))
	endOnlySession(t, &A.node, "outgoing", "")
	run.Wait()

	// Added by its link-local address with the zone (C's interface).
	addr := "[" + B.h.IP.String() + "%" + testbed.Iface + "]"
	r := C.u.Run(t, "peer", "add", "--yes", addr)
	if r.Code != 0 || !strings.Contains(r.Stdout, `"bob"`) || !strings.Contains(r.Stdout, addr+":42331") {
		t.Fatalf("peer add %s: %s", addr, r)
	}
	if r := C.u.Run(t, "apps", "bob"); r.Code != 0 || !strings.Contains(r.Stdout, "xlogo") {
		t.Fatalf("apps of the peer added by its link-local address: %s", r)
	}
}
