package session

import (
	"context"
	"testing"
	"time"
)

// OnSession hears each session start (granted) and end, with whether a
// remembered decision let the peer in (the rig's rules allow it).
func TestHostTellsSessionsStartingAndEnding(t *testing.T) {
	r := newHostRig(t)
	type told struct {
		id      string
		started bool
		byRule  bool
	}
	events := make(chan told, 4)
	r.h.cfg.OnSession = func(s HostSession, started bool) { events <- told{s.ID, started, s.ByRule} }
	g, err := r.launch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) told {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("OnSession not told of %s", what)
		}
		return told{}
	}
	if ev := next("the grant"); ev != (told{g.Session, true, true}) {
		t.Errorf("at the grant: %+v, want started by rule", ev)
	}
	if err := r.h.EndSession(g.Session); err != nil {
		t.Fatal(err)
	}
	if ev := next("the end"); ev.id != g.Session || ev.started {
		t.Errorf("at the end: %+v, want ended", ev)
	}
	r.closeWithin(t, 5*time.Second)
}
