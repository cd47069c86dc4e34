package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lxc "github.com/lxc/go-lxc"
)

// BenchOptions configures Bench.
type BenchOptions struct {
	Peer   string
	Cycles int  // start / exec / stop cycles through the Go API
	Warm   int  // warm execs per cycle
	CLI    bool // also time Debian's lxc-start / lxc-attach on the same container
}

// The LXC tools the benchmark compares with: on systemd hosts with cgroup v2
// Debian's lxc-unpriv-start / lxc-unpriv-attach (systemd-run --user --scope
// -p Delegate=yes around lxc-start / lxc-attach), elsewhere the plain ones.
func lxcTools(systemdV2 bool) (start, attach string) {
	if systemdV2 {
		return "lxc-unpriv-start", "lxc-unpriv-attach"
	}
	return "lxc-start", "lxc-attach"
}

// BenchResult holds the measured durations and what leaked, if anything.
type BenchResult struct {
	ColdStart, WarmExec       []time.Duration // Go API: start+first exec, exec in a running container
	CLIColdStart, CLIWarmExec []time.Duration // lxc-start+lxc-attach, lxc-attach
	// Warm is what preparing the first start cost (the systemd driver's
	// helper in its delegated scope; nothing elsewhere).
	Warm                        time.Duration
	CLIStart                    string // the tools compared with
	CLIHasLimits                bool   // the tools' container got its pids limit
	CLILimitsNote               string // what was seen when it did not
	FDsBefore, FDsAfter         int
	MountsBefore, MountsAfter   int
	CgroupsBefore, CgroupsAfter int
}

// Bench runs start/exec/stop cycles through the Manager (the same code the
// app uses), optionally the same through the LXC command line tools, and
// counts file descriptors, mounts and cgroups before and after.
func (m *Manager) Bench(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	r := &BenchResult{}
	if err := m.Stop(ctx, o.Peer); err != nil {
		return nil, err
	}
	// What the manager keeps for its whole life (the systemd driver's
	// helper and its scope) is not a leak: have it before counting.
	t0 := time.Now()
	if err := m.Warm(ctx); err != nil {
		return nil, err
	}
	r.Warm = time.Since(t0)
	// Counted as after the cycles, without a cached liblxc handle (Stop's
	// may hold the container's log open: one descriptor more, before only).
	m.forget(containerName(o.Peer))
	r.FDsBefore, r.MountsBefore, r.CgroupsBefore = countFDs(), SandboxMounts(), m.countCgroups()
	run := func(args ...string) error {
		code, err := m.Run(ctx, o.Peer, ExecSpec{Args: args})
		if err == nil && code != 0 {
			err = fmt.Errorf("%v exited %d", args, code)
		}
		return err
	}
	for i := 0; i < o.Cycles; i++ {
		t := time.Now()
		if err := m.Start(ctx, o.Peer); err != nil {
			return nil, err
		}
		if err := run("/bin/true"); err != nil {
			return nil, err
		}
		r.ColdStart = append(r.ColdStart, time.Since(t))
		for j := 0; j < o.Warm; j++ {
			t := time.Now()
			if err := run("/bin/true"); err != nil {
				return nil, err
			}
			r.WarmExec = append(r.WarmExec, time.Since(t))
		}
		if err := m.Stop(ctx, o.Peer); err != nil {
			return nil, err
		}
	}
	// Release cached liblxc handles before counting.
	m.forget(containerName(o.Peer))
	r.FDsAfter, r.MountsAfter, r.CgroupsAfter = countFDs(), SandboxMounts(), m.countCgroups()
	if o.CLI {
		name := containerName(o.Peer)
		start, attachTool := lxcTools(pureV2(m.hs) && isSystemdHost())
		r.CLIStart = start
		for i := 0; i < o.Cycles; i++ {
			t := time.Now()
			if err := lxcTool(ctx, start, "-P", m.lxcpath, "-n", name); err != nil {
				return nil, err
			}
			attach := []string{"-P", m.lxcpath, "-n", name, "--clear-env", "-u", "1000", "-g", "1000", "--", "/bin/true"}
			if err := lxcTool(ctx, attachTool, attach...); err != nil {
				return nil, err
			}
			r.CLIColdStart = append(r.CLIColdStart, time.Since(t))
			if i == 0 {
				r.CLIHasLimits, r.CLILimitsNote = m.toolLimits(name)
			}
			for j := 0; j < o.Warm; j++ {
				t := time.Now()
				if err := lxcTool(ctx, "lxc-attach", attach...); err != nil {
					return nil, err
				}
				r.CLIWarmExec = append(r.CLIWarmExec, time.Since(t))
			}
			if err := lxcTool(ctx, "lxc-stop", "-k", "-P", m.lxcpath, "-n", name); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// toolLimits checks the limits of a container the LXC tools started.
func (m *Manager) toolLimits(name string) (bool, string) {
	c, err := lxc.NewContainer(name, m.lxcpath)
	if err != nil {
		return false, err.Error()
	}
	defer lxc.Release(c)
	p, err := payloadOf(c.InitPid(), m.hs)
	if err != nil {
		return false, err.Error()
	}
	if err := p.checkLimits(m.cfg.Limits, m.memsw); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func lxcTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// SandboxMounts counts the mounts that could be a sandbox's left behind in
// this process's mount namespace (anything under an LXC or eBrainPool path);
// other programs' mounts coming and going do not count.
func SandboxMounts() int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "lxc") || strings.Contains(line, "ebrainpool") || strings.Contains(line, "/ebp-") {
			n++
		}
	}
	return n
}

// countCgroups counts the cgroup directories below the user's directories
// (liblxc's reusable lxc.pivot directory excluded).
func (m *Manager) countCgroups() int {
	n := 0
	for _, d := range m.cg.roots() {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != d && filepath.Base(p) != "lxc.pivot" {
				n++
			}
			return nil
		})
	}
	return n
}

// Median of durations.
func Median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// WriteTable prints the result as a Markdown table with ratios against the
// LXC tools (ratio > 1: eBrainPool is faster).
func (r *BenchResult) WriteTable(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	ratio := func(ours, theirs []time.Duration) string {
		if len(theirs) == 0 || Median(ours) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", float64(Median(theirs))/float64(Median(ours)))
	}
	start, attach := "lxc-start", "lxc-attach"
	if r.CLIStart == "lxc-unpriv-start" {
		start, attach = lxcTools(true)
	}
	fmt.Fprintf(w, "| measure (median) | ebrainpool (go-lxc) | %s / %s | speed ratio |\n", start, attach)
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| cold start to first process inside (n=%d) | %s | %s | %s |\n", len(r.ColdStart), ms(Median(r.ColdStart)), ms(Median(r.CLIColdStart)), ratio(r.ColdStart, r.CLIColdStart))
	fmt.Fprintf(w, "| warm exec of /bin/true (n=%d) | %s | %s | %s |\n", len(r.WarmExec), ms(Median(r.WarmExec)), ms(Median(r.CLIWarmExec)), ratio(r.WarmExec, r.CLIWarmExec))
	if r.Warm > 0 {
		fmt.Fprintf(w, "\npreparing the first start (helper in its delegated scope): %s\n", ms(r.Warm))
	}
	if r.CLIStart != "" && !r.CLIHasLimits {
		fmt.Fprintf(w, "\nthe %s container ran WITHOUT its limits: %s\n", start, r.CLILimitsNote)
	}
	fmt.Fprintf(w, "\nleaks after %d cycles: fds %d -> %d, mounts %d -> %d, cgroups %d -> %d\n", len(r.ColdStart), r.FDsBefore, r.FDsAfter, r.MountsBefore, r.MountsAfter, r.CgroupsBefore, r.CgroupsAfter)
}
