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

func TestSessionsWindow(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 30, 0, 0, time.Local)
	f := newFake()
	f.sessions = []dbusapi.Session{
		{ID: "s1", Direction: "incoming", Peer: "SHA256:bob", PeerName: "bob", App: "GIMP", Since: now.Add(-12 * time.Minute).Unix(), State: "running"},
		{ID: "s2", Direction: "outgoing", Peer: "SHA256:alice", PeerName: "alice", App: "Inkscape", Since: now.Add(-90 * time.Minute).Unix(), State: "running"},
	}
	f.usage = []daemon.SandboxUsage{{Peer: "SHA256:bob", Running: true, Pids: 7, Memory: 120 << 20, CPU: 3 * time.Second}}
	clock := &fakeClock{now.Add(-2 * time.Second)}
	u := newTestUI(t, f, clock)
	u.ShowSessions()
	if in := joined(u.sessions.incoming); !strings.Contains(in, "CPU time 3s, 120 MB, 7 processes") {
		t.Errorf("first look: %q", in)
	}
	// Two seconds later, with one more second of CPU: half a CPU.
	clock.t = now
	f.usage[0].CPU = 4 * time.Second
	u.sessions.refresh()
	in, out := joined(u.sessions.incoming), joined(u.sessions.outgoing)
	for _, tc := range []struct{ where, got, want string }{
		{"incoming", in, "bob runs GIMP"},
		{"incoming", in, "since 10:18 (12 min)"},
		{"incoming", in, "CPU 50%, 120 MB, 7 processes"},
		{"outgoing", out, "Inkscape on alice"},
		{"outgoing", out, "(1h30)"},
	} {
		if !strings.Contains(tc.got, tc.want) {
			t.Errorf("%s lacks %q:\n%s", tc.where, tc.want, tc.got)
		}
	}
	if u.tray.iconState() != trayActive {
		t.Errorf("tray icon %s with sessions running, want active", u.tray.iconState())
	}

	test.Tap(findButton(u.sessions.incoming, "End"))
	if !reflect.DeepEqual(f.ended, []string{"s1"}) {
		t.Errorf("ended = %v", f.ended)
	}
	if got := joined(u.sessions.incoming); !strings.Contains(got, "Nobody is running an app here.") {
		t.Errorf("incoming after End = %q", got)
	}
	test.Tap(findButton(u.sessions.outgoing, "End"))
	if !reflect.DeepEqual(f.ended, []string{"s1", "s2"}) {
		t.Errorf("ended = %v", f.ended)
	}
	if u.tray.iconState() != traySharing {
		t.Errorf("tray icon %s after all ended, want sharing", u.tray.iconState())
	}
}

func TestUsageText(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 30, 0, 0, time.Local)
	before := &cpuSample{cpu: time.Second, at: now.Add(-4 * time.Second)}
	for _, tc := range []struct {
		name string
		info daemon.SandboxUsage
		ok   bool
		prev *cpuSample
		want string
	}{
		{"first look", daemon.SandboxUsage{Memory: 64 << 20, Pids: 3, CPU: 1500 * time.Millisecond}, true, nil, "CPU time 1.5s, 64 MB, 3 processes"},
		{"busy", daemon.SandboxUsage{Memory: 64 << 20, Pids: 3, CPU: 5 * time.Second}, true, before, "CPU 100%, 64 MB, 3 processes"},
		{"idle", daemon.SandboxUsage{Memory: 64 << 20, Pids: 3, CPU: time.Second}, true, before, "CPU 0%, 64 MB, 3 processes"},
		{"restarted sandbox", daemon.SandboxUsage{Memory: 64 << 20, Pids: 3, CPU: 200 * time.Millisecond}, true, before, "CPU time 200ms, 64 MB, 3 processes"},
		{"no figures", daemon.SandboxUsage{Pids: 1, CPU: -1}, true, nil, "CPU unknown, memory unknown, 1 process"},
		{"with its disk use", daemon.SandboxUsage{Memory: 64 << 20, Pids: 3, CPU: time.Second, Disk: 120 << 20, DiskLimit: 2 << 30}, true, before, "CPU 0%, 64 MB, 3 processes, disk 120 of 2048 MB"},
		{"stopped", daemon.SandboxUsage{}, false, nil, "sandbox not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := usageText(tc.info, tc.ok, tc.prev, now); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
