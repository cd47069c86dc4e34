package consent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two apps of the host with the same display name: A (a.desktop, "a")
// and B (b.desktop, "b").
var (
	appA  = Request{Peer: "P", PeerName: "pat", App: "Shared", AppID: "a.desktop", Command: "a"}
	appB  = Request{Peer: "P", PeerName: "pat", App: "Shared", AppID: "b.desktop", Command: "b"}
	appA2 = Request{Peer: "P", PeerName: "pat", App: "Shared", AppID: "a.desktop", Command: "a --other"}
)

// generous rates: these tests prompt more than the default per-peer burst.
var generous = Rate{Burst: 100, Every: time.Millisecond}

// decide asks req and, if it prompts, answers it with a (checking that
// the prompt shows the request's name, ID and command). It returns the
// outcome and whether there was a prompt.
func decide(t *testing.T, e *Engine, req Request, a Answer) (Outcome, bool) {
	t.Helper()
	got := make(chan Outcome, 1)
	go func() { out, _ := e.Ask(context.Background(), req); got <- out }()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case out := <-got:
			return out, false
		case <-deadline:
			t.Fatalf("%+v neither decided nor prompted", req)
		case <-time.After(time.Millisecond):
		}
		for _, p := range e.Pending() {
			if p.Peer != req.Peer {
				continue
			}
			if p.App != req.App || p.AppID != req.AppID || p.Command != req.Command {
				t.Fatalf("prompt %+v for request %+v", p, req)
			}
			if err := e.Answer(p.ID, a); err != nil {
				t.Fatal(err)
			}
			return <-got, true
		}
	}
}

func TestRememberedAllowIsForOneAppAndCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consent.json")
	e, err := New(Config{Store: FileStore{Path: path}, PerPeer: generous, Overall: generous})
	if err != nil {
		t.Fatal(err)
	}
	if out, prompted := decide(t, e, appA, Answer{Allow: true, Remember: true}); !prompted || !out.Allowed {
		t.Fatalf("first request of A: %+v, prompted %v", out, prompted)
	}
	check := func(e *Engine, when string) {
		t.Helper()
		if out, prompted := decide(t, e, appA, Answer{}); prompted || out != (Outcome{Allowed: true, Reason: Remembered}) {
			t.Fatalf("%s: A again: %+v, prompted %v", when, out, prompted)
		}
		// Another app with the same name is not covered.
		if out, prompted := decide(t, e, appB, Answer{}); !prompted || out.Allowed {
			t.Fatalf("%s: B (same name as A): %+v, prompted %v", when, out, prompted)
		}
		// Nor is A once its command changed.
		if out, prompted := decide(t, e, appA2, Answer{}); !prompted || out.Allowed {
			t.Fatalf("%s: A with another command: %+v, prompted %v", when, out, prompted)
		}
	}
	check(e, "remembered")
	// The same after a restart, from the file.
	e2, err := New(Config{Store: FileStore{Path: path}, PerPeer: generous, Overall: generous})
	if err != nil {
		t.Fatal(err)
	}
	check(e2, "after a restart")

	// Allowing the new command replaces the old one's rule.
	if out, prompted := decide(t, e2, appA2, Answer{Allow: true, Remember: true}); !prompted || !out.Allowed {
		t.Fatalf("A with another command, allowed: %+v", out)
	}
	if out, prompted := decide(t, e2, appA, Answer{}); !prompted || out.Allowed {
		t.Fatalf("A with its old command after the new one was allowed: %+v, prompted %v", out, prompted)
	}
	rules := e2.Rules()
	got := rules.Allowed["P"]
	if len(got) != 1 {
		t.Fatalf("allow rules %+v, want the one for the new command", got)
	}
	// It says since when (Settings and `ebrainpool rules` show it).
	if got[0].Since.IsZero() || time.Since(got[0].Since) > time.Minute {
		t.Errorf("allow rule made at %v", got[0].Since)
	}
	got[0].Since = time.Time{}
	if got[0] != (AppRule{ID: "a.desktop", Command: "a --other", Name: "Shared"}) {
		t.Fatalf("allow rules %+v, want the one for the new command", got)
	}
	// Forget by the app's ID.
	e2.Forget("P", "a.desktop")
	if len(e2.Rules().Allowed["P"]) != 0 {
		t.Fatalf("rules after Forget: %+v", e2.Rules())
	}
}

func TestRememberedDenyCoversTheAppWhateverItsCommand(t *testing.T) {
	e, _ := New(Config{PerPeer: generous, Overall: generous})
	if out, prompted := decide(t, e, appA, Answer{Remember: true}); !prompted || out.Allowed {
		t.Fatalf("first request of A: %+v", out)
	}
	for _, req := range []Request{appA, appA2} {
		if out, prompted := decide(t, e, req, Answer{Allow: true}); prompted || out != (Outcome{Reason: Remembered}) {
			t.Fatalf("%s %q after a remembered deny: %+v, prompted %v", req.AppID, req.Command, out, prompted)
		}
	}
	if out, prompted := decide(t, e, appB, Answer{Allow: true}); !prompted || !out.Allowed {
		t.Fatalf("B (same name as A) after A's deny: %+v, prompted %v", out, prompted)
	}
}

// Rules of version 1 (keyed by the app's name): an allow does not keep
// allowing (dropped: the next request asks), a deny keeps denying the
// apps of that name, the block list stays; the file is rewritten as
// version 2 once, the old one kept beside it.
func TestVersion1RulesMigrated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consent.json")
	old := `{"allowed":{"P":["Shared"]},"denied":{"P":["Games"]},"blocked":{"Q":"mallory"}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"migrated", "reloaded"} {
		e, err := New(Config{Store: FileStore{Path: path}, PerPeer: generous, Overall: generous})
		if err != nil {
			t.Fatal(err)
		}
		if out, prompted := decide(t, e, appA, Answer{}); !prompted || out.Allowed {
			t.Fatalf("%s: an app named like a version 1 allow: %+v, prompted %v", when, out, prompted)
		}
		games := Request{Peer: "P", App: "Games", AppID: "games.desktop", Command: "games"}
		if out, prompted := decide(t, e, games, Answer{Allow: true}); prompted || out != (Outcome{Reason: Remembered}) {
			t.Fatalf("%s: an app named like a version 1 deny: %+v, prompted %v", when, out, prompted)
		}
		if out, _ := e.Ask(context.Background(), Request{Peer: "Q", AppID: "a.desktop"}); out.Reason != Blocked {
			t.Fatalf("%s: blocked peer: %+v", when, out)
		}
	}
	b, _ := os.ReadFile(path)
	var saved Rules
	if err := json.Unmarshal(b, &saved); err != nil || saved.Version != RulesVersion || len(saved.Allowed) != 0 ||
		len(saved.Denied["P"]) != 1 || saved.Denied["P"][0] != (AppRule{Name: "Games"}) || saved.Blocked["Q"] != "mallory" {
		t.Fatalf("rules file after the migration: %v %s", err, b)
	}
	if b, err := os.ReadFile(path + ".v1"); err != nil || string(b) != old {
		t.Fatalf("the old file was not kept: %v %q", err, b)
	}
}

func TestNewerRulesVersionRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consent.json")
	os.WriteFile(path, []byte(`{"version":3,"allowed":{}}`), 0o600)
	if _, err := New(Config{Store: FileStore{Path: path}, PerPeer: generous, Overall: generous}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("rules of a newer version: %v", err)
	}
}

func TestRequestNeedsAppID(t *testing.T) {
	e, _ := New(Config{})
	if _, err := e.Ask(context.Background(), Request{Peer: "P", App: "Shared"}); err == nil {
		t.Fatal("a request without the app's ID was asked")
	}
}
