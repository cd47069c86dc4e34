package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// waitDone waits for the forward to finish.
// windowUntilCancel runs a client session (run) until xlogo's window is on
// x, then cancels it: run must end with context.Canceled, the window must
// go and the rig's forward must be done.
func windowUntilCancel(t *testing.T, x *xvfb, r *rig, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- run(ctx) }()
	x.waitWindow(t, "xlogo", true, 15*time.Second)
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("session after cancel: %v, want context.Canceled", err)
	}
	x.waitWindow(t, "xlogo", false, 10*time.Second)
	waitDone(t, r.fwd, 10*time.Second)
}

func waitDone(tb testing.TB, f *Forward, timeout time.Duration) {
	tb.Helper()
	select {
	case <-f.Done():
	case <-time.After(timeout):
		tb.Fatalf("forward %s not done after %v", f.Addr(), timeout)
	}
}

// dialSSH connects a Go SSH client to the rig from localIP.
func dialSSH(tb testing.TB, r *rig, localIP string, key ssh.Signer) (*ssh.Client, error) {
	tb.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c, err := d.Dial("tcp", r.fwd.Addr().String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(c, r.fwd.Addr().String(), &ssh.ClientConfig{
		User: GuestUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(r.hostKey.signer.PublicKey()),
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// refusedQuickly dials addr from localIP and reports whether the
// connection is refused: reset during connect, or closed by the server
// without a byte within timeout.
func refusedQuickly(tb testing.TB, addr, localIP string, timeout time.Duration) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return true
	}
	defer c.Close()
	closed, b := closedWithin(c, timeout)
	return closed && len(b) == 0
}

// closedWithin reports whether the server closes conn within timeout,
// and what it sent before.
func closedWithin(conn net.Conn, timeout time.Duration) (bool, []byte) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(io.LimitReader(conn, 1<<16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, b
	}
	return true, b
}

func TestOpenSSHClientToEndpoint(t *testing.T) {
	x := startXvfb(t)
	r := newRig(t, rigOptions{command: []string{"xlogo"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := r.sshCommand(t, ctx, GuestUser, []string{"-X"}, "xlogo")
	cmd.Env = x.env()
	cmd.Stdout = &logWriter{tb: t, prefix: "ssh stdout: "}
	cmd.Stderr = &logWriter{tb: t, prefix: "ssh: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	x.waitWindow(t, "xlogo", true, 15*time.Second)
	// End the session from the requester's side.
	cmd.Process.Kill()
	cmd.Wait()
	x.waitWindow(t, "xlogo", false, 10*time.Second)
	waitDone(t, r.fwd, 10*time.Second)
}

func TestGoClientToStockSSHD(t *testing.T) {
	x := startXvfb(t)
	t.Run("window", func(t *testing.T) {
		r := newRig(t, rigOptions{sshd: true})
		cfg := r.clientConfig(x, "xlogo")
		cfg.User = "root"
		windowUntilCancel(t, x, r, func(ctx context.Context) error {
			_, err := RunApp(ctx, cfg)
			return err
		})
	})
	t.Run("exit status", func(t *testing.T) {
		r := newRig(t, rigOptions{sshd: true})
		cfg := r.clientConfig(x, "xdpyinfo >/dev/null && exit 7")
		cfg.User = "root"
		var stderr bytes.Buffer
		cfg.Stderr = &stderr
		st, err := RunApp(context.Background(), cfg)
		if err != nil || st != 7 {
			t.Fatalf("RunApp = %d, %v (stderr %q), want 7", st, err, stderr.String())
		}
		waitDone(t, r.fwd, 10*time.Second)
	})
}

func TestGoClientToEndpoint(t *testing.T) {
	x := startXvfb(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("window", func(t *testing.T) {
		r := newRig(t, rigOptions{command: []string{"xlogo"}})
		windowUntilCancel(t, x, r, func(ctx context.Context) error {
			_, err := RunApp(ctx, r.clientConfig(x, "xlogo"))
			return err
		})
	})
	tests := []struct {
		name       string
		argv       []string
		env        []string
		wantStatus int
		wantOut    string
		wantErr    string
	}{
		{name: "exit status and output", argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, wantStatus: 3, wantOut: "out\n", wantErr: "err\n"},
		{name: "x11 round trip", argv: []string{"sh", "-c", "xdpyinfo | grep -c 'number of screens'"}, wantStatus: 0, wantOut: "1\n"},
		{name: "killed by signal", argv: []string{"sh", "-c", "kill -TERM $$"}, wantStatus: 128 + 15},
		{name: "right X cookie", argv: []string{self, "right"}, env: []string{xclientModeEnv + "=1"}, wantStatus: 0},
		// The app presents a cookie other than the fake one: the client
		// closes the x11 channel before it reaches the X server.
		{name: "wrong X cookie", argv: []string{self, "wrong"}, env: []string{xclientModeEnv + "=1"}, wantStatus: 10},
		{name: "no X cookie", argv: []string{"sh", "-c", "XAUTHORITY=/dev/null xdpyinfo >/dev/null 2>&1"}, wantStatus: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{command: tc.argv, appEnv: tc.env})
			var stdout, stderr bytes.Buffer
			cfg := r.clientConfig(x, ShellJoin(tc.argv))
			cfg.Stdout, cfg.Stderr = &stdout, &stderr
			st, err := RunApp(context.Background(), cfg)
			if err != nil {
				t.Fatalf("RunApp: %v", err)
			}
			if st != tc.wantStatus {
				t.Errorf("status %d, want %d (stderr %q)", st, tc.wantStatus, stderr.String())
			}
			if tc.wantOut != "" && stdout.String() != tc.wantOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantOut)
			}
			if tc.wantErr != "" && stderr.String() != tc.wantErr {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.wantErr)
			}
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name string
		opts rigOptions
		run  func(t *testing.T, r *rig)
	}{
		{"wrong key", rigOptions{}, func(t *testing.T, r *rig) {
			other := newKeyPair(t, t.TempDir(), "other")
			cfg := r.clientConfig(nil, "true")
			cfg.Identity = other.signer
			if _, err := RunApp(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("RunApp with another key: %v, want an authentication error", err)
			}
		}},
		{"wrong host key pinned", rigOptions{}, func(t *testing.T, r *rig) {
			other := newKeyPair(t, t.TempDir(), "other")
			cfg := r.clientConfig(nil, "true")
			cfg.HostKey = other.signer.PublicKey()
			if _, err := RunApp(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "host key") {
				t.Errorf("RunApp with another pinned host key: %v, want a host key error", err)
			}
		}},
		{"another command", rigOptions{}, func(t *testing.T, r *rig) {
			marker := filepath.Join(t.TempDir(), "ran")
			st, err := RunApp(context.Background(), r.clientConfig(nil, "touch "+marker))
			if err == nil {
				t.Errorf("RunApp of another command: status %d, want an error", st)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the unapproved command ran")
			}
		}},
		{"another command with stock ssh", rigOptions{}, func(t *testing.T, r *rig) {
			marker := filepath.Join(t.TempDir(), "ran")
			cmd := r.sshCommand(t, context.Background(), GuestUser, nil, "touch "+marker)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "exec request failed") {
				t.Errorf("ssh another command: %v: %s", err, out)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the unapproved command ran")
			}
		}},
		{"direct-tcpip port forward", rigOptions{}, func(t *testing.T, r *rig) {
			target, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			c := mustDial(t, r)
			defer c.Close()
			if conn, err := c.Dial("tcp", target.Addr().String()); err == nil {
				conn.Close()
				t.Error("direct-tcpip was accepted")
			} else if oe := (*ssh.OpenChannelError)(nil); !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
				t.Errorf("direct-tcpip: %v, want Prohibited", err)
			}
		}},
		{"tcpip-forward", rigOptions{}, func(t *testing.T, r *rig) {
			c := mustDial(t, r)
			defer c.Close()
			if ln, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
				ln.Close()
				t.Error("tcpip-forward was accepted")
			}
		}},
		{"agent forwarding", rigOptions{}, func(t *testing.T, r *rig) {
			s := mustSession(t, r)
			if ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
				t.Errorf("auth-agent-req: ok=%v err=%v, want refused", ok, err)
			}
		}},
		{"pty refused, session goes on", rigOptions{command: []string{"echo", "ok"}}, func(t *testing.T, r *rig) {
			s := mustSession(t, r)
			if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
				t.Error("pty-req was accepted")
			}
			if out, err := s.Output("echo ok"); err != nil || string(out) != "ok\n" {
				t.Errorf("approved command after a refused pty: %q, %v", out, err)
			}
		}},
		{"subsystem", rigOptions{}, func(t *testing.T, r *rig) {
			s := mustSession(t, r)
			if err := s.RequestSubsystem("sftp"); err == nil {
				t.Error("subsystem sftp was accepted")
			}
		}},
		{"unknown channel type", rigOptions{}, func(t *testing.T, r *rig) {
			c := mustDial(t, r)
			defer c.Close()
			if ch, _, err := c.OpenChannel("direct-streamlocal@openssh.com", nil); err == nil {
				ch.Close()
				t.Error("direct-streamlocal was accepted")
			}
			if ch, _, err := c.OpenChannel("x11", nil); err == nil {
				ch.Close()
				t.Error("an x11 channel from the client was accepted")
			}
		}},
		{"second app run", rigOptions{command: []string{"true"}}, func(t *testing.T, r *rig) {
			c := mustDial(t, r)
			defer c.Close()
			s1, _ := c.NewSession()
			if err := s1.Run("true"); err != nil {
				t.Fatalf("first run: %v", err)
			}
			s2, err := c.NewSession()
			if err != nil {
				return // the endpoint may already have closed the connection
			}
			if err := s2.Run("true"); err == nil {
				t.Error("second run of the app was accepted")
			}
		}},
		{"other source address", rigOptions{allowFrom: "127.0.0.2"}, func(t *testing.T, r *rig) {
			if !refusedQuickly(t, r.fwd.Addr().String(), "127.0.0.1", 2*time.Second) {
				t.Error("connection from 127.0.0.1 not refused")
			}
			cl, err := dialSSH(t, r, "127.0.0.2", r.client.signer)
			if err != nil {
				t.Fatalf("the allowed address was not served: %v", err)
			}
			cl.Close()
		}},
		{"second connection", rigOptions{}, func(t *testing.T, r *rig) {
			first := mustDial(t, r)
			defer first.Close()
			if !refusedQuickly(t, r.fwd.Addr().String(), "127.0.0.1", 2*time.Second) {
				t.Error("second connection not refused")
			}
			s, err := first.NewSession()
			if err != nil {
				t.Fatalf("first session broken by the second connection: %v", err)
			}
			s.Close()
		}},
		{"after expiry", rigOptions{idle: 200 * time.Millisecond}, func(t *testing.T, r *rig) {
			waitDone(t, r.fwd, 5*time.Second)
			if !errors.Is(r.fwd.Err(), ErrForwardExpired) {
				t.Errorf("Err = %v, want ErrForwardExpired", r.fwd.Err())
			}
			if c, err := net.Dial("tcp", r.fwd.Addr().String()); err == nil {
				c.Close()
				t.Error("connection accepted after expiry")
			}
		}},
		{"garbage lines", rigOptions{handshake: time.Second}, func(t *testing.T, r *rig) {
			c, err := net.Dial("tcp", r.fwd.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("GET / HTTP/1.0\r\n\r\n\x00\xff\x13garbage\r\n"))
			if closed, _ := closedWithin(c, 5*time.Second); !closed {
				t.Error("garbage connection not closed")
			}
			waitDone(t, r.fwd, 5*time.Second)
			if r.fwd.Err() == nil {
				t.Error("forward result nil after garbage, want the endpoint's error")
			}
		}},
		{"garbage bytes", rigOptions{}, func(t *testing.T, r *rig) {
			c, err := net.Dial("tcp", r.fwd.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			junk := make([]byte, 4096)
			rand.Read(junk)
			for i := range junk {
				if junk[i] == '\n' {
					junk[i] = 0
				}
			}
			c.Write(junk)
			start := time.Now()
			if closed, _ := closedWithin(c, 5*time.Second); !closed {
				t.Error("garbage connection not closed")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("garbage connection closed after %v, want at once", d)
			}
			waitDone(t, r.fwd, 5*time.Second)
			if r.fwd.Err() == nil {
				t.Error("forward result nil after garbage, want the endpoint's error")
			}
		}},
		{"handshake never finishes", rigOptions{handshake: 300 * time.Millisecond}, func(t *testing.T, r *rig) {
			c, err := net.Dial("tcp", r.fwd.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("SSH-2.0-slowpoke\r\n")) // and then nothing
			start := time.Now()
			if closed, _ := closedWithin(c, 5*time.Second); !closed {
				t.Fatal("stalled handshake not dropped")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("stalled handshake dropped after %v", d)
			}
			waitDone(t, r.fwd, 5*time.Second)
		}},
		{"no channel opened", rigOptions{sessIdle: 300 * time.Millisecond}, func(t *testing.T, r *rig) {
			c := mustDial(t, r)
			defer c.Close()
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("idle authenticated connection not dropped")
			}
		}},
		{"session channel without exec", rigOptions{sessIdle: 300 * time.Millisecond}, func(t *testing.T, r *rig) {
			c := mustDial(t, r)
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("connection with an idle session channel not dropped")
			}
		}},
		{"200 idle connections", rigOptions{}, func(t *testing.T, r *rig) {
			before := runtime.NumGoroutine()
			// 200 connections from an address that is not allowed, all
			// opened before any is checked, that never send anything.
			var idle []net.Conn
			defer func() {
				for _, c := range idle {
					c.Close()
				}
			}()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			for i := 0; i < 200; i++ {
				if c, err := d.Dial("tcp", r.fwd.Addr().String()); err == nil {
					idle = append(idle, c) // else reset at once: refused
				}
			}
			for i, c := range idle {
				if closed, b := closedWithin(c, 2*time.Second); !closed || len(b) > 0 {
					t.Fatalf("idle connection %d from a refused address kept open", i)
				}
			}
			if g := runtime.NumGoroutine(); g > before+20 {
				t.Errorf("goroutines grew from %d to %d with 200 refused connections", before, g)
			}
			st, err := RunApp(context.Background(), r.clientConfig(nil, "true"))
			if err != nil || st != 0 {
				t.Errorf("right client after 200 idle connections: %d, %v", st, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.command == nil {
				tc.opts.command = []string{"true"}
			}
			r := newRig(t, tc.opts)
			tc.run(t, r)
		})
	}
}

// mustSession opens a session on a new connection to the rig; both are
// closed when the test ends.
func mustSession(t *testing.T, r *rig) *ssh.Session {
	t.Helper()
	c := mustDial(t, r)
	t.Cleanup(func() { c.Close() })
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustDial(t *testing.T, r *rig) *ssh.Client {
	t.Helper()
	c, err := dialSSH(t, r, "127.0.0.1", r.client.signer)
	if err != nil {
		t.Fatalf("ssh to the forward: %v", err)
	}
	return c
}

// TestOpenSSHSessionRequests checks how the endpoint treats what a stock
// client asks for besides exec: a shell runs the approved command, env
// requests are ignored. (A pty is refused: see TestRefusals; `ssh -tt`
// treats that as fatal by design.)
func TestOpenSSHSessionRequests(t *testing.T) {
	tests := []struct {
		name  string
		extra []string
	}{
		{"shell", []string{"-T"}},
		{"env ignored", []string{"-T", "-o", "SetEnv=FOO=bar"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{command: []string{"sh", "-c", "echo approved ${FOO:-unset}"}})
			cmd := r.sshCommand(t, context.Background(), GuestUser, tc.extra, "")
			cmd.Args = cmd.Args[:len(cmd.Args)-1] // no remote command: a shell request
			cmd.Stdin = strings.NewReader("")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || strings.TrimSpace(string(out)) != "approved unset" {
				t.Errorf("ssh %v: %v, stdout %q, stderr %q", tc.extra, err, out, stderr.String())
			}
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
}

// TestGoClientTCPDisplay relays to a TCP display ("127.0.0.1:N") whose
// cookie is an Internet-family Xauthority entry: a minimal X server
// accepts only the real cookie, which the client substitutes for the fake.
func TestGoClientTCPDisplay(t *testing.T) {
	var ln net.Listener
	var num int
	for n := 50; n < 150; n++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 6000+n))
		if err == nil {
			ln, num = l, n
			break
		}
	}
	if ln == nil {
		t.Fatal("no free TCP display port on 127.0.0.1")
	}
	defer ln.Close()
	real := []byte("real-cookie-1234")
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				s, err := readXSetup(c)
				if err != nil {
					return
				}
				got <- s.authData
				if s.authName == mitMagicCookie && bytes.Equal(s.authData, real) {
					c.Write([]byte{1}) // success (the rest of the reply does not matter here)
				} else {
					c.Write([]byte{0})
				}
			}()
		}
	}()
	xa := filepath.Join(t.TempDir(), "Xauthority")
	if err := WriteXauthority(xa, []XauthEntry{
		{Family: FamilyInternet, Address: []byte{127, 0, 0, 1}, Number: strconv.Itoa(num + 1), Name: mitMagicCookie, Data: []byte("other display!!!")},
		{Family: FamilyInternet, Address: []byte{127, 0, 0, 1}, Number: strconv.Itoa(num), Name: mitMagicCookie, Data: real},
	}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{self, "right"}
	r := newRig(t, rigOptions{command: argv, appEnv: []string{xclientModeEnv + "=1"}})
	cfg := r.clientConfig(nil, ShellJoin(argv))
	cfg.NoX11, cfg.Display, cfg.XAuthority = false, fmt.Sprintf("127.0.0.1:%d", num), xa
	// The real cookie reaches the X server only in trusted mode (this
	// minimal server has no SECURITY extension to make another).
	cfg.TrustedDisplay = true
	var stderr bytes.Buffer
	cfg.Stderr = &stderr
	st, err := RunApp(context.Background(), cfg)
	if err != nil || st != 0 {
		t.Fatalf("RunApp = %d, %v (stderr %q)", st, err, stderr.String())
	}
	select {
	case a := <-got:
		if !bytes.Equal(a, real) {
			t.Errorf("X server got cookie %q, want the real one", a)
		}
	default:
		t.Error("the X server saw no connection")
	}
	waitDone(t, r.fwd, 10*time.Second)
}

// TestGoClientProcessToEndpoint runs the Go client in its own process
// (RunAppProcess), as the daemon does.
func TestGoClientProcessToEndpoint(t *testing.T) {
	x := startXvfb(t)
	t.Run("window", func(t *testing.T) {
		r := newRig(t, rigOptions{command: []string{"xlogo"}})
		started := make(chan struct{})
		cfg := r.clientConfig(x, "xlogo")
		cfg.Started = func() { close(started) }
		windowUntilCancel(t, x, r, func(ctx context.Context) error {
			_, err := RunAppProcess(ctx, clientProcess(t), cfg)
			return err
		})
		select {
		case <-started:
		default:
			t.Error("Started not called")
		}
	})
	t.Run("status, output and stdin", func(t *testing.T) {
		argv := []string{"sh", "-c", "xdpyinfo | grep -c 'number of screens'; cat; echo err >&2; exit 3"}
		r := newRig(t, rigOptions{command: argv})
		var stdout, stderr bytes.Buffer
		cfg := r.clientConfig(x, ShellJoin(argv))
		cfg.Stdout, cfg.Stderr, cfg.Stdin = &stdout, &stderr, strings.NewReader("in\n")
		st, err := RunAppProcess(context.Background(), clientProcess(t), cfg)
		if err != nil || st != 3 {
			t.Fatalf("RunAppProcess = %d, %v (stderr %q), want 3", st, err, stderr.String())
		}
		if stdout.String() != "1\nin\n" || stderr.String() != "err\n" {
			t.Errorf("stdout %q, stderr %q, want %q, %q", stdout.String(), stderr.String(), "1\nin\n", "err\n")
		}
		waitDone(t, r.fwd, 10*time.Second)
	})
	t.Run("wrong host key", func(t *testing.T) {
		r := newRig(t, rigOptions{command: []string{"true"}})
		cfg := r.clientConfig(nil, "true")
		cfg.HostKey = newKeyPair(t, t.TempDir(), "other").signer.PublicKey()
		if _, err := RunAppProcess(context.Background(), clientProcess(t), cfg); err == nil || !strings.Contains(err.Error(), "host key") {
			t.Errorf("RunAppProcess with the wrong host key: %v, want a host key error", err)
		}
	})
	t.Run("stock sshd", func(t *testing.T) {
		r := newRig(t, rigOptions{sshd: true})
		cfg := r.clientConfig(x, "xdpyinfo >/dev/null && exit 7")
		cfg.User = "root"
		st, err := RunAppProcess(context.Background(), clientProcess(t), cfg)
		if err != nil || st != 7 {
			t.Fatalf("RunAppProcess = %d, %v, want 7", st, err)
		}
		waitDone(t, r.fwd, 10*time.Second)
	})
}
