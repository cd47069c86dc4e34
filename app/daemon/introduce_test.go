package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// An introducer: C knows B (added by address); A marks C as introducer
// and lists B as introduced by C, reaches it (pinning its key on that
// first contact), and forgets it when C is no longer an introducer.
// Nothing is asked of C before it is marked.
func TestIntroducer(t *testing.T) {
	every := introduceEvery
	t.Cleanup(func() { introduceEvery = every }) // after the daemons stopped
	introduceEvery = 100 * time.Millisecond
	a, _ := addedDaemon(t, t.TempDir(), "127.0.0.1:0")
	b, _ := addedDaemon(t, t.TempDir(), "127.0.0.1:0")
	c, _ := addedDaemon(t, t.TempDir(), "127.0.0.1:0")
	for d, name := range map[*Daemon]string{a: "alice", b: "bob", c: "carol"} {
		s := d.Settings()
		s.DisplayName = name
		if err := d.SaveSettings(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	bFP, cFP := b.Identity().Fingerprint(), c.Identity().Fingerprint()
	if _, err := c.AddPeerAddress(ctx, b.ControlAddr().String(), bFP.Short()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddPeerAddress(ctx, c.ControlAddr().String(), cFP.Short()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * introduceEvery)
	if ps := a.Peers(); len(ps) != 1 || ps[0].Fingerprint != string(cFP) {
		t.Fatalf("before C is an introducer A lists %+v, want C only", ps)
	}
	if err := a.SetIntroducer(cFP.Short(), true); err != nil {
		t.Fatal(err)
	}
	var got dbusapi.Peer
	deadline := time.Now().Add(5 * time.Second)
	for got.Fingerprint == "" {
		for _, p := range a.Peers() {
			if p.Fingerprint == string(bFP) {
				got = p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never introduced: %+v", a.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.IntroducedBy != "carol" || got.Name != "bob" || got.Trust != dbusapi.TrustNew {
		t.Fatalf("introduced B = %+v, want bob introduced by carol, new", got)
	}
	for _, p := range a.Peers() {
		if p.Fingerprint == string(cFP) && !p.Introducer {
			t.Errorf("C is not shown as introducer: %+v", p)
		}
	}
	if _, ok := a.pins.Lookup(bFP); ok {
		t.Fatal("B pinned before A connected to it")
	}
	if _, err := a.Apps(ctx, bFP.Short()); err != nil {
		t.Fatalf("A asking the introduced B: %v", err)
	}
	if _, ok := a.pins.Lookup(bFP); !ok {
		t.Fatal("B not pinned after the first contact with its announced key")
	}
	if err := a.SetIntroducer(cFP.Short(), false); err != nil {
		t.Fatal(err)
	}
	if ps := a.Peers(); len(ps) != 1 || ps[0].Fingerprint != string(cFP) {
		t.Fatalf("after C stopped being an introducer A lists %+v", ps)
	}
}
