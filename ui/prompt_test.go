package ui

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

func request(first bool, deadline time.Time) dbusapi.Request {
	return dbusapi.Request{ID: "req-1", Peer: "SHA256:bob", PeerName: "bob", From: "192.168.1.21",
		App: "GIMP", FirstTime: first, Deadline: deadline.Unix()}
}

func TestPromptShowsWhoAndWhat(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name  string
		first bool
		want  []string
	}{
		{"first time", true, []string{"bob wants to run GIMP on your computer", "bob-laptop (192.168.1.21)", "bx7-k2m9-bob", "First time", "Denying automatically in 30 s"}},
		{"known", false, []string{"Known peer", "Remember for this app", "Block bob", "Allow", "Deny"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.peers = []dbusapi.Peer{peer("bob", "bob-laptop", "verified")}
			clock := &fakeClock{start}
			u := newTestUI(t, f, clock)
			f.events <- daemon.Event{Kind: daemon.EventRequestPending, Request: request(tc.first, start.Add(30*time.Second))}
			f.drain(u)
			p := u.prompts["req-1"]
			if p == nil {
				t.Fatal("no popup for the request")
			}
			got := joined(p.win.Content())
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("popup lacks %q; has:\n%s", w, got)
				}
			}
		})
	}
}

func TestPromptAnswers(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name     string
		remember bool
		button   string
		want     answer
	}{
		{"allow", false, "Allow", answer{"req-1", true, false, false}},
		{"allow and remember", true, "Allow", answer{"req-1", true, true, false}},
		{"deny", false, "Deny", answer{"req-1", false, false, false}},
		{"deny and remember", true, "Deny", answer{"req-1", false, true, false}},
		{"block", false, "Block bob", answer{"req-1", false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			u := newTestUI(t, f, &fakeClock{start})
			u.showPrompt(request(false, start.Add(30*time.Second)))
			p := u.prompts["req-1"]
			if tc.remember {
				test.Tap(p.remember)
			}
			test.Tap(findButton(p.win.Content(), tc.button))
			if !reflect.DeepEqual(f.answers, []answer{tc.want}) {
				t.Errorf("answers = %+v, want %+v", f.answers, tc.want)
			}
			if _, open := u.prompts["req-1"]; open {
				t.Error("popup still open after answering")
			}
		})
	}
}

func TestPromptCountdownDeniesAtZero(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	f := newFake()
	clock := &fakeClock{start}
	u := newTestUI(t, f, clock)
	u.showPrompt(request(true, start.Add(3*time.Second)))
	p := u.prompts["req-1"]
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{0, "in 3 s"},
		{time.Second, "in 2 s"},
		{2500 * time.Millisecond, "in 1 s"},
	} {
		clock.t = start.Add(tc.at)
		p.tick()
		if !strings.Contains(p.countdown.Text, tc.want) {
			t.Errorf("at %v: countdown %q, want %q", tc.at, p.countdown.Text, tc.want)
		}
		if len(f.answers) != 0 {
			t.Fatalf("answered before the deadline: %+v", f.answers)
		}
	}
	clock.t = start.Add(3 * time.Second)
	p.tick()
	if want := []answer{{"req-1", false, false, false}}; !reflect.DeepEqual(f.answers, want) {
		t.Errorf("at zero: answers %+v, want %+v", f.answers, want)
	}
	if _, open := u.prompts["req-1"]; open {
		t.Error("popup still open after the automatic deny")
	}
	p.tick() // a late tick does not answer twice
	if len(f.answers) != 1 {
		t.Errorf("answered %d times", len(f.answers))
	}
}

func TestPromptCountdownRealClock(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.showPrompt(request(false, time.Now().Add(time.Second)))
	p := u.prompts["req-1"]
	deadline := time.Now().Add(5 * time.Second)
	for len(f.answers) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		p.tick()
	}
	if want := []answer{{"req-1", false, false, false}}; !reflect.DeepEqual(f.answers, want) {
		t.Errorf("answers %+v, want %+v", f.answers, want)
	}
}

func TestPromptClosesWhenResolvedElsewhere(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	f := newFake()
	u := newTestUI(t, f, &fakeClock{start})
	u.showPrompt(request(false, start.Add(30*time.Second)))
	f.events <- daemon.Event{Kind: daemon.EventRequestResolved, Request: dbusapi.Request{ID: "req-1"}}
	f.drain(u)
	if len(u.prompts) != 0 {
		t.Error("popup still open after the request was resolved")
	}
	if len(f.answers) != 0 {
		t.Errorf("answered a resolved request: %+v", f.answers)
	}
}

func TestPendingRequestsShownAtStart(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	f := newFake()
	f.pending = []dbusapi.Request{request(false, start.Add(30*time.Second))}
	u := newTestUI(t, f, &fakeClock{start})
	u.Start(t.Context())
	if u.prompts["req-1"] == nil {
		t.Error("a request pending at start has no popup")
	}
}
