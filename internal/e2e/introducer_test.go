package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// An introducer: C (carol, on A's subnet) knows B (bob, on the other
// subnet, added by address there); A marks C as introducer; B appears on
// A as introduced by carol, and A runs B's app after B's user allowed it.
func TestIntroducerAcrossSubnets(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "setpriv", "dbus-send", "avahi-publish")
	bed := testbed.NewWithOptions(t, testbed.Options{Hosts: 3, Subnets: 2, IPv6: true})
	A, B, C := newLANNodes(t, bed, "alice")
	for _, n := range []*lanNode{A, B, C} {
		n.start(t)
	}
	A.waitPeers(t, 5*time.Second, map[string]string{C.fp: ""})
	if r := C.u.Run(t, "peer", "add", "--yes", B.h.IP.String()); r.Code != 0 {
		t.Fatalf("carol adds bob: %s", r)
	}
	time.Sleep(time.Second)
	for _, p := range A.peers(t) {
		if p.Fingerprint == B.fp {
			t.Fatal("A lists B before carol is an introducer")
		}
	}
	if r := A.u.Run(t, "peer", "introducer", "carol"); r.Code != 0 {
		t.Fatalf("peer introducer carol: %s", r)
	}
	t0 := time.Now()
	var by string
	for {
		var ps []struct {
			Fingerprint  string  `json:"fingerprint"`
			IntroducedBy *string `json:"introduced_by"`
		}
		json.Unmarshal([]byte(A.u.MustRun(t, "peers", "--json").Stdout), &ps)
		for _, p := range ps {
			if p.Fingerprint == B.fp && p.IntroducedBy != nil {
				by = *p.IntroducedBy
			}
		}
		if by != "" {
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("B not introduced to A: %s", A.u.MustRun(t, "peers").Stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if by != "carol" {
		t.Fatalf("B introduced by %q, want carol", by)
	}
	t.Logf("B listed on A as introduced by carol %v after A marked her", time.Since(t0).Round(time.Millisecond))
	if out := A.u.MustRun(t, "peers").Stdout; !strings.Contains(out, "introduced by carol") || !strings.Contains(out, "(introducer)") {
		t.Errorf("peers on A:\n%s", out)
	}
	run := startRun(t, A.u, "bob", "xlogo")
	B.u.MustRun(t, "allow", waitPending(t, &B.node))
	took := A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
	t.Logf("window on A %v after B allowed", took.Round(time.Millisecond))
	endOnlySession(t, &A.node, "outgoing", "")
	run.Wait()
	if A.peersTrust(t, B.fp) != "verified" {
		t.Errorf("B is not pinned on A after the session: %+v", A.peers(t))
	}
}
