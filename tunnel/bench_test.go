package tunnel

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testbed"
)

// BenchmarkCompareOpenSSH measures, in one run, our Go client + endpoint
// against stock `ssh -X` + `sshd -i`, both behind the same forward with
// the endpoint started per connection on the socket (no relay process):
//
//	go test ./tunnel/ -run '^$' -bench CompareOpenSSH -benchtime 1x
//
// It prints a table with ratios (ours / OpenSSH; for latency OpenSSH / ours).
// Our client runs in its own process (RunAppProcess, the test binary as
// ClientProcessMain, tuned by TuneRelayProcess), as the daemon runs it
// through `ebrainpool x11-client`; EBP_BENCH_CLIENT=inprocess runs it in
// the benchmark process with default runtime settings instead (RunApp).
// Our endpoint is a separate process tuned by TuneRelayProcess, as
// `ebrainpool guest-sshd` is.
func BenchmarkCompareOpenSSH(b *testing.B) {
	x := startXvfb(b)
	needBin(b, "x11perf")
	needBin(b, "sshd")
	needBin(b, "ssh")
	const bulkBytes = 256 << 20
	type row struct {
		name, unit          string
		direct, ours, stock float64
		lowerIsBetter       bool
	}
	var rows []row
	// Rounds alternate ours and stock; the best of the rounds counts, which
	// filters out other load on the machine.
	const rounds = 3
	for range b.N {
		rows = rows[:0]
		for _, t := range []struct{ name, test string }{
			{"x11perf -prop (round trips)", "-prop"},
			{"x11perf -putimage100", "-putimage100"},
		} {
			argv := []string{"x11perf", "-repeat", "2", "-time", "2", t.test}
			direct := runDirect(b, x, argv)
			var ours, stock float64
			for range rounds {
				ours = max(ours, benchOurs(b, x, argv, io.Discard).rate)
				stock = max(stock, benchStock(b, x, argv).rate)
			}
			rows = append(rows, row{name: t.name, unit: "ops/s", direct: direct, ours: ours, stock: stock})
		}
		var oursLat, stockLat []float64
		for range 10 {
			oursLat = append(oursLat, benchOurs(b, nil, []string{"true"}, io.Discard).seconds*1000)
			stockLat = append(stockLat, benchStock(b, nil, []string{"true"}).seconds*1000)
		}
		rows = append(rows, row{name: "connect+auth+exec `true` (median of 10)", unit: "ms",
			ours: median(oursLat), stock: median(stockLat), lowerIsBetter: true})
		bulk := []string{"head", "-c", strconv.Itoa(bulkBytes), "/dev/zero"}
		var o, s float64
		for range rounds {
			o = max(o, bulkBytes/(1<<20)/benchOurs(b, nil, bulk, io.Discard).seconds)
			s = max(s, bulkBytes/(1<<20)/benchStock(b, nil, bulk).seconds)
		}
		rows = append(rows, row{name: "bulk stdout 256 MiB through the forward", unit: "MiB/s", ours: o, stock: s})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| measure | unit | direct on Xvfb | ours (Go client + endpoint) | stock ssh -X + sshd -i | ratio ours vs OpenSSH |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := r.ours / r.stock
		if r.lowerIsBetter {
			ratio = r.stock / r.ours
		}
		d := "—"
		if r.direct > 0 {
			d = fmt.Sprintf("%.0f", r.direct)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %.1f | %.1f | %.2f× |\n", r.name, r.unit, d, r.ours, r.stock, ratio)
	}
	fmt.Print(sb.String())
}

type benchResult struct {
	rate    float64 // x11perf ops/s, if the command was x11perf
	seconds float64 // wall time of connect + run
}

var x11perfRate = regexp.MustCompile(`\(\s*([0-9.]+)/sec\)`)

// parseX11perf returns the last rate x11perf printed (the average line
// when -repeat > 1).
func parseX11perf(tb testing.TB, out string) float64 {
	m := x11perfRate.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		tb.Fatalf("no rate in x11perf output: %q", out)
	}
	v, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	return v
}

func runDirect(tb testing.TB, x *xvfb, argv []string) float64 {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = x.env()
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%v direct: %v", argv, err)
	}
	return parseX11perf(tb, string(out))
}

func benchOurs(tb testing.TB, x *xvfb, argv []string, stdout io.Writer) benchResult {
	// EBP_BENCH_DISPLAY=trusted measures trusted display access (the
	// default is the protected mode, as sessions run).
	res, err := benchOursWith(tb, benchPath{trusted: os.Getenv("EBP_BENCH_DISPLAY") == "trusted"}, x, argv, stdout)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// benchPath is how a measured session runs: across a delay link (nil:
// loopback), through stock ssh instead of ours, trusted display access.
type benchPath struct {
	link    *testbed.Link
	stock   bool
	trusted bool
}

func (p benchPath) String() string {
	s := "ours"
	if p.stock {
		s = "stock"
	}
	if p.trusted {
		return s + " trusted"
	}
	return s + " untrusted"
}

// benchOursWith is benchOurs along p; stdout nil is /dev/null. An error
// is the command's failure (the rig's are fatal).
func benchOursWith(tb testing.TB, p benchPath, x *xvfb, argv []string, stdout io.Writer) (benchResult, error) {
	r := newRig(tb, rigOptions{command: argv, link: p.link})
	var out strings.Builder
	cfg := r.clientConfig(x, ShellJoin(argv))
	cfg.Stdout = stdout
	if stdout == io.Discard || stdout == nil {
		// As for stock ssh: output straight to /dev/null (a client
		// process would otherwise relay it through a pipe to io.Discard).
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			tb.Fatal(err)
		}
		defer devnull.Close()
		cfg.Stdout = devnull
	}
	if argv[0] == "x11perf" {
		cfg.Stdout = &out
	}
	cfg.TrustedDisplay = p.trusted
	var stderr strings.Builder
	cfg.Stderr = &stderr
	start := time.Now()
	var st int
	run := func() (err error) {
		if os.Getenv("EBP_BENCH_CLIENT") == "inprocess" {
			st, err = RunApp(context.Background(), cfg)
		} else {
			st, err = RunAppProcess(context.Background(), clientProcess(tb), cfg)
		}
		return err
	}
	var err error
	if p.link != nil {
		// The client process starts on this thread, in the requester's
		// namespace, and dials from there.
		err = p.link.InRequester(run)
	} else {
		err = run()
	}
	res := benchResult{seconds: time.Since(start).Seconds()}
	waitDone(tb, r.fwd, 10*time.Second)
	r.checkClean(tb)
	if err != nil || st != 0 {
		return res, fmt.Errorf("ours %v: status %d, %v: %s", argv, st, err, lastLine(stderr.String()))
	}
	if argv[0] == "x11perf" {
		res.rate = parseX11perf(tb, out.String())
	}
	return res, nil
}

func benchStock(tb testing.TB, x *xvfb, argv []string) benchResult {
	res, err := benchStockWith(tb, benchPath{stock: true, trusted: true}, x, argv)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// benchStockWith is benchStock along p (-X with ForwardX11Trusted as
// p.trusted says; from the requester's namespace across p.link).
func benchStockWith(tb testing.TB, p benchPath, x *xvfb, argv []string) (benchResult, error) {
	r := newRig(tb, rigOptions{sshd: true, link: p.link})
	var extra []string
	if x != nil {
		extra = []string{"-X", "-o", "ForwardX11Trusted=" + map[bool]string{true: "yes", false: "no"}[p.trusted]}
	}
	cmd := r.sshCommand(tb, context.Background(), "root", extra, ShellJoin(argv))
	if p.link != nil {
		cmd = p.link.RequesterCommand(context.Background(), cmd.Args...)
	}
	if x != nil {
		cmd.Env = x.env()
	} else {
		cmd.Env = append(os.Environ(), "DISPLAY=")
	}
	var out, stderr strings.Builder
	if argv[0] == "x11perf" {
		cmd.Stdout = &out
	}
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	res := benchResult{seconds: time.Since(start).Seconds()}
	waitDone(tb, r.fwd, 10*time.Second)
	r.checkClean(tb)
	if err != nil {
		return res, fmt.Errorf("stock %v: %v: %s", argv, err, lastLine(stderr.String()))
	}
	if argv[0] == "x11perf" {
		res.rate = parseX11perf(tb, out.String())
	}
	return res, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkX11perfOurs runs one x11perf test through our client and
// endpoint only (X11PERF_TEST, default -putimage100), for profiling.
func BenchmarkX11perfOurs(b *testing.B) {
	benchX11perf(b, func(x *xvfb, argv []string) float64 { return benchOurs(b, x, argv, io.Discard).rate })
}

// BenchmarkX11perfStock is BenchmarkX11perfOurs through stock ssh -X and sshd -i.
func BenchmarkX11perfStock(b *testing.B) {
	benchX11perf(b, func(x *xvfb, argv []string) float64 { return benchStock(b, x, argv).rate })
}

// benchX11perf reports the rate of X11PERF_TEST run through path.
func benchX11perf(b *testing.B, path func(x *xvfb, argv []string) float64) {
	x := startXvfb(b)
	needBin(b, "x11perf")
	test := cmp.Or(os.Getenv("X11PERF_TEST"), "-putimage100")
	for range b.N {
		b.ReportMetric(path(x, []string{"x11perf", "-repeat", "1", "-time", "3", test}), "ops/s")
	}
}
