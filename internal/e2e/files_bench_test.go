package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// The workload both mounts run in the sandbox (perl, from the host's
// /usr): sequential write and read of 256 MiB, stat of 2,000 small
// files, open-read-close of 500 others; it prints seconds, seconds,
// seconds and the median open-read-close in microseconds.
const benchWorkload = `#!/usr/bin/perl
use strict; use Time::HiRes qw(time);
my ($d, $out) = @ARGV;
for (1..100) { last if -e "$d/r.bin"; select(undef, undef, undef, 0.1) }
my $buf = "x" x (1<<20);
my $t = time; open(my $f, ">", "$d/w.bin") or die "w.bin: $!"; for (1..256) { syswrite($f, $buf) == 1<<20 or die "write: $!" } close($f) or die; my $w = time - $t;
$t = time; open($f, "<", "$d/r.bin") or die "r.bin: $!"; my $n = 0; while (my $k = sysread($f, my $b, 1<<20)) { $n += $k } close($f); my $r = time - $t;
die "read $n bytes" unless $n == 256<<20;
$t = time; for my $i (0..1999) { my @s = stat("$d/small/f$i") or die "stat f$i: $!" } my $st = time - $t;
my @l;
for my $i (0..499) { my $t0 = time; open(my $g, "<", "$d/ocr/g$i") or die; sysread($g, my $b, 4096); close($g); push @l, time - $t0 }
@l = sort { $a <=> $b } @l;
open(my $o, ">", $out) or die "$out: $!"; printf $o "%.4f %.4f %.4f %.1f\n", $w, $r, $st, $l[250]*1e6; close($o);
unlink "$d/w.bin";
`

type fileBench struct{ write, read, stat, ocr float64 } // s, s, s, µs

func parseFileBench(tb testing.TB, s string) fileBench {
	var r fileBench
	if _, err := fmt.Sscan(s, &r.write, &r.read, &r.stat, &r.ocr); err != nil {
		tb.Fatalf("workload output %q: %v", s, err)
	}
	return r
}

// BenchmarkSharedFiles: a folder brought into a peer's app (sshfs in the
// sandbox over the session's SSH connection to the requester's SFTP
// server) against sshfs through stock OpenSSH (ssh -s sftp to
// sftp-server as the requester, sshd on loopback), mounted in the same
// sandbox by the same privileged stage, with the same sshfs options and
// workload, alternating, in one run. Also: how much opening a 10 MB file
// adds to a launch. Run with -benchtime 1x.
func BenchmarkSharedFiles(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireTools(b, "sshfs", "sshd", "ssh", "perl", "xlogo")
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv(filesBenchRoundsEnv)); err == nil && v > 0 {
		rounds = v
	}
	for i := 0; i < b.N; i++ {
		host := newNode(b, true)
		req := newNode(b, false)
		req.startDisplay(b)
		for name, script := range map[string]string{
			"ebp-test-workload": benchWorkload,
			"ebp-test-bench":    "#!/bin/sh\nfor d in \"$HOME\"/*\"'s bench\"; do exec /usr/local/bin/ebp-test-workload \"$d\" \"$d/ours.txt\"; done\nexit 9\n",
			"ebp-test-read":     "#!/bin/sh\ncat \"$1\" > /dev/null\n",
			"ebp-test-noop":     "#!/bin/sh\nexit 0\n",
		} {
			p := filepath.Join("/usr/local/bin", name)
			os.WriteFile(p, []byte(script), 0o755)
			b.Cleanup(func() { os.Remove(p) })
		}
		dir := filepath.Join(host.u.Home, ".local/share/applications")
		os.MkdirAll(dir, 0o755)
		for id, e := range map[string]string{
			"ebp-bench": "Name=Bench\nExec=/usr/local/bin/ebp-test-bench\n",
			"ebp-read":  "Name=Reader\nExec=/usr/local/bin/ebp-test-read %f\nMimeType=application/octet-stream;\n",
			"ebp-noop":  "Name=Noop\nExec=/usr/local/bin/ebp-test-noop\n",
		} {
			os.WriteFile(filepath.Join(dir, id+".desktop"), []byte("[Desktop Entry]\nType=Application\n"+e), 0o644)
		}
		exec.Command("chown", "-R", host.u.Name+":", filepath.Join(host.u.Home, ".local")).Run()
		host.u.MustRun(b, "share", "ebp-bench", "ebp-read", "ebp-noop")
		startDaemon(b, host)
		startDaemon(b, req, "--peer", host.peerArg("bob"))
		var reqFP string
		fmt.Sscan(strings.Fields(req.u.MustRun(b, "id").Stdout)[0], &reqFP)

		// The requester's data.
		bench := filepath.Join(req.u.Home, "bench")
		os.MkdirAll(filepath.Join(bench, "small"), 0o755)
		os.MkdirAll(filepath.Join(bench, "ocr"), 0o755)
		big := make([]byte, 256<<20)
		rand.Read(big)
		os.WriteFile(filepath.Join(bench, "r.bin"), big, 0o644)
		os.WriteFile(filepath.Join(req.u.Home, "ten.bin"), big[:10<<20], 0o644)
		os.WriteFile(filepath.Join(req.u.Home, "one.bin"), big[:1<<10], 0o644)
		for j := 0; j < 2000; j++ {
			os.WriteFile(filepath.Join(bench, "small", "f"+strconv.Itoa(j)), []byte("small file\n"), 0o644)
		}
		for j := 0; j < 500; j++ {
			os.WriteFile(filepath.Join(bench, "ocr", "g"+strconv.Itoa(j)), []byte("small file\n"), 0o644)
		}
		exec.Command("chown", "-R", req.u.Name+":", bench, filepath.Join(req.u.Home, "ten.bin"), filepath.Join(req.u.Home, "one.bin")).Run()

		// Ours: the app runs the workload in the folder brought in.
		first := true
		ours := func() fileBench {
			run := req.u.Command(b.Context(), "run", "--folder", bench, "bob", "ebp-bench")
			var out strings.Builder
			run.Stdout, run.Stderr = &out, &out
			run.Start()
			if first {
				host.u.MustRun(b, "allow", "--remember", waitPending(b, host))
				first = false
			}
			if err := run.Wait(); err != nil {
				b.Fatalf("run: %v\n%s", err, out.String())
			}
			res, err := os.ReadFile(filepath.Join(bench, "ours.txt"))
			if err != nil {
				b.Fatal(err)
			}
			os.Remove(filepath.Join(bench, "ours.txt"))
			return parseFileBench(b, string(res))
		}
		stock := stockSSHFS(b, host, req, reqFP, bench)

		// How long the sandbox's processes waited for its CPU limit in
		// each: ours runs its SSH endpoint (the encryption of the
		// session) in the sandbox, stock OpenSSH its ssh client outside.
		var o, s []fileBench
		var oThrottled, sThrottled time.Duration
		for r := 0; r < rounds; r++ {
			t0 := cpuThrottled(host.u.Name)
			o = append(o, ours())
			t1 := cpuThrottled(host.u.Name)
			s = append(s, stock())
			oThrottled += t1 - t0
			sThrottled += cpuThrottled(host.u.Name) - t1
		}
		mo, ms := medianBench(o), medianBench(s)
		b.Logf("| metric | ours | sshfs + OpenSSH | ratio |")
		b.Logf("|---|---|---|---|")
		for _, m := range []struct {
			name   string
			o, s   float64
			mbytes float64
		}{{"sequential write 256 MiB", mo.write, ms.write, 256}, {"sequential read 256 MiB", mo.read, ms.read, 256},
			{"stat of 2,000 files", mo.stat, ms.stat, 0}, {"open-read-close (median, µs)", mo.ocr, ms.ocr, 0}} {
			if m.mbytes > 0 {
				b.Logf("| %s | %.0f MiB/s | %.0f MiB/s | %.2fx |", m.name, m.mbytes/m.o, m.mbytes/m.s, m.s/m.o)
			} else if strings.Contains(m.name, "µs") {
				b.Logf("| %s | %.0f µs | %.0f µs | %.2fx |", m.name, m.o, m.s, m.s/m.o)
			} else {
				b.Logf("| %s | %.0f ms | %.0f ms | %.2fx |", m.name, m.o*1000, m.s*1000, m.s/m.o)
			}
		}
		b.Logf("rounds: ours %+v; stock %+v", o, s)
		b.Logf("the sandbox throttled by its CPU limit: %v in ours, %v in stock's (%d rounds each)", oThrottled, sThrottled, rounds)

		// A launch opening a 10 MB file against one opening nothing.
		timeRun := func(args ...string) time.Duration {
			run := req.u.Command(b.Context(), args...)
			var out strings.Builder
			run.Stdout, run.Stderr = &out, &out
			t0 := time.Now()
			run.Start()
			done := make(chan error, 1)
			go func() { done <- run.Wait() }()
			for {
				select {
				case err := <-done:
					if err != nil {
						b.Fatalf("%v: %v\n%s", args, err, out.String())
					}
					return time.Since(t0)
				case <-time.After(200 * time.Millisecond):
					if r := host.u.Run(b, "pending", "--json"); strings.Contains(r.Stdout, `"id"`) {
						host.u.MustRun(b, "allow", "--remember", waitPending(b, host))
					}
				}
			}
		}
		timeRun("run", "bob", "ebp-noop")
		timeRun("open", "--app", "ebp-read", filepath.Join(req.u.Home, "ten.bin"))
		// And one opening a 1 KiB file: what bringing a file costs (the
		// open command's catalog query, the mount) apart from its size.
		var plain, withFile, tiny []time.Duration
		for r := 0; r < 7; r++ {
			plain = append(plain, timeRun("run", "bob", "ebp-noop"))
			withFile = append(withFile, timeRun("open", "--app", "ebp-read", filepath.Join(req.u.Home, "ten.bin")))
			tiny = append(tiny, timeRun("open", "--app", "ebp-read", filepath.Join(req.u.Home, "one.bin")))
		}
		short := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
		b.Logf("launch, app exiting at once: median %s; opening a 10 MB file (read whole): median %s, added %s (goal: under 100ms); "+
			"opening a 1 KiB file: median %s (bringing a file %s, its 10 MB %s)", short(median(plain)), short(median(withFile)),
			short(median(withFile)-median(plain)), short(median(tiny)), short(median(tiny)-median(plain)), short(median(withFile)-median(tiny)))
		b.Logf("runs: plain %v; 10 MB %v; 1 KiB %v", plain, withFile, tiny)
		// What open asks before the launch: the apps for the file (the
		// peers' catalogs, kept 35 s by the daemon) against a command that
		// asks the daemon only what it knows (peers: its start and a call
		// on the bus).
		var lookup, bare []time.Duration
		for r := 0; r < 7; r++ {
			lookup = append(lookup, timeRun("open", "--list", filepath.Join(req.u.Home, "one.bin")))
			bare = append(bare, timeRun("peers"))
		}
		b.Logf("choosing the app: open --list median %s, one asking the daemon only what it knows (peers) %s", short(median(lookup)), short(median(bare)))
	}
}

// filesBenchRoundsEnv sets BenchmarkSharedFiles's rounds of each (default 5).
const filesBenchRoundsEnv = "EBP_FILES_BENCH_ROUNDS"

// cpuThrottled is how long the user's sandboxes have been held back by
// their CPU limit (cpu.stat below the user's cgroup directories: v1's
// throttled_time in ns, v2's throttled_usec).
func cpuThrottled(user string) time.Duration {
	var total time.Duration
	for _, root := range []string{"/sys/fs/cgroup/cpu/ebrainpool/" + user, "/sys/fs/cgroup/ebrainpool/" + user} {
		filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.Name() != "cpu.stat" || filepath.Dir(p) == root {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, line := range strings.Split(string(b), "\n") {
				var v int64
				if _, err := fmt.Sscanf(line, "throttled_time %d", &v); err == nil {
					total += time.Duration(v)
				} else if _, err := fmt.Sscanf(line, "throttled_usec %d", &v); err == nil {
					total += time.Duration(v) * time.Microsecond
				}
			}
			return nil
		})
	}
	return total
}

func medianBench(rs []fileBench) fileBench {
	pick := func(f func(fileBench) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		for i := range v {
			for j := i + 1; j < len(v); j++ {
				if v[j] < v[i] {
					v[i], v[j] = v[j], v[i]
				}
			}
		}
		return v[len(v)/2]
	}
	return fileBench{pick(func(r fileBench) float64 { return r.write }), pick(func(r fileBench) float64 { return r.read }),
		pick(func(r fileBench) float64 { return r.stat }), pick(func(r fileBench) float64 { return r.ocr })}
}

// stockSSHFS prepares sshd on loopback for the requester and returns a
// run of the workload on sshfs through it, mounted in the requester's
// sandbox on the host by the same privileged stage (guest-mount).
func stockSSHFS(b *testing.B, host, req *node, reqFP, bench string) func() fileBench {
	dir, _ := os.MkdirTemp("", "ebp-bench-sshd")
	os.Chmod(dir, 0o755)
	b.Cleanup(func() { os.RemoveAll(dir) })
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		b.Fatalf("ssh-keygen: %v %s", err, out)
	}
	exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host")).Run()
	os.Chown(key, req.u.UID, req.u.GID)
	pub, _ := os.ReadFile(key + ".pub")
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o644)
	os.MkdirAll("/run/sshd", 0o755)
	// sshd without PAM refuses accounts whose password is locked ("!", as
	// useradd leaves it), keys or not: no password instead.
	if out, err := exec.Command("usermod", "-p", "*", req.u.Name).CombinedOutput(); err != nil {
		b.Fatalf("usermod: %v %s", err, out)
	}
	cfg := fmt.Sprintf("HostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\nUsePAM no\nStrictModes no\nPidFile none\nPasswordAuthentication no\nSubsystem sftp /usr/lib/openssh/sftp-server\nListenAddress 127.0.0.1\nLogLevel ERROR\n", dir, dir)
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o644)
	port := freeLoopbackPort(b)
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-p", strconv.Itoa(port), "-f", filepath.Join(dir, "sshd_config"))
	if err := sshd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sshd.Process.Kill(); sshd.Wait() })
	time.Sleep(300 * time.Millisecond)
	return func() fileBench {
		fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		a, z := os.NewFile(uintptr(fds[0]), "ssh"), os.NewFile(uintptr(fds[1]), "sshfs")
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		defer cancel()
		ssh := exec.CommandContext(ctx, "ssh", "-i", key, "-p", strconv.Itoa(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "LogLevel=ERROR", "-s", req.u.Name+"@127.0.0.1", "sftp")
		ssh.Stdin, ssh.Stdout = a, a
		ssh.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(req.u.UID), Gid: uint32(req.u.GID)}}
		var sshErr strings.Builder
		ssh.Stderr = &sshErr
		// sshfs's stdin through fd 4 (an asynchronous command's stdin is
		// /dev/null before its redirections); the shell lets go of the connection (fd 3),
		// so the mount answers ENOTCONN instead of hanging if sshfs fails.
		script := fmt.Sprintf(`exec 4<&0; sshfs -f -o passive,attr_timeout=1,entry_timeout=1 x:%s /dev/fd/3 0<&4 4<&- 2>/tmp/sshfs.err & p=$!
exec 0</dev/null 1>/dev/null 3<&- 4<&-
/usr/local/bin/ebp-test-workload "$HOME/stock bench" /tmp/stock.txt; kill $p; wait; cat /tmp/sshfs.err >&2; cat /tmp/stock.txt >&2`, bench)
		in := host.u.Command(ctx, "sandbox", "exec", "--root", reqFP, "--", "/run/ebrainpool/ebrainpool", "guest-mount", "--share", "stock bench", "--", "/bin/sh", "-c", script)
		in.Stdin, in.Stdout = z, z
		var res strings.Builder
		in.Stderr = &res
		if err := ssh.Start(); err != nil {
			b.Fatal(err)
		}
		if err := in.Start(); err != nil {
			b.Fatal(err)
		}
		a.Close()
		z.Close()
		err := in.Wait()
		ssh.Process.Kill()
		ssh.Wait()
		if err != nil {
			b.Fatalf("stock sshfs run: %v\n%s\nssh: %s", err, res.String(), sshErr.String())
		}
		lines := strings.Split(strings.TrimSpace(res.String()), "\n")
		return parseFileBench(b, lines[len(lines)-1])
	}
}

func freeLoopbackPort(b testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
