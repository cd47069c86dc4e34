package consent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitPrompt waits until the peer has a pending prompt and returns it.
func waitPrompt(t *testing.T, e *Engine, peer string) Request {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range e.Pending() {
			if r.Peer == peer {
				return r
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no prompt for %s", peer)
	return Request{}
}

// ask runs Ask in the background.
func ask(e *Engine, ctx context.Context, peer, app string) <-chan Outcome {
	ch := make(chan Outcome, 1)
	go func() {
		out, _ := e.Ask(ctx, Request{Peer: peer, PeerName: peer + "-name", App: app, AppID: app, Command: app})
		ch <- out
	}()
	return ch
}

func TestAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer Answer
		want   Outcome
	}{
		{"allow", Answer{Allow: true}, Outcome{Allowed: true, Reason: ByUser}},
		{"deny", Answer{}, Outcome{Reason: ByUser}},
		{"block wins over allow", Answer{Allow: true, Block: true}, Outcome{Reason: ByUser}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := New(Config{})
			got := ask(e, context.Background(), "A", "xeyes")
			r := waitPrompt(t, e, "A")
			if r.PeerName != "A-name" || r.App != "xeyes" || r.ID == "" || r.Deadline.Sub(r.Asked) != 60*time.Second {
				t.Fatalf("prompt %+v", r)
			}
			if err := e.Answer(r.ID, tt.answer); err != nil {
				t.Fatal(err)
			}
			if out := <-got; out != tt.want {
				t.Fatalf("outcome %+v, want %+v", out, tt.want)
			}
			if len(e.Pending()) != 0 {
				t.Fatal("prompt still pending after the answer")
			}
			if err := e.Answer(r.ID, Answer{Allow: true}); !errors.Is(err, ErrUnknownRequest) {
				t.Fatalf("second answer: %v", err)
			}
		})
	}
}

func TestTimeoutMeansDeny(t *testing.T) {
	e, _ := New(Config{Timeout: 50 * time.Millisecond})
	out, err := e.Ask(context.Background(), Request{Peer: "A", App: "xeyes", AppID: "xeyes", Command: "xeyes"})
	if err != nil || out != (Outcome{Reason: TimedOut}) {
		t.Fatalf("outcome %+v %v", out, err)
	}
}

func TestCancel(t *testing.T) {
	e, _ := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	got := ask(e, ctx, "A", "xeyes")
	waitPrompt(t, e, "A")
	cancel()
	if out := <-got; out.Allowed || out.Reason != Canceled {
		t.Fatalf("outcome %+v", out)
	}
}

func TestRememberAndBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consent.json")
	e, err := New(Config{Store: FileStore{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	got := ask(e, context.Background(), "A", "xeyes")
	if err := e.Answer(waitPrompt(t, e, "A").ID, Answer{Allow: true, Remember: true}); err != nil {
		t.Fatal(err)
	}
	<-got
	got = ask(e, context.Background(), "A", "gimp")
	if err := e.Answer(waitPrompt(t, e, "A").ID, Answer{Remember: true}); err != nil {
		t.Fatal(err)
	}
	<-got

	// A new engine (the app restarted) loads the remembered decisions.
	e2, err := New(Config{Store: FileStore{Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		app  string
		want Outcome
	}{{"xeyes", Outcome{Allowed: true, Reason: Remembered}}, {"gimp", Outcome{Reason: Remembered}}} {
		out, _ := e2.Ask(context.Background(), Request{Peer: "A", App: tt.app, AppID: tt.app, Command: tt.app})
		if out != tt.want {
			t.Fatalf("%s after restart: %+v, want %+v", tt.app, out, tt.want)
		}
	}
	if n := len(e2.Pending()); n != 0 {
		t.Fatalf("remembered decisions prompted (%d pending)", n)
	}
	// Another peer is not covered by A's rule.
	got = ask(e2, context.Background(), "B", "xeyes")
	r := waitPrompt(t, e2, "B")
	// Blocking B denies its pending prompt and every later request.
	if err := e2.Block("B", "bob"); err != nil {
		t.Fatal(err)
	}
	if out := <-got; out != (Outcome{Reason: Blocked}) {
		t.Fatalf("blocked peer's pending request: %+v", out)
	}
	if err := e2.Answer(r.ID, Answer{Allow: true}); err == nil {
		t.Fatal("answered a request of a blocked peer")
	}
	if out, _ := e2.Ask(context.Background(), Request{Peer: "B", App: "xeyes", AppID: "xeyes", Command: "xeyes"}); out != (Outcome{Reason: Blocked}) {
		t.Fatalf("blocked peer: %+v", out)
	}
	e2.Unblock("B")
	e2.Forget("A", "xeyes")
	rules := e2.Rules()
	has := func(list []AppRule, id string) bool {
		return anyRule(list, func(r AppRule) bool { return r.ID == id })
	}
	if len(rules.Blocked) != 0 || has(rules.Allowed["A"], "xeyes") || !has(rules.Denied["A"], "gimp") {
		t.Fatalf("rules after unblock/forget: %+v", rules)
	}
}

func TestCorruptStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consent.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	_, err := New(Config{Store: FileStore{Path: path}})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt rules file: %v", err)
	}
}

func TestOnePromptPerPeer(t *testing.T) {
	e, _ := New(Config{})
	ask(e, context.Background(), "A", "xeyes")
	waitPrompt(t, e, "A")
	out, _ := e.Ask(context.Background(), Request{Peer: "A", App: "gimp", AppID: "gimp", Command: "gimp"})
	if out != (Outcome{Reason: Busy}) {
		t.Fatalf("second request while one is pending: %+v", out)
	}
}

func TestRateLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e, _ := New(Config{Now: clock, PerPeer: Rate{Burst: 2, Every: 10 * time.Second}, Overall: Rate{Burst: 3, Every: time.Second}})
	deny := func(peer string) Outcome {
		got := ask(e, context.Background(), peer, "xeyes")
		for {
			select {
			case out := <-got: // refused without a prompt
				return out
			case <-time.After(time.Millisecond):
			}
			for _, r := range e.Pending() {
				if r.Peer == peer {
					e.Answer(r.ID, Answer{})
				}
			}
		}
	}
	if deny("A").Reason != ByUser || deny("A").Reason != ByUser {
		t.Fatal("first two requests of A were not prompted")
	}
	if out := deny("A"); out.Reason != RateLimited {
		t.Fatalf("third request within the burst: %+v", out)
	}
	if out := deny("B"); out.Reason != ByUser {
		t.Fatalf("another peer is limited by A's bucket: %+v", out)
	}
	if out := deny("C"); out.Reason != RateLimited {
		t.Fatalf("overall limit not applied: %+v", out)
	}
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	if out := deny("A"); out.Reason != ByUser {
		t.Fatalf("A after the refill: %+v", out)
	}
}

// A flood of 500 requests from one peer leaves at most one prompt, every
// other request is refused at once, and another peer is still prompted at
// once.
func TestFlood(t *testing.T) {
	e, _ := New(Config{})
	events := e.Watch(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused, slowest := 0, time.Duration(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			out, _ := e.Ask(ctx, Request{Peer: "A", App: "xeyes", AppID: "xeyes", Command: "xeyes"})
			mu.Lock()
			defer mu.Unlock()
			if out.Reason == Busy || out.Reason == RateLimited {
				refused++
				slowest = max(slowest, time.Since(t0))
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := refused
		mu.Unlock()
		if n == 499 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p := e.Pending(); len(p) != 1 {
		t.Fatalf("%d prompts pending after the flood, want 1", len(p))
	}
	mu.Lock()
	if refused != 499 {
		t.Fatalf("%d of 499 extra requests refused", refused)
	}
	t.Logf("499 refused, slowest refusal %s", slowest)
	mu.Unlock()
	t0 := time.Now()
	got := ask(e, context.Background(), "C", "xeyes")
	r := waitPrompt(t, e, "C")
	t.Logf("C prompted %s after asking during the flood", time.Since(t0))
	e.Answer(r.ID, Answer{Allow: true})
	if out := <-got; !out.Allowed {
		t.Fatalf("C: %+v", out)
	}
	prompts := 0
	for len(events) > 0 {
		if ev := <-events; ev.Kind == "prompt" {
			prompts++
		}
	}
	if prompts != 2 {
		t.Fatalf("%d prompt events, want 2 (A once, C once)", prompts)
	}
	cancel()
	wg.Wait()
}

func TestClose(t *testing.T) {
	e, _ := New(Config{})
	got := ask(e, context.Background(), "A", "xeyes")
	waitPrompt(t, e, "A")
	e.Close()
	if out := <-got; out.Allowed || out.Reason != EngineClosing {
		t.Fatalf("pending request at close: %+v", out)
	}
	if out, _ := e.Ask(context.Background(), Request{Peer: "B", App: "x", AppID: "x", Command: "x"}); out.Reason != EngineClosing {
		t.Fatalf("request after close: %+v", out)
	}
}

// BenchmarkRefusal measures how cheaply a flooding peer is turned away.
func BenchmarkRefusal(b *testing.B) {
	e, _ := New(Config{})
	go e.Ask(context.Background(), Request{Peer: "A", App: "x", AppID: "x", Command: "x"})
	for len(e.Pending()) == 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := e.Ask(context.Background(), Request{Peer: "A", App: "x", AppID: "x", Command: "x"}); out.Reason != Busy {
			b.Fatal(out)
		}
	}
}
