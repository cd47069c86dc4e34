package tunnel

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// endpointModeEnv switches the test binary into "endpoint mode": it
// serves one SSH session on stdin/stdout, like `ebrainpool guest-sshd`.
const endpointModeEnv = "EBP_TUNNEL_TEST_ENDPOINT"

// clientModeEnv switches the test binary into a client process
// (ClientProcessMain), like `ebrainpool x11-client`.
const clientModeEnv = "EBP_TUNNEL_TEST_CLIENT"

// clientProcess is the test binary as RunAppProcess's client process.
func clientProcess(tb testing.TB) ClientProcess {
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return ClientProcess{Path: self, Env: append(os.Environ(), clientModeEnv+"=1")}
}

// markerEnv is set in every app the tests start, so they can check that
// none of them outlives its session.
const markerEnv = "EBP_TUNNEL_TEST_MARKER"

type endpointSpec struct {
	HostKey       string
	AuthorizedKey string
	Command       []string
	Env           []string
	X11Dir        string
	Handshake     time.Duration
	Idle          time.Duration
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(guestMountModeEnv); spec != "" {
		if _, child := os.LookupEnv(GuestSharesEnv); !child {
			os.Exit(guestMountMain(spec))
		}
	}
	if spec := os.Getenv(endpointModeEnv); spec != "" {
		os.Exit(endpointMain(spec))
	}
	if os.Getenv(clientModeEnv) != "" {
		os.Exit(ClientProcessMain())
	}
	if os.Getenv(attackModeEnv) != "" && len(os.Args) == 3 {
		os.Exit(attackMain(os.Args[1], os.Args[2]))
	}
	if os.Getenv(xclientModeEnv) != "" && len(os.Args) == 2 {
		os.Exit(xclientMain(os.Args[1]))
	}
	os.Exit(m.Run())
}

// xclientModeEnv switches the test binary into a minimal X client that
// sends a connection setup with the right cookie (from XAUTHORITY) or a
// wrong one and reports the outcome as its exit status: 0 the X server
// accepted, 10 the connection was closed without an answer, 11 the X
// server refused.
const xclientModeEnv = "EBP_TUNNEL_TEST_XCLIENT"

func xclientMain(mode string) int {
	d, err := ParseDisplay(os.Getenv("DISPLAY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "xclient:", err)
		return 2
	}
	cookie := make([]byte, 16)
	if mode == "right" {
		f, err := os.Open(os.Getenv("XAUTHORITY"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "xclient:", err)
			return 2
		}
		entries, _ := ParseXauthority(f)
		f.Close()
		c, ok := findCookie(entries, d, "")
		if !ok {
			fmt.Fprintln(os.Stderr, "xclient: no cookie")
			return 2
		}
		cookie = c
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "xclient:", err)
		return 2
	}
	defer c.Close()
	s := &xSetup{order: 'l', major: 11, authName: mitMagicCookie, authData: cookie}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(s.marshal()); err != nil {
		return 10
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		fmt.Fprintln(os.Stderr, "xclient: no answer:", err)
		return 10
	}
	fmt.Fprintln(os.Stderr, "xclient: answer", b[0])
	if b[0] == 1 {
		return 0
	}
	return 11
}

func endpointMain(specJSON string) int {
	var spec endpointSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	TuneRelayProcess()                         // as guest-sshd does
	if p := os.Getenv("CPUPROFILE"); p != "" { // profiling the endpoint
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	signer, err := LoadOrCreateHostKey(spec.HostKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 2
	}
	key, err := ParseAuthorizedKey(spec.AuthorizedKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 2
	}
	shares, err := TakeGuestShares()
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 2
	}
	conn, err := StdioConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 2
	}
	err = ServeEndpoint(ctx, conn, EndpointConfig{Shares: shares,
		HostKey: signer, AuthorizedKey: key, Command: spec.Command, Env: spec.Env,
		X11Dir: spec.X11Dir, HandshakeTimeout: spec.Handshake, SessionIdle: spec.Idle,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint mode:", err)
		return 1
	}
	return 0
}

// needBin returns the path of a required binary; outside CI a missing
// binary skips the test, under CI=true it fails it.
func needBin(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is required under CI: %v", name, err)
		}
		tb.Skipf("skipping: %s not installed", name)
	}
	return p
}

// logWriter sends a child's stderr to the test log, line by line.
type logWriter struct {
	tb     testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.tb.Log(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&logWriter{tb: tb, prefix: "local: "}, nil))
}

// xvfb is a private X server for one test.
type xvfb struct {
	display    string
	number     int
	xauthority string
}

func (x *xvfb) env() []string {
	return append(os.Environ(), "DISPLAY="+x.display, "XAUTHORITY="+x.xauthority)
}

// startXvfb starts Xvfb on a free display with a cookie made by xauth,
// and stops it (by pid) when the test ends.
func startXvfb(tb testing.TB) *xvfb {
	tb.Helper()
	return startXvfbWith(tb)
}

// startXvfbWith is startXvfb with more Xvfb arguments.
func startXvfbWith(tb testing.TB, extra ...string) *xvfb {
	tb.Helper()
	xvfbBin := needBin(tb, "Xvfb")
	xauthBin := needBin(tb, "xauth")
	needBin(tb, "xdpyinfo")
	dir := tb.TempDir()
	cookie := make([]byte, 16)
	rand.Read(cookie)
	for n := 100 + int(cookie[0]); n < 600; n += 7 {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		x := &xvfb{display: fmt.Sprintf(":%d", n), number: n, xauthority: filepath.Join(dir, "Xauthority")}
		os.Remove(x.xauthority)
		if out, err := exec.Command(xauthBin, "-f", x.xauthority, "add", x.display, mitMagicCookie, hex.EncodeToString(cookie)).CombinedOutput(); err != nil {
			tb.Fatalf("xauth add: %v: %s", err, out)
		}
		cmd := exec.Command(xvfbBin, append([]string{x.display, "-nolisten", "tcp", "-auth", x.xauthority, "-screen", "0", "800x600x24"}, extra...)...)
		cmd.Stderr = &logWriter{tb: tb, prefix: "Xvfb: "}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("starting Xvfb: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{} // display taken: try the next one
				continue
			default:
			}
			c := exec.Command("xdpyinfo")
			c.Env = x.env()
			if c.Run() == nil {
				tb.Cleanup(stop)
				return x
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
	}
	tb.Fatal("could not start Xvfb on any display")
	return nil
}

// windowNames lists the window names on the display.
func (x *xvfb) windowNames(tb testing.TB) string {
	cmd := exec.Command("xwininfo", "-root", "-tree")
	cmd.Env = x.env()
	out, err := cmd.Output()
	if err != nil {
		tb.Logf("xwininfo: %v", err)
	}
	return string(out)
}

// waitWindow waits until a window named name is present (or absent).
func (x *xvfb) waitWindow(tb testing.TB, name string, present bool, timeout time.Duration) {
	tb.Helper()
	needBin(tb, "xwininfo")
	deadline := time.Now().Add(timeout)
	for {
		has := strings.Contains(x.windowNames(tb), `"`+name+`"`)
		if has == present {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("window %q present=%v after %v, want %v", name, has, timeout, present)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyPair is an ed25519 key with its OpenSSH private key file.
type keyPair struct {
	signer ssh.Signer
	path   string
}

func newKeyPair(tb testing.TB, dir, name string) keyPair {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := WritePrivateKey(path, priv, name); err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair{signer: s, path: path}
}

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// rig is one forward whose connection is handed to an endpoint process:
// the test binary in endpoint mode, or stock `sshd -i`.
type rig struct {
	dir     string
	hostKey keyPair
	client  keyPair
	x11Dir  string
	marker  string
	fwd     *Forward
	log     *slog.Logger

	mu   sync.Mutex
	pids []int
}

type rigOptions struct {
	command   []string
	allowFrom string
	idle      time.Duration
	handshake time.Duration
	sessIdle  time.Duration
	sshd      bool // stock OpenSSH sshd -i instead of our endpoint
	appEnv    []string
	// link, if set, puts the forward in the host's namespace of a delay
	// link, listening on its address for the requester's: clients dial
	// from the requester's namespace (link.InRequester) across it.
	link *testbed.Link
}

func newRig(tb testing.TB, o rigOptions) *rig {
	tb.Helper()
	dir := tb.TempDir()
	r := &rig{dir: dir, x11Dir: filepath.Join(dir, "x11"), log: testLogger(tb)}
	r.hostKey = newKeyPair(tb, dir, "host_key")
	r.client = newKeyPair(tb, dir, "id_ed25519")
	var m [8]byte
	rand.Read(m[:])
	r.marker = hex.EncodeToString(m[:])
	if o.allowFrom == "" {
		o.allowFrom = "127.0.0.1"
	}
	var h ExecHandoff
	if o.sshd {
		h = r.sshdHandoff(tb)
	} else {
		self, err := os.Executable()
		if err != nil {
			tb.Fatal(err)
		}
		spec, _ := json.Marshal(endpointSpec{
			HostKey: r.hostKey.path, AuthorizedKey: authorizedLine(r.client.signer.PublicKey()),
			Command: o.command, X11Dir: r.x11Dir, Handshake: o.handshake, Idle: o.sessIdle,
			Env: append([]string{"PATH=" + os.Getenv("PATH"), markerEnv + "=" + r.marker}, o.appEnv...),
		})
		env := []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir, endpointModeEnv + "=" + string(spec)}
		for _, k := range []string{"GOGC", "GOMAXPROCS", "GODEBUG", "CPUPROFILE"} { // for profiling runs
			if v, ok := os.LookupEnv("EBP_TEST_ENDPOINT_" + k); ok {
				env = append(env, k+"="+v)
			}
		}
		h = ExecHandoff{Path: self, Env: env}
	}
	h.Stderr = &logWriter{tb: tb, prefix: "endpoint: "}
	h.Started = func(pid int) {
		r.mu.Lock()
		r.pids = append(r.pids, pid)
		r.mu.Unlock()
	}
	fc := ForwardConfig{
		ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.ParseIP(o.allowFrom),
		IdleTimeout: o.idle, Handoff: h, Logger: r.log,
	}
	var f *Forward
	var err error
	if o.link != nil {
		fc.ListenIP, fc.AllowFrom = o.link.HostIP.AsSlice(), o.link.RequesterIP.AsSlice()
		err = o.link.InHost(func() (err error) {
			f, err = OpenForward(context.Background(), fc)
			return err
		})
	} else {
		f, err = OpenForward(context.Background(), fc)
	}
	if err != nil {
		tb.Fatal(err)
	}
	r.fwd = f
	tb.Cleanup(func() { r.checkClean(tb) })
	return r
}

// sshdHandoff writes an sshd_config for `sshd -i` in the rig's directory.
func (r *rig) sshdHandoff(tb testing.TB) ExecHandoff {
	sshd := needBin(tb, "sshd")
	needBin(tb, "xauth")
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation dir
		tb.Fatal(err)
	}
	auth := filepath.Join(r.dir, "authorized_keys")
	if err := os.WriteFile(auth, ssh.MarshalAuthorizedKey(r.client.signer.PublicKey()), 0o600); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(r.dir, "sshd_config")
	// HOME points into the test dir so the login shell sshd runs every
	// command through does not read root's ~/.bashrc (seconds of pyenv on
	// the development machines), which would skew the comparison.
	cfg := fmt.Sprintf(`HostKey %s
AuthorizedKeysFile %s
X11Forwarding yes
X11UseLocalhost yes
X11DisplayOffset 10
UsePAM no
StrictModes no
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitUserRC no
PrintMotd no
PrintLastLog no
SetEnv XAUTHORITY=%s %s=%s HOME=%s
LogLevel ERROR
`, r.hostKey.path, auth, filepath.Join(r.dir, "sshd_xauthority"), markerEnv, r.marker, r.dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return ExecHandoff{Path: sshd, Args: []string{"-i", "-e", "-f", conf}}
}

// checkClean verifies that the forward is closed, its listener gone, the
// endpoint processes exited and no app with our marker survives.
func (r *rig) checkClean(tb testing.TB) {
	tb.Helper()
	r.fwd.Close()
	if c, err := net.DialTimeout("tcp", r.fwd.Addr().String(), time.Second); err == nil {
		c.Close()
		tb.Errorf("listener %s still accepts after the forward closed", r.fwd.Addr())
	}
	r.mu.Lock()
	pids := append([]int(nil), r.pids...)
	r.mu.Unlock()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			tb.Errorf("endpoint process %d still exists (kill 0: %v)", pid, err)
		}
	}
	if left := reapMarked(r.marker, 5*time.Second); len(left) > 0 {
		tb.Errorf("app processes survived their session: %v", left)
	}
	if ents, err := os.ReadDir(r.x11Dir); err == nil && len(ents) > 0 {
		tb.Errorf("X11 sockets left in %s: %v", r.x11Dir, ents)
	}
	if left, _ := filepath.Glob(filepath.Join(r.dir, "ebrainpool-xauth-*")); len(left) > 0 {
		tb.Errorf("Xauthority files left behind: %v", left)
	}
}

// reapMarked waits up to timeout for the processes marked with marker to
// exit, then kills those left (by pid) and returns them.
func reapMarked(marker string, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		left := markedProcesses(marker)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// markedProcesses lists pids whose environment holds markerEnv=marker.
func markedProcesses(marker string) []int {
	want := []byte(markerEnv + "=" + marker + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, want) {
			out = append(out, pid)
		}
	}
	return out
}

// clientConfig is a Go client config for the rig.
func (r *rig) clientConfig(x *xvfb, command string) ClientConfig {
	c := ClientConfig{
		Addr: r.fwd.Addr().String(), HostKey: r.hostKey.signer.PublicKey(),
		Identity: r.client.signer, Command: command, HandshakeTimeout: 5 * time.Second,
		Logger: r.log,
	}
	if x != nil {
		c.Display, c.XAuthority = x.display, x.xauthority
	} else {
		c.NoX11 = true
	}
	return c
}

// knownHosts writes the pin for the rig's host key.
func (r *rig) knownHosts(tb testing.TB) string {
	p := filepath.Join(r.dir, "known_hosts")
	a := r.fwd.Addr()
	if err := WriteKnownHosts(p, KnownHostsLine(a.IP.String(), a.Port, r.hostKey.signer.PublicKey())); err != nil {
		tb.Fatal(err)
	}
	return p
}

// sshCommand is a stock OpenSSH client command against the rig.
func (r *rig) sshCommand(tb testing.TB, ctx context.Context, user string, extra []string, remote string) *exec.Cmd {
	sshBin := needBin(tb, "ssh")
	a := r.fwd.Addr()
	args := []string{"-F", "/dev/null", "-p", fmt.Sprint(a.Port), "-i", r.client.path,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + r.knownHosts(tb), "-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=5"}
	args = append(args, extra...)
	args = append(args, user+"@"+a.IP.String(), remote)
	return exec.CommandContext(ctx, sshBin, args...)
}
