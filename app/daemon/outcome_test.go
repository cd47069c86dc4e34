package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// endpointSandboxes stands in for the host's sandbox manager: the
// "sandbox" is this process, and ServeConn runs the real endpoint on the
// arguments session.EndpointHandoff gives guest-sshd (with its claim
// descriptor). Only for tests: the app runs unconfined.
type endpointSandboxes struct {
	root     string
	startErr error
}

func (e *endpointSandboxes) Start(context.Context, string) error { return e.startErr }
func (e *endpointSandboxes) RootfsPath(string) string            { return filepath.Join(e.root, "rootfs") }
func (e *endpointSandboxes) StopWhenIdle(ctx context.Context, _ string, _, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

func (e *endpointSandboxes) ServeConn(ctx context.Context, peer string, conn *net.TCPConn, spec sandbox.ExecSpec, grace time.Duration) (int, error) {
	a := spec.Args // EXE guest-sshd --host-key P --authorized-key K --claim-fd 2 -- ARGV
	if len(a) < 10 || a[1] != "guest-sshd" {
		return 2, fmt.Errorf("unexpected endpoint arguments %q", a)
	}
	signer, err := tunnel.LoadOrCreateHostKey(filepath.Join(e.root, "rootfs", a[3]))
	if err != nil {
		return 2, err
	}
	key, err := tunnel.ParseAuthorizedKey(a[5])
	if err != nil {
		return 2, err
	}
	x11 := filepath.Join(e.root, "x11")
	err = tunnel.ServeEndpoint(ctx, conn, tunnel.EndpointConfig{
		HostKey: signer, AuthorizedKey: key, Command: a[9:], Env: []string{"PATH=" + os.Getenv("PATH")}, X11Dir: x11,
		Claim: tunnel.ClaimOver(spec.Stderr, 5*time.Second), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 1, nil
	}
	return 0, nil
}

// Every way a launch ends reaches the requester's LaunchFinished as its
// own Outcome: two daemons, the requester's real launch (display check,
// control, SSH with X11 forwarding) against the host's real consent and
// forward, the host's sandbox replaced by endpointSandboxes.
func TestLaunchOutcomes(t *testing.T) {
	x := testenv.StartXvfb(t, 0, 0)
	sb := &endpointSandboxes{root: t.TempDir()}
	host := runTestDaemon(t, func(d *Daemon) {
		// Prompts as often as the cases ask, and unanswered ones denied
		// after 5s (the shortest the settings allow).
		d.consent.Close()
		eng, err := consent.New(consent.Config{Timeout: 5 * time.Second,
			PerPeer: consent.Rate{Burst: 100, Every: time.Millisecond}, Overall: consent.Rate{Burst: 100, Every: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		d.consent = eng
		d.host = d.newHost(sb)
	})
	apps := filepath.Join(host.opts.AppDirs[0], "applications")
	for id, exec := range map[string]string{"sleeper": "/bin/sleep 30", "three": `/bin/sh -c "exit 3"`} {
		entry := fmt.Sprintf("[Desktop Entry]\nType=Application\nName=%s\nExec=%s\n", id, exec)
		if err := os.WriteFile(filepath.Join(apps, id+".desktop"), []byte(entry), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := host.SetShared(id, true); err != nil {
			t.Fatal(err)
		}
	}
	host.mu.Lock()
	host.apps = appCache{} // rescan now
	host.mu.Unlock()

	req := newTestDaemon(t, Options{Display: x.Display, XAuthority: x.XAuthority})
	reqCtx, stopReq := context.WithCancel(context.Background())
	reqRan := make(chan error, 1)
	go func() { reqRan <- req.Run(reqCtx) }()
	defer func() {
		stopReq()
		<-reqRan
	}()
	waitServing(t, req)
	req.AddPeer(discovery.Peer{Fingerprint: host.Identity().Fingerprint(), Name: "bob",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: uint16(host.ControlAddr().Port)})

	// answer is how the host's user answers the next prompt.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answer := make(chan string, 1)
	go func() {
		for ev := range host.Events(ctx) {
			if ev.Kind != EventRequestPending {
				continue
			}
			switch <-answer {
			case "allow":
				host.AnswerFull(ev.Request.ID, true, false, false)
			case "deny":
				host.AnswerFull(ev.Request.ID, false, false, false)
			}
		}
	}()

	tests := []struct {
		name    string
		app     string
		answer  string                        // allow, deny or none (nobody answers)
		before  func(t *testing.T)            // changes the host before the launch
		running func(t *testing.T, id string) // once the app runs
		want    dbusapi.Outcome
		exit    int
	}{
		{name: "the app exits", app: "three", answer: "allow", want: dbusapi.OutcomeExited, exit: 3},
		{name: "denied", app: "three", answer: "deny", want: dbusapi.OutcomeDenied, exit: -1},
		{name: "nobody answers", app: "three", answer: "none", want: dbusapi.OutcomeNoAnswer, exit: -1},
		{name: "not shared", app: "nope", want: dbusapi.OutcomeNotShared, exit: -1},
		{name: "sharing off", app: "three", want: dbusapi.OutcomeSharingOff, exit: -1,
			before: func(t *testing.T) {
				s := host.Settings()
				s.Sharing = false
				host.SaveSettings(s)
				t.Cleanup(func() { s.Sharing = true; host.SaveSettings(s) })
			}},
		{name: "the host cannot limit sandboxes", app: "three", answer: "allow", want: dbusapi.OutcomeNoLimits, exit: -1,
			before: func(t *testing.T) {
				sb.startErr = fmt.Errorf("%w: no systemd user manager", sandbox.ErrNoLimits)
				t.Cleanup(func() { sb.startErr = nil })
			}},
		{name: "the sandbox fails", app: "three", answer: "allow", want: dbusapi.OutcomeSandboxFailed, exit: -1,
			before: func(t *testing.T) {
				sb.startErr = errors.New("container is not running after start")
				t.Cleanup(func() { sb.startErr = nil })
			}},
		{name: "ended here", app: "sleeper", answer: "allow", want: dbusapi.OutcomeEnded, exit: -1,
			running: func(t *testing.T, id string) {
				if err := req.EndSession(id); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "ended by the host", app: "sleeper", answer: "allow", want: dbusapi.OutcomeEndedByHost, exit: -1,
			running: func(t *testing.T, id string) {
				for _, s := range host.Sessions() {
					if s.Direction == dbusapi.DirectionIncoming {
						if err := host.EndSession(s.ID); err != nil {
							t.Fatal(err)
						}
					}
				}
			}},
		{name: "blocked", app: "three", want: dbusapi.OutcomeBlocked, exit: -1,
			before: func(t *testing.T) {
				fp := string(req.Identity().Fingerprint())
				host.consent.Block(fp, "requester")
				t.Cleanup(func() { host.consent.Unblock(fp) })
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t)
			}
			select {
			case <-answer: // an answer no prompt took
			default:
			}
			if tc.answer != "" {
				answer <- tc.answer
			}
			events := req.Events(ctx)
			id, err := req.Launch("bob", tc.app)
			if err != nil {
				t.Fatal(err)
			}
			ev := waitFinished(t, events, id, func(stage dbusapi.Stage) {
				if stage == dbusapi.StageRunning && tc.running != nil {
					tc.running(t, id)
				}
			})
			if ev.Outcome != tc.want || ev.Exit != tc.exit {
				t.Errorf("LaunchFinished: outcome %q exit %d (%q), want %q exit %d", ev.Outcome, ev.Exit, ev.Err, tc.want, tc.exit)
			}
			if tc.want != dbusapi.OutcomeExited && ev.Err == "" {
				t.Errorf("LaunchFinished %q without a message", ev.Outcome)
			}
		})
	}

	// When Run ends, it ends the launches it started and waits for them:
	// their LaunchFinished comes before Run returns, and later launches
	// are refused.
	t.Run("Run ends with a launch running", func(t *testing.T) {
		answer <- "allow"
		events := req.Events(ctx)
		id, err := req.Launch("bob", "sleeper")
		if err != nil {
			t.Fatal(err)
		}
		for running := false; !running; {
			select {
			case ev := <-events:
				running = ev.Launch == id && ev.Kind == EventLaunchProgress && ev.Stage == dbusapi.StageRunning
			case <-time.After(20 * time.Second):
				t.Fatal("the launch does not run")
			}
		}
		stopReq()
		select {
		case <-reqRan:
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return")
		}
		reqRan <- nil // for the deferred stop
		// Published before Run returned: already in the subscription.
		var finished *Event
		for finished == nil && len(events) > 0 {
			if ev := <-events; ev.Launch == id && ev.Kind == EventLaunchFinished {
				finished = &ev
			}
		}
		switch {
		case finished == nil:
			t.Fatal("Run returned before its launch had finished")
		case finished.Outcome != dbusapi.OutcomeEnded:
			t.Errorf("the launch Run ended: outcome %q (%s), want %q", finished.Outcome, finished.Err, dbusapi.OutcomeEnded)
		}
		if _, err := req.Launch("bob", "three"); err == nil {
			t.Error("a launch after Run returned was accepted")
		}
	})
}

// waitFinished waits for launch id's LaunchFinished, calling stage with
// each progress.
func waitFinished(t *testing.T, events <-chan Event, id string, stage func(dbusapi.Stage)) Event {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Launch != id {
				continue
			}
			switch ev.Kind {
			case EventLaunchProgress:
				stage(ev.Stage)
			case EventLaunchFinished:
				return ev
			}
		case <-timeout:
			t.Error("no LaunchFinished within 30s")
			return Event{}
		}
	}
}

// waitServing waits until Run serves (launches are accepted).
func waitServing(t *testing.T, d *Daemon) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		d.mu.Lock()
		ok := d.launches.ctx != nil
		d.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Run does not serve")
		}
	}
}
