package tunnel

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// BenchmarkDisplayLatency is issue 14's benchmark: the display modes with
// a real round trip between requester and host. For each round trip
// (EBP_LATENCY_RTTS, ms, default 0,1,20) a delay link
// (testbed.NewLink: two network namespaces, a relay holding each packet
// half the round trip) joins the requester's side and the host's; the SSH
// connection crosses it (the forward or stock sshd's listener in the
// host's namespace, the client dialling from the requester's), while the
// requester's Xvfb is reached over its unix socket. For each app
// (EBP_LATENCY_APPS, default gtk3,qt5; also xterm) and mode
// (EBP_LATENCY_MODES, default all: protected, trusted, isolated, ssh-y,
// ssh-x, xpra-attach, xpra-start) it measures the time from the launch to
// the app's first window mapped and to its first paint on the requester's
// display (a window with more than one colour, read by a trusted xwd),
// medians of EBP_LATENCY_RUNS (default 5; 3 for a mode whose first
// launch took over 10 s), each launch on a fresh Xvfb, the modes
// alternating; then x11perf -putimage100 and -prop through ours
// (protected, trusted) and stock ssh (-Y, -X untrusted) unless
// EBP_LATENCY_X11PERF=0. It prints markdown tables.
//
//	CI=true go test ./tunnel -run '^$' -bench DisplayLatency -benchtime 1x -timeout 90m
func BenchmarkDisplayLatency(b *testing.B) {
	needBin(b, "xdotool")
	needBin(b, "xwd")
	needBin(b, "x11perf")
	needBin(b, "sshd")
	needBin(b, "ssh")
	requireXpra(b)
	rtts := latencyRTTs(b)
	apps := pick(b, "EBP_LATENCY_APPS", "gtk3,qt5", latencyApps, func(a latencyApp) string { return a.key })
	modes := pick(b, "EBP_LATENCY_MODES", "", latencyModes, func(m latencyMode) string { return m.key })
	runs := 5
	if v := os.Getenv("EBP_LATENCY_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("EBP_LATENCY_RUNS=%q: want a positive number", v)
		}
		runs = n
	}
	x11perf := os.Getenv("EBP_LATENCY_X11PERF") != "0"
	var paintTable, windowTable, perfTable strings.Builder
	head := "| round trip | app |"
	sep := "|---|---|"
	for _, m := range modes {
		head += " " + m.name + " |"
		sep += "---|"
	}
	ratio := slices.ContainsFunc(modes, func(m latencyMode) bool { return m.key == "protected" }) &&
		slices.ContainsFunc(modes, func(m latencyMode) bool { return m.key == "trusted" })
	if ratio {
		head += " protected/trusted |"
		sep += "---|"
	}
	paintTable.WriteString(head + "\n" + sep + "\n")
	windowTable.WriteString(head + "\n" + sep + "\n")
	perfTable.WriteString("| round trip | x11perf | ours protected | ours trusted | stock ssh -Y | stock ssh -X untrusted |\n|---|---|---|---|---|---|\n")
	for range b.N {
		for _, rtt := range rtts {
			l := testbed.NewLink(b, rtt)
			rttName := fmt.Sprintf("%g ms", float64(rtt)/float64(time.Millisecond))
			for _, app := range apps {
				if _, err := exec.LookPath(app.argv[0]); err != nil {
					fmt.Fprintf(&paintTable, "| %s | %s | not installed |\n", rttName, app.name)
					continue
				}
				res := map[string]*launchResult{}
				for _, m := range modes {
					res[m.key] = &launchResult{runs: runs}
				}
				for i := range runs {
					for _, m := range modes {
						r := res[m.key]
						if r.fail != "" || (i >= 3 && len(r.times) > 0 && r.times[0].paint > 10*time.Second) {
							continue
						}
						s := newScope(b)
						t, err := m.launch(s, l, app)
						s.close()
						if err != nil {
							r.fail = "fails: " + err.Error()
							fmt.Fprintf(os.Stderr, "latency %v %s %s: %s\n", rtt, app.key, m.key, r.fail)
							continue
						}
						r.times = append(r.times, t)
						fmt.Fprintf(os.Stderr, "latency %v %s %s run %d: window %v, paint %v\n", rtt, app.key, m.key, i+1,
							t.window.Round(time.Millisecond), t.paint.Round(time.Millisecond))
					}
				}
				pr := fmt.Sprintf("| %s | %s |", rttName, app.name)
				wr := pr
				for _, m := range modes {
					pr += " " + res[m.key].cell(func(t launchTimes) time.Duration { return t.paint }) + " |"
					wr += " " + res[m.key].cell(func(t launchTimes) time.Duration { return t.window }) + " |"
				}
				if ratio {
					p, t := res["protected"], res["trusted"]
					q := ""
					if p.fail == "" && t.fail == "" && len(p.times) > 0 && len(t.times) > 0 {
						q = fmt.Sprintf("%.2fx", float64(p.median(paintOf))/float64(t.median(paintOf)))
					}
					pr += " " + q + " |"
					q = ""
					if p.fail == "" && t.fail == "" && len(p.times) > 0 && len(t.times) > 0 {
						q = fmt.Sprintf("%.2fx", float64(p.median(windowOf))/float64(t.median(windowOf)))
					}
					wr += " " + q + " |"
				}
				paintTable.WriteString(pr + "\n")
				windowTable.WriteString(wr + "\n")
			}
			if x11perf {
				for _, test := range []string{"-putimage100", "-prop"} {
					row := fmt.Sprintf("| %s | %s |", rttName, test)
					argv := []string{"x11perf", "-repeat", "1", "-time", "2", test}
					for _, p := range []benchPath{{link: l}, {link: l, trusted: true}, {link: l, stock: true, trusted: true}, {link: l, stock: true}} {
						s := newScope(b)
						x := desktopXvfb(s)
						var res benchResult
						var err error
						if p.stock {
							res, err = benchStockWith(s, p, x, argv)
						} else {
							res, err = benchOursWith(s, p, x, argv, nil)
						}
						s.close()
						if err != nil {
							fmt.Fprintf(os.Stderr, "latency %v x11perf %s %s: %v\n", rtt, test, p, err)
							row += " fails: " + lastLine(err.Error()) + " |"
							continue
						}
						fmt.Fprintf(os.Stderr, "latency %v x11perf %s %s: %.0f/s\n", rtt, test, p, res.rate)
						row += fmt.Sprintf(" %s/s |", thousands(res.rate))
					}
					perfTable.WriteString(row + "\n")
				}
			}
		}
	}
	fmt.Printf("\nLaunch to first paint (medians):\n\n%s\nLaunch to first window mapped (medians):\n\n%s\n", paintTable.String(), windowTable.String())
	if x11perf {
		fmt.Printf("x11perf rates:\n\n%s\n", perfTable.String())
	}
}

// latencyRTTs are the round trips to measure, from EBP_LATENCY_RTTS.
func latencyRTTs(tb testing.TB) []time.Duration {
	var out []time.Duration
	for _, f := range strings.Split(cmp.Or(os.Getenv("EBP_LATENCY_RTTS"), "0,1,20"), ",") {
		ms, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || ms < 0 {
			tb.Fatalf("EBP_LATENCY_RTTS: %q is not a round trip in ms", f)
		}
		out = append(out, time.Duration(ms*float64(time.Millisecond)))
	}
	return out
}

// pick returns the items of all named in the environment variable env (a
// comma-separated list of keys), all of them if it is empty (def if set).
func pick[T any](tb testing.TB, env, def string, all []T, key func(T) string) []T {
	v := cmp.Or(os.Getenv(env), def)
	if v == "" {
		return all
	}
	var out []T
	for _, k := range strings.Split(v, ",") {
		i := slices.IndexFunc(all, func(t T) bool { return key(t) == strings.TrimSpace(k) })
		if i < 0 {
			var keys []string
			for _, t := range all {
				keys = append(keys, key(t))
			}
			tb.Fatalf("%s: unknown %q (known: %s)", env, k, strings.Join(keys, ","))
		}
		out = append(out, all[i])
	}
	return out
}

type latencyApp struct {
	key, name string
	argv      []string
}

var latencyApps = []latencyApp{
	{"gtk3", "GTK3", []string{"gtk3-widget-factory"}},
	{"qt5", "Qt5", []string{"qt5ct"}},
	{"xterm", "xterm", []string{"xterm"}},
}

// latencyTimeout bounds one launch (GTK3 forwarded untrusted at 20 ms
// takes ~25 s).
const latencyTimeout = 90 * time.Second

// latencyMode is one way to show a remote app: ours in one of the display
// modes, stock ssh, or Xpra on its own.
type latencyMode struct {
	key, name string
	launch    launchFunc
}

var latencyModes = []latencyMode{
	{"protected", "ours protected (default)", oursLaunch(modeProtected)},
	{"trusted", "ours trusted", oursLaunch(modeTrusted)},
	{"isolated", "ours isolated (xpra inside)", oursLaunch(modeIsolated)},
	{"ssh-y", "stock `ssh -Y`", stockLaunch(true)},
	{"ssh-x", "stock `ssh -X` untrusted", stockLaunch(false)},
	{"xpra-attach", "Xpra 3.1 attach (server running)", xpraLaunch(true)},
	{"xpra-start", "Xpra 3.1 start + attach", xpraLaunch(false)},
}

type launchFunc = func(tb testing.TB, l *testbed.Link, app latencyApp) (launchTimes, error)

func oursLaunch(m testMode) launchFunc {
	return func(tb testing.TB, l *testbed.Link, a latencyApp) (launchTimes, error) {
		return launchOurs(tb, l, a, m)
	}
}

func stockLaunch(trusted bool) launchFunc {
	return func(tb testing.TB, l *testbed.Link, a latencyApp) (launchTimes, error) {
		return launchStock(tb, l, a, trusted)
	}
}

func xpraLaunch(running bool) launchFunc {
	return func(tb testing.TB, l *testbed.Link, a latencyApp) (launchTimes, error) {
		return launchXpra(tb, l, a, running)
	}
}

// launchTimes are one launch's times to the first window mapped and to
// its first paint.
type launchTimes struct{ window, paint time.Duration }

func paintOf(t launchTimes) time.Duration  { return t.paint }
func windowOf(t launchTimes) time.Duration { return t.window }

type launchResult struct {
	times []launchTimes
	fail  string
	runs  int // launches wanted
}

func (r *launchResult) median(f func(launchTimes) time.Duration) time.Duration {
	var d []time.Duration
	for _, t := range r.times {
		d = append(d, f(t))
	}
	return medianDuration(d)
}

func (r *launchResult) cell(f func(launchTimes) time.Duration) string {
	if r.fail != "" {
		return strings.ReplaceAll(r.fail, "|", "/")
	}
	if len(r.times) == 0 {
		return ""
	}
	s := thousands(float64(r.median(f).Milliseconds())) + " ms"
	if len(r.times) != r.runs {
		s += fmt.Sprintf(" (of %d)", len(r.times))
	}
	return s
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// launchVerdict turns what firstPaint saw into times or why there are none.
func launchVerdict(w, p time.Duration, ended bool, why error, stderr string) (launchTimes, error) {
	switch {
	case p != 0:
		return launchTimes{window: w, paint: p}, nil
	case ended:
		return launchTimes{}, fmt.Errorf("%w: %s", why, lastLine(stderr))
	case w != 0:
		return launchTimes{}, fmt.Errorf("mapped after %v, not painted in %v", w.Round(time.Millisecond), latencyTimeout)
	}
	return launchTimes{}, fmt.Errorf("no window in %v: %s", latencyTimeout, lastLine(stderr))
}

// launchOurs is a session across the link: the forward in the host's
// namespace, our client (in this process, as timeToWindow's) dialling from
// the requester's.
func launchOurs(tb testing.TB, l *testbed.Link, app latencyApp, mode testMode) (launchTimes, error) {
	x := desktopXvfb(tb)
	w, p, ended, runErr, stderr := sessionFirstPaint(tb, l, x, app.argv, ".", mode, latencyTimeout)
	return launchVerdict(w, p, ended, runErr, stderr)
}

// launchStock is stock ssh from the requester's namespace to `sshd -i`
// behind the forward in the host's: -Y (ForwardX11Trusted=yes), or -X
// with ForwardX11Trusted=no.
func launchStock(tb testing.TB, l *testbed.Link, app latencyApp, trusted bool) (launchTimes, error) {
	x := desktopXvfb(tb)
	r := newRig(tb, rigOptions{sshd: true, link: l})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := r.stockCommand(tb, ctx, l, x, trusted, ShellJoin(app.argv))
	var stderr logBuffer
	cmd.Stderr = &stderr
	exited := make(chan struct{})
	var runErr error
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return launchTimes{}, err
	}
	go func() {
		defer close(exited)
		runErr = cmd.Wait()
		if runErr == nil {
			runErr = fmt.Errorf("ssh exited")
		}
	}()
	w, p, ended := firstPaint(x, ".", t0, exited, latencyTimeout)
	cancel()
	<-exited
	waitDone(tb, r.fwd, 10*time.Second)
	killMarked(tb, r.marker)
	return launchVerdict(w, p, ended, runErr, stderr.String())
}

// stockCommand is stock ssh with X11 forwarding from the requester's
// namespace (or here, without a link) to the rig's sshd.
func (r *rig) stockCommand(tb testing.TB, ctx context.Context, l *testbed.Link, x *xvfb, trusted bool, remote string) *exec.Cmd {
	extra := []string{"-X", "-o", "ForwardX11Trusted=no"}
	if trusted {
		extra = []string{"-Y"}
	}
	cmd := r.sshCommand(tb, ctx, "root", extra, remote)
	if l != nil {
		cmd = l.RequesterCommand(ctx, cmd.Args...)
	}
	cmd.Env = x.env()
	return cmd
}

// killMarked waits a few seconds for the apps of a session (marked) to
// exit after it ended, then kills what is left, by pid.
func killMarked(tb testing.TB, marker string) {
	if left := reapMarked(marker, 5*time.Second); len(left) > 0 {
		tb.Logf("killed processes left by the session: %v", left)
	}
}

// launchXpra is Xpra on its own, as a user runs it between two computers:
// `xpra start --bind-tcp` with the app as its child in the host's
// namespace (the options of our isolated mode, on the host's address) and
// `xpra attach tcp://host:port` from the requester's, on its display.
// running: the server and the app are up before the clock starts (only the
// attach is timed); otherwise the clock starts with the server, and the
// client attaches as soon as the server's port answers.
func launchXpra(tb testing.TB, l *testbed.Link, app latencyApp, running bool) (launchTimes, error) {
	xpra := needBin(tb, "xpra")
	x := desktopXvfb(tb)
	var m [8]byte
	rand.Read(m[:])
	marker := hex.EncodeToString(m[:])
	port, err := freePort(l)
	if err != nil {
		return launchTimes{}, err
	}
	addr := netip.AddrPortFrom(l.HostIP, port).String()
	sdir := tb.TempDir()
	argv := append(xpraServerArgv(xpra, app.argv, sdir, sdir+"/xpra.sock"), "--bind-tcp="+addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	server := l.HostCommand(ctx, argv...)
	server.Env = append((&guestXpra{dir: sdir}).env(os.Environ()), "HOME="+tb.TempDir(), markerEnv+"="+marker)
	var serr logBuffer
	server.Stdout, server.Stderr = &serr, &serr
	server.Cancel = func() error { return server.Process.Signal(syscall.SIGTERM) }
	server.WaitDelay = 5 * time.Second
	sexited := make(chan struct{})
	defer func() {
		cancel()
		<-sexited
		killMarked(tb, marker)
	}()
	start := func() error {
		if err := server.Start(); err != nil {
			return fmt.Errorf("starting the xpra server: %w", err)
		}
		go func() { server.Wait(); close(sexited) }()
		return nil
	}
	var t0 time.Time
	if running {
		if err := start(); err != nil {
			close(sexited)
			return launchTimes{}, err
		}
		if err := xpraAppShown(xpra, sdir+"/xpra.sock", sexited, &serr); err != nil {
			return launchTimes{}, err
		}
		t0 = time.Now()
	} else {
		t0 = time.Now()
		if err := start(); err != nil {
			close(sexited)
			return launchTimes{}, err
		}
		if err := waitPort(l, addr, sexited, &serr); err != nil {
			return launchTimes{}, err
		}
	}
	cdir := tb.TempDir()
	cargv := xpraClientArgv(xpra, "", cdir)
	cargv[2] = "tcp://" + addr
	var env []string
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "DISPLAY" && k != "XAUTHORITY" && k != "XDG_RUNTIME_DIR" && k != "WAYLAND_DISPLAY" && k != "GDK_BACKEND" {
			env = append(env, e)
		}
	}
	env = append(env, "DISPLAY="+x.display, "XAUTHORITY="+x.xauthority, "XDG_RUNTIME_DIR="+cdir,
		"GDK_BACKEND=x11", "HOME="+tb.TempDir(), markerEnv+"="+marker)
	// A server just started can refuse the first attach ("failed to
	// connect"; seen once in 45 launches): the client tries again, as
	// `xpra start ssh://...` waits for its server, the clock running.
	for attempt := 1; ; attempt++ {
		client := l.RequesterCommand(ctx, cargv...)
		client.Env = env
		var cerr logBuffer
		client.Stdout, client.Stderr = &cerr, &cerr
		client.Cancel = func() error { return client.Process.Signal(syscall.SIGTERM) }
		client.WaitDelay = 5 * time.Second
		if err := client.Start(); err != nil {
			return launchTimes{}, fmt.Errorf("starting xpra attach: %w", err)
		}
		cexited := make(chan struct{})
		var cErr error
		go func() {
			defer close(cexited)
			cErr = client.Wait()
			if cErr == nil {
				cErr = fmt.Errorf("xpra attach exited")
			}
		}()
		w, p, ended := firstPaint(x, ".", t0, cexited, latencyTimeout-time.Since(t0))
		client.Cancel()
		<-cexited
		if ended && w == 0 && !running && attempt < 3 && strings.Contains(cerr.String(), "failed to connect") {
			continue
		}
		return launchVerdict(w, p, ended, cErr, cerr.String())
	}
}

// freePort is a TCP port free on the link's host address.
func freePort(l *testbed.Link) (uint16, error) {
	var port uint16
	err := l.InHost(func() error {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(l.HostIP, 0).String())
		if err != nil {
			return err
		}
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		return ln.Close()
	})
	return port, err
}

// waitPort waits until addr accepts a connection from the requester's
// namespace (the xpra server is up), as a client retrying would.
func waitPort(l *testbed.Link, addr string, exited <-chan struct{}, out *logBuffer) error {
	deadline := time.Now().Add(latencyTimeout)
	for time.Now().Before(deadline) {
		var c net.Conn
		err := l.InRequester(func() (err error) {
			c, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the xpra server exited: %s", lastLine(out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the xpra server did not listen on %s in %v: %s", addr, latencyTimeout, lastLine(out.String()))
}

// xpraAppShown waits until the xpra server on socket sock has a window
// of the app (xpra info lists it), and a second more for it to draw.
func xpraAppShown(xpra, sock string, exited <-chan struct{}, out *logBuffer) error {
	deadline := time.Now().Add(latencyTimeout)
	for time.Now().Before(deadline) {
		c := exec.Command(xpra, "info", "socket://"+sock, "--socket-dirs="+filepath.Dir(sock))
		c.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+filepath.Dir(sock))
		if o, err := c.Output(); err == nil && windowListed.Match(o) {
			time.Sleep(time.Second)
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the xpra server exited: %s", lastLine(out.String()))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the app showed no window on the xpra server in %v: %s", latencyTimeout, lastLine(out.String()))
}

// windowListed is a window in xpra info's output.
var windowListed = regexp.MustCompile(`(?m)^windows\.[0-9]+\.class-instance=`)

// scope is a testing.TB whose cleanups run when it is closed, not when
// the benchmark ends: each launch's Xvfb, rig and directories go with it
// (a benchmark of hundreds of launches would otherwise keep them all).
type scope struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func newScope(tb testing.TB) *scope {
	s := &scope{TB: tb}
	tb.Cleanup(s.close) // if a launch fails the benchmark
	return s
}

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) TempDir() string {
	d, err := os.MkdirTemp("", "ebp-lat-")
	if err != nil {
		s.Fatal(err)
	}
	s.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (s *scope) close() {
	s.mu.Lock()
	c := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}
