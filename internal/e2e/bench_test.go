package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkLaunchLatency: request -> window mapped on the requester's
// display, through the daemons (auto-allow rule), with the requester's
// sandbox warm and cold, against stock `ssh -X` + `sshd -i` started through
// attach in the same sandbox, in the same run. Run with -benchtime 1x.
func BenchmarkLaunchLatency(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireTools(b, "xlogo", "sshd", "ssh")
	const warmN, coldN = 7, 5
	for i := 0; i < b.N; i++ {
		host := newNode(b, true)
		req := newNode(b, false)
		req.startDisplay(b)
		shareApp(b, host, "xlogo", "X Logo", "xlogo")
		startDaemon(b, host)
		startDaemon(b, req, "--peer", host.peerArg("bob"))
		var reqFP string
		fmt.Sscan(strings.Fields(req.u.MustRun(b, "id").Stdout)[0], &reqFP)

		launch := func(first bool) time.Duration {
			run := req.u.Command(b.Context(), "run", "bob", "xlogo")
			t0 := time.Now()
			run.Start()
			if first {
				host.u.MustRun(b, "allow", "--remember", waitPending(b, host))
			}
			req.x.WaitWindow(b, "xlogo", true, 30*time.Second)
			d := time.Since(t0)
			var ss []struct{ ID string }
			json.Unmarshal([]byte(req.u.MustRun(b, "sessions", "--json").Stdout), &ss)
			for _, s := range ss {
				req.u.MustRun(b, "end", s.ID)
			}
			req.x.WaitWindow(b, "xlogo", false, 10*time.Second)
			run.Wait()
			return d
		}
		launch(true) // remember the decision: the rest is auto-allowed
		var warm, cold, stock []time.Duration
		for j := 0; j < warmN; j++ {
			warm = append(warm, launch(false))
		}
		for j := 0; j < coldN; j++ {
			host.u.MustRun(b, "sandbox", "stop", reqFP)
			cold = append(cold, launch(false))
		}
		// Stock OpenSSH into the same sandbox.
		priv, _, signer := requesterKey(b)
		host.u.MustRun(b, "sandbox", "start", reqFP)
		handoff, hostKey := stockSSHD(b, host.u, reqFP, signer.PublicKey())
		known := b.TempDir() + "/known_hosts"
		for j := 0; j < warmN; j++ {
			fwd, err := tunnel.OpenForward(b.Context(), tunnel.ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: handoff})
			if err != nil {
				b.Fatal(err)
			}
			port := strconv.Itoa(fwd.Addr().Port)
			os.WriteFile(known, []byte(tunnel.KnownHostsLine("127.0.0.1", fwd.Addr().Port, hostKey)+"\n"), 0o600)
			cmd := req.x.Command("ssh", "-X", "-p", port, "-i", priv, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile="+known,
				"-o", "BatchMode=yes", "-F", "/dev/null", "guest@127.0.0.1", "xlogo")
			t0 := time.Now()
			cmd.Start()
			req.x.WaitWindow(b, "xlogo", true, 30*time.Second)
			stock = append(stock, time.Since(t0))
			cmd.Process.Kill()
			cmd.Wait()
			req.x.WaitWindow(b, "xlogo", false, 10*time.Second)
			fwd.Close()
			<-fwd.Done()
		}
		mw, mc, ms := median(warm), median(cold), median(stock)
		b.ReportMetric(float64(mw.Milliseconds()), "warm-ms")
		b.ReportMetric(float64(mc.Milliseconds()), "cold-ms")
		b.ReportMetric(float64(ms.Milliseconds()), "stock-ssh-ms")
		b.Logf("\n| launch, request -> window mapped (median) | time | vs stock ssh -X |\n|---|---|---|\n"+
			"| eBrainPool, warm sandbox (n=%d) | %s | %.2fx |\n| eBrainPool, cold sandbox (n=%d) | %s | %.2fx |\n| stock ssh -X + sshd -i in the same sandbox (n=%d) | %s | 1.00x |",
			warmN, mw.Round(time.Millisecond), float64(mw)/float64(ms), coldN, mc.Round(time.Millisecond), float64(mc)/float64(ms), warmN, ms.Round(time.Millisecond))
	}
}

var x11perfRate = regexp.MustCompile(`\(\s*([0-9.]+)/sec\)`)

// BenchmarkX11InSandbox: x11perf through our Go client + endpoint and
// through stock ssh -X + sshd -i, both into the same sandbox, same run.
func BenchmarkX11InSandbox(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireTools(b, "x11perf", "sshd", "ssh")
	for i := 0; i < b.N; i++ {
		host := testenv.NewUser(b, binary, true)
		x := testenv.StartXvfb(b, 0, 0)
		priv, pub, signer := requesterKey(b)
		rate := func(out string) float64 {
			m := x11perfRate.FindAllStringSubmatch(out, -1)
			if len(m) == 0 {
				b.Fatalf("no x11perf result in %q", out)
			}
			v, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
			return v
		}
		ours := func(test string) float64 {
			g := host.Command(b.Context(), "grant", "--key", pub, "--app", "x11perf -repeat 2 -time 2 "+test, "--listen", "127.0.0.1")
			so, _ := g.StdoutPipe()
			g.Start()
			sc := bufio.NewScanner(so)
			var lines []string
			for len(lines) < 4 && sc.Scan() {
				lines = append(lines, sc.Text())
			}
			key, err := tunnel.ParseAuthorizedKey(strings.SplitN(lines[1], " ", 2)[1])
			if err != nil {
				b.Fatal(err)
			}
			port := strings.Fields(lines[3])[3]
			var out strings.Builder
			code, err := tunnel.RunApp(b.Context(), tunnel.ClientConfig{Addr: "127.0.0.1:" + port, HostKey: key, Identity: signer,
				Command: tunnel.ShellJoin(strings.Fields("x11perf -repeat 2 -time 2 " + test)), Display: x.Display, XAuthority: x.XAuthority, Stdout: &out, Stderr: &out})
			if err != nil || code != 0 {
				b.Fatalf("ours %s: %d %v\n%s", test, code, err, out.String())
			}
			g.Wait()
			return rate(out.String())
		}
		peer := "x11perf-stock"
		host.MustRun(b, "sandbox", "start", peer)
		handoff, hostKey := stockSSHD(b, host, peer, signer.PublicKey())
		stock := func(test string) float64 {
			fwd, err := tunnel.OpenForward(b.Context(), tunnel.ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: handoff})
			if err != nil {
				b.Fatal(err)
			}
			defer fwd.Close()
			known := b.TempDir() + "/known_hosts"
			os.WriteFile(known, []byte(tunnel.KnownHostsLine("127.0.0.1", fwd.Addr().Port, hostKey)+"\n"), 0o600)
			out, err := x.Command("ssh", "-X", "-p", strconv.Itoa(fwd.Addr().Port), "-i", priv, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile="+known,
				"-o", "BatchMode=yes", "-F", "/dev/null", "guest@127.0.0.1", "x11perf -repeat 2 -time 2 "+test).CombinedOutput()
			if err != nil {
				b.Fatalf("stock %s: %v\n%s", test, err, out)
			}
			return rate(string(out))
		}
		direct := func(test string) float64 {
			out, err := x.Command("x11perf", "-repeat", "2", "-time", "2", test).CombinedOutput()
			if err != nil {
				b.Fatal(err)
			}
			return rate(string(out))
		}
		table := "\n| x11perf, into the same sandbox | direct on Xvfb | eBrainPool (Go client + endpoint) | stock ssh -X + sshd -i | ratio |\n|---|---|---|---|---|\n"
		for _, test := range []string{"-prop", "-putimage100"} {
			d, o, s := direct(test), max(ours(test), ours(test)), max(stock(test), stock(test))
			table += fmt.Sprintf("| %s (ops/s, best of 2) | %.0f | %.0f | %.0f | %.2fx |\n", test, d, o, s, o/s)
			b.ReportMetric(o/s, strings.TrimPrefix(test, "-")+"-ratio")
		}
		b.Log(table)
	}
}
