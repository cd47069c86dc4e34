package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// addedPeerJSON is an entry of `ebrainpool peers --json` with how a peer
// added by address answers.
type addedPeerJSON struct {
	Fingerprint      string  `json:"fingerprint"`
	ShortFingerprint string  `json:"short_fingerprint"`
	Name             string  `json:"name"`
	Trust            string  `json:"trust"`
	Added            *string `json:"added"`
	Reach            *string `json:"reach"`
	LastSeen         *string `json:"last_seen"`
}

func (n *lanNode) addedPeers(t *testing.T) []addedPeerJSON {
	t.Helper()
	r := n.u.Run(t, "peers", "--json")
	var ps []addedPeerJSON
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &ps) != nil {
		return nil
	}
	return ps
}

// Peers on another subnet: A (alice) and C (carol) on one subnet, B (bob)
// on another, joined by a router that forwards unicast but not multicast.
// A and B do not discover each other; `peer add` of B's address from A
// shows B's short fingerprint and pins it on confirmation, A runs B's app;
// after A's restart B is still listed; when another key answers at B's
// address it is refused as a key change.
func TestPeersOnOtherSubnets(t *testing.T) {
	testbed.Require(t, "xlogo", "xwininfo", "setpriv", "dbus-send", "avahi-publish")
	bed := testbed.NewWithOptions(t, testbed.Options{Hosts: 3, Subnets: 2, IPv6: true})
	A, B, C := newLANNodes(t, bed, "alice")
	for _, n := range []*lanNode{A, B, C} {
		n.start(t)
	}
	if B.port != "42331" {
		t.Errorf("B listens on port %s, want the default 42331", B.port)
	}
	bAddr := B.h.IP.String()

	t.Run("A and B do not discover each other", func(t *testing.T) {
		A.waitPeers(t, 5*time.Second, map[string]string{C.fp: ""})
		time.Sleep(2 * time.Second) // as long again as C took, and more
		for _, p := range A.peers(t) {
			if p.Fingerprint == B.fp {
				t.Fatalf("A discovered B across the router: %+v", A.peers(t))
			}
		}
		for _, p := range B.peers(t) {
			if p.Fingerprint == A.fp {
				t.Fatalf("B discovered A across the router: %+v", B.peers(t))
			}
		}
	})

	t.Run("peer add shows B's short fingerprint and pins it on confirmation", func(t *testing.T) {
		bShort := B.u.MustRun(t, "id", "--json").Stdout
		var id struct {
			Short string `json:"short_fingerprint"`
		}
		json.Unmarshal([]byte(bShort), &id)
		if r := A.u.Run(t, "peer", "add", bAddr); r.Code != cli.ExitUsage || !strings.Contains(r.Stderr, "--yes") {
			t.Fatalf("peer add without a terminal or --yes: %s", r)
		}
		t0 := time.Now()
		r := A.u.Run(t, "peer", "add", "--fingerprint", id.Short, bAddr)
		added := time.Since(t0)
		if r.Code != 0 || !strings.Contains(r.Stdout, id.Short) || !strings.Contains(r.Stdout, `"bob"`) {
			t.Fatalf("peer add: %s", r)
		}
		apps := A.u.Run(t, "apps", "bob")
		listed := time.Since(t0)
		if apps.Code != 0 || !strings.Contains(apps.Stdout, "xlogo") {
			t.Fatalf("apps bob after peer add: %s", apps)
		}
		t.Logf("peer add %s: added in %v, its apps listed %v after the add started", bAddr, added.Round(time.Millisecond), listed.Round(time.Millisecond))
		if A.peersTrust(t, B.fp) != "verified" {
			t.Fatalf("B on A after the add: %+v", A.addedPeers(t))
		}
	})

	t.Run("A runs B's app", func(t *testing.T) {
		run := startRun(t, A.u, "bob", "xlogo")
		B.u.MustRun(t, "allow", waitPending(t, &B.node))
		took := A.x.WaitWindow(t, "xlogo", true, 30*time.Second)
		t.Logf("window on A %s after B allowed", took.Round(time.Millisecond))
		endOnlySession(t, &A.node, "outgoing", "")
		run.Wait()
	})

	t.Run("after A's restart B is still listed and reachable", func(t *testing.T) {
		A.stop()
		A.start(t)
		deadline := time.Now().Add(10 * time.Second)
		for {
			var b *addedPeerJSON
			ps := A.addedPeers(t)
			for i := range ps {
				if ps[i].Fingerprint == B.fp {
					b = &ps[i]
				}
			}
			if b != nil && b.Added != nil && *b.Added == bAddr+":42331" && b.Reach != nil && *b.Reach == "reachable" && b.LastSeen != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B after A's restart: %+v", ps)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("another key at B's address is refused as key changed", func(t *testing.T) {
		B.stop()
		key := filepath.Join(B.u.Home, ".config", "ebrainpool", "identity_ed25519")
		if err := os.Rename(key, key+".old"); err != nil {
			t.Fatal(err)
		}
		oldFP := B.fp
		B.start(t) // a new identity at the same address
		if B.fp == oldFP {
			t.Fatal("B kept its key")
		}
		r := A.u.Run(t, "run", "bob", "xlogo")
		if r.Code != cli.ExitUnreachable || !strings.Contains(r.Stderr, "key changed") {
			t.Fatalf("run on the changed key: %s", r)
		}
		if r := A.u.Run(t, "peer", "add", "--yes", bAddr); r.Code == 0 || !strings.Contains(r.Stderr, "key changed") {
			t.Fatalf("peer add of the address with another key: %s", r)
		}
		if A.peersTrust(t, oldFP) != "changed" {
			t.Fatalf("B on A: %+v", A.addedPeers(t))
		}
		if p := B.u.MustRun(t, "pending", "--json").Stdout; strings.Contains(p, "alice") {
			t.Fatalf("the new key was asked anything: %s", p)
		}
	})
}
