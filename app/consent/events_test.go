package consent

import (
	"testing"
	"time"
)

// Every change of the rules is told to watchers (Settings follows them):
// a remembered answer, a block, an unblock, a forget.
func TestRulesChangedEvents(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	events := e.Watch(t.Context())
	next := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Kind == EventRulesChanged {
					return
				}
			case <-deadline:
				t.Fatalf("no rules-changed event after %s", what)
			}
		}
	}
	req := Request{Peer: "P", PeerName: "bob", App: "GIMP", AppID: "gimp.desktop", Command: "gimp"}
	if out, _ := decide(t, e, req, Answer{Allow: true, Remember: true}); !out.Allowed {
		t.Fatalf("allowed and remembered: %+v", out)
	}
	next("an answer remembered")
	for _, tc := range []struct {
		what   string
		change func() error
	}{
		{"a block", func() error { return e.Block("Q", "mallory") }},
		{"an unblock", func() error { return e.Unblock("Q") }},
		{"a forget", func() error { return e.Forget("P", "gimp.desktop") }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			next(tc.what)
		})
	}
}
