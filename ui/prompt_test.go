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
			clock := &fakeClock{start}
			u := newTestUI(t, f, clock)
			u.showPrompt(request(false, start.Add(30*time.Second)))
			p := u.prompts["req-1"]
			armNow(p, clock)
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

// The countdown only displays: at zero and after, the popup does not
// answer (the daemon's timeout decides, and its requester is told that
// nobody answered); it closes when the daemon resolves the request.
func TestPromptCountdownNeverAnswers(t *testing.T) {
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
		{3 * time.Second, "No answer in time"},
		{time.Minute, "No answer in time"},
	} {
		t.Run(tc.at.String(), func(t *testing.T) {
			clock.t = start.Add(tc.at)
			p.tick()
			if !strings.Contains(p.countdown.Text, tc.want) {
				t.Errorf("at %v: countdown %q, want %q", tc.at, p.countdown.Text, tc.want)
			}
			if len(f.answers) != 0 {
				t.Fatalf("the popup answered on its own at %v: %+v", tc.at, f.answers)
			}
			if u.prompts["req-1"] == nil {
				t.Fatalf("the popup closed on its own at %v", tc.at)
			}
		})
	}
	f.events <- daemon.Event{Kind: daemon.EventRequestResolved, Request: dbusapi.Request{ID: "req-1"}, Reason: "no answer before the timeout"}
	f.drain(u)
	if u.prompts["req-1"] != nil {
		t.Error("the popup is still open after the daemon resolved the request")
	}
	if len(f.answers) != 0 {
		t.Errorf("answers %+v, want none", f.answers)
	}
}

// With the real clock too: ticks past the deadline send nothing.
func TestPromptCountdownRealClock(t *testing.T) {
	f := newFake()
	u := newTestUI(t, f, nil)
	u.showPrompt(request(false, time.Now().Add(time.Second)))
	p := u.prompts["req-1"]
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		p.tick()
	}
	if len(f.answers) != 0 {
		t.Errorf("answers %+v, want none (the daemon decides)", f.answers)
	}
	if !strings.Contains(p.countdown.Text, "No answer in time") {
		t.Errorf("countdown %q after the deadline", p.countdown.Text)
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
