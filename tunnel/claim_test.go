package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// claimEndpointEnv switches the test binary into an endpoint that reports
// its authentication on descriptor 2, as guest-sshd --claim-fd 2 does.
// It is checked in init, before TestMain.
const claimEndpointEnv = "EBP_TUNNEL_TEST_CLAIM_ENDPOINT"

func init() {
	if spec := os.Getenv(claimEndpointEnv); spec != "" {
		os.Exit(claimEndpointMain(spec))
	}
}

func claimEndpointMain(specJSON string) int {
	var spec endpointSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	signer, err := LoadOrCreateHostKey(spec.HostKey)
	if err != nil {
		return 2
	}
	key, err := ParseAuthorizedKey(spec.AuthorizedKey)
	if err != nil {
		return 2
	}
	conn, err := StdioConn()
	if err != nil {
		return 2
	}
	err = ServeEndpoint(ctx, conn, EndpointConfig{
		HostKey: signer, AuthorizedKey: key, Command: spec.Command, Env: spec.Env,
		HandshakeTimeout: spec.Handshake,
		Claim:            ClaimOver(os.NewFile(2, "claim"), 5*time.Second),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)), // stderr is the claim
	})
	if err != nil {
		return 1
	}
	return 0
}

// claimRig is a forward allowing several attempts whose Handoff starts an
// endpoint process per connection, with the claim protocol on its stderr
// (ServeClaimed), as session.EndpointHandoff does through the sandbox.
type claimRig struct {
	fwd      *Forward
	hostKey  keyPair
	client   keyPair
	sessions atomic.Int32 // connections that became the session
	started  atomic.Int32 // endpoint processes started
}

func newClaimRig(t *testing.T, command []string, handshake time.Duration) *claimRig {
	t.Helper()
	dir := t.TempDir()
	r := &claimRig{hostKey: newKeyPair(t, dir, "host_key"), client: newKeyPair(t, dir, "id_ed25519")}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(endpointSpec{
		HostKey: r.hostKey.path, AuthorizedKey: authorizedLine(r.client.signer.PublicKey()),
		Command: command, Handshake: handshake, Env: []string{"PATH=" + os.Getenv("PATH")},
	})
	h := HandoffFunc(func(ctx context.Context, conn *net.TCPConn) error {
		return ServeClaimed(ctx, func(claim *os.File) error {
			f, err := conn.File()
			if err != nil {
				return err
			}
			defer f.Close()
			cmd := exec.Command(self)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir, claimEndpointEnv + "=" + string(spec)}
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, claim
			if err := cmd.Start(); err != nil {
				return err
			}
			r.started.Add(1)
			f.Close()
			stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
			defer stop()
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("endpoint: %w", err)
			}
			return nil
		}, func() { r.sessions.Add(1) })
	})
	r.fwd, err = OpenForward(context.Background(), ForwardConfig{
		ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1),
		IdleTimeout: 20 * time.Second, Handoff: h, Attempts: DefaultAuthAttempts, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fwd.Close() })
	return r
}

func (r *claimRig) run(key keyPair, command string) (int, error) {
	return RunApp(context.Background(), ClientConfig{
		Addr: r.fwd.Addr().String(), HostKey: r.hostKey.signer.PublicKey(), Identity: key.signer,
		Command: command, NoX11: true, HandshakeTimeout: 10 * time.Second,
	})
}

// A connection that fails SSH authentication does not use up the grant:
// the rightful requester still gets its one session; only an
// authenticated connection is the session, and failed attempts are bounded.
func TestForwardCountsOnlyAuthenticatedSessions(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *claimRig)
	}{
		{"wrong key, then the right key", func(t *testing.T, r *claimRig) {
			other := newKeyPair(t, t.TempDir(), "other")
			if _, err := r.run(other, "true"); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("wrong key: %v, want an authentication error", err)
			}
			if st, err := r.run(r.client, "true"); err != nil || st != 0 {
				t.Fatalf("right key after a wrong one: status %d, %v", st, err)
			}
			waitDone(t, r.fwd, 5*time.Second)
			if err := r.fwd.Err(); err != nil {
				t.Errorf("forward result %v, want nil (a clean session)", err)
			}
			if n := r.sessions.Load(); n != 1 {
				t.Errorf("%d sessions, want 1", n)
			}
			if refusedQuickly(t, r.fwd.Addr().String(), "127.0.0.1", time.Second) == false {
				t.Error("a connection after the session was not refused")
			}
		}},
		{"three wrong keys close the grant", func(t *testing.T, r *claimRig) {
			other := newKeyPair(t, t.TempDir(), "other")
			for i := 0; i < DefaultAuthAttempts; i++ {
				if _, err := r.run(other, "true"); err == nil {
					t.Fatalf("wrong key attempt %d succeeded", i+1)
				}
			}
			waitDone(t, r.fwd, 5*time.Second)
			if !errors.Is(r.fwd.Err(), ErrTooManyAttempts) {
				t.Errorf("forward result %v, want ErrTooManyAttempts", r.fwd.Err())
			}
			if _, err := r.run(r.client, "true"); err == nil {
				t.Error("the right key was served after the attempts ran out")
			}
			if n := r.sessions.Load(); n != 0 {
				t.Errorf("%d sessions, want 0", n)
			}
		}},
		{"a stalled connection does not hold the requester back", func(t *testing.T, r *claimRig) {
			stalled, err := net.Dial("tcp", r.fwd.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer stalled.Close()
			stalled.Write([]byte("SSH-2.0-slowpoke\r\n")) // and then nothing
			for deadline := time.Now().Add(5 * time.Second); r.started.Load() < 1 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			start := time.Now()
			if st, err := r.run(r.client, "true"); err != nil || st != 0 {
				t.Fatalf("right key beside a stalled connection: status %d, %v", st, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the session waited %v for the stalled connection", d)
			}
			// The stalled connection ends with the session that won.
			if closed, _ := closedWithin(stalled, 5*time.Second); !closed {
				t.Error("the stalled connection was kept open after another became the session")
			}
			waitDone(t, r.fwd, 5*time.Second)
		}},
		{"a second authenticated connection is refused", func(t *testing.T, r *claimRig) {
			done := make(chan error, 1)
			go func() { _, err := r.run(r.client, "sleep 3"); done <- err }()
			for deadline := time.Now().Add(5 * time.Second); r.sessions.Load() < 1 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if r.sessions.Load() != 1 {
				t.Fatal("the first connection did not become the session")
			}
			if _, err := r.run(r.client, "sleep 3"); err == nil {
				t.Error("a second connection with the right key was served")
			}
			if err := <-done; err != nil {
				t.Errorf("the first session: %v", err)
			}
			if n := r.sessions.Load(); n != 1 {
				t.Errorf("%d sessions, want 1", n)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			command := []string{"true"}
			if strings.Contains(tc.name, "second") {
				command = []string{"sleep", "3"}
			}
			tc.run(t, newClaimRig(t, command, 3*time.Second))
		})
	}
}

// An endpoint whose forward is gone after it granted the claim (the host's
// daemon killed: the last descriptor of its end of the claim socket
// closed) ends the session, and the app with it: nothing of the session
// runs on without the host that granted it.
func TestEndpointEndsWhenItsForwardIsGone(t *testing.T) {
	dir := t.TempDir()
	hostKey, client := newKeyPair(t, dir, "host_key"), newKeyPair(t, dir, "id_ed25519")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	forward, endpoint := os.NewFile(uintptr(fds[0]), "claim"), os.NewFile(uintptr(fds[1]), "claim-endpoint")
	defer forward.Close()
	defer endpoint.Close()
	pidFile := dir + "/app.pid"
	argv := []string{"sh", "-c", "echo $$ > " + pidFile + "; exec sleep 60"}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		served <- ServeEndpoint(context.Background(), c, EndpointConfig{
			HostKey: hostKey.signer, AuthorizedKey: client.signer.PublicKey(), Command: argv,
			Env: []string{"PATH=" + os.Getenv("PATH")}, Claim: ClaimOver(endpoint, 5*time.Second), Logger: testLogger(t),
		})
	}()
	go func() { // the forward grants the claim
		var b [1]byte
		if _, err := forward.Read(b[:]); err == nil && b[0] == claimAsk {
			forward.Write([]byte{claimGranted})
		}
	}()
	ran := make(chan error, 1)
	go func() {
		_, err := RunApp(context.Background(), ClientConfig{
			Addr: ln.Addr().String(), HostKey: hostKey.signer.PublicKey(), Identity: client.signer,
			Command: ShellJoin(argv), NoX11: true, HandshakeTimeout: 10 * time.Second,
		})
		ran <- err
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the app did not start")
		}
		b, _ := os.ReadFile(pidFile)
		fmt.Sscan(string(b), &pid)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-served:
		t.Fatalf("the session ended before its forward went: %v", err)
	default:
	}
	forward.Close() // the host's daemon dies
	for _, w := range []struct {
		what string
		ch   chan error
	}{{"the endpoint", served}, {"the client", ran}} {
		select {
		case err := <-w.ch:
			t.Logf("%s returned: %v", w.what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still serves 10 s after the forward went", w.what)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the app (pid %d) still runs after its session ended", pid)
		}
	}
}

// What an endpoint process writes on the claim descriptor instead of a
// claim comes back in ServeClaimed's error: a stage's report as a
// StageError of one printable line, anything else as text.
func TestServeClaimedReports(t *testing.T) {
	tests := []struct {
		name, wrote string
		stage, want string // a stage's report and the StageError's message; "" for none
		said        string // in the error otherwise
	}{
		{"a stage's report", "", "guest-mount: \"x\" is not a folder", "guest-mount: \"x\" is not a folder", ""},
		{"control characters and lines dropped", "", "a\x1b[31m b\nc\n", "a[31m b c", ""},
		{"an endpoint's error", "ebrainpool guest-sshd: ssh handshake failed", "", "", "it said: \"ebrainpool guest-sshd: ssh handshake failed\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ServeClaimed(context.Background(), func(claim *os.File) error {
				if tc.stage != "" {
					ReportStageFailure(claim, errors.New(tc.stage))
				} else {
					claim.WriteString(tc.wrote)
				}
				return errors.New("endpoint exited with status 1")
			}, nil)
			if !errors.Is(err, ErrNotAuthenticated) {
				t.Errorf("err %v, want ErrNotAuthenticated", err)
			}
			var se *StageError
			switch {
			case tc.stage != "":
				if !errors.As(err, &se) || se.Message != tc.want {
					t.Errorf("err %v, want a StageError %q", err, tc.want)
				}
			case errors.As(err, &se):
				t.Errorf("err %v: a StageError from an endpoint's text", err)
			case !strings.Contains(err.Error(), tc.said):
				t.Errorf("err %v, want %q in it", err, tc.said)
			}
		})
	}
}
