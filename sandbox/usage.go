package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNoLimits means this host cannot put a sandbox under its limits, so it
// does not share apps.
var ErrNoLimits = errors.New("this host cannot limit sandboxes")

// payload is where a running container's cgroups are on the host, read from
// its init's /proc/PID/cgroup: one directory on cgroup v2, one per
// controller on v1. A container's own processes live in these directories
// and below them (attach puts them in a leaf such as .lxc).
type payload struct {
	v2   string            // the unified hierarchy's directory; "" on v1
	dirs map[string]string // v1: controller -> directory
}

// payloadOf finds the cgroups of the process pid.
func payloadOf(pid int, hs []hierarchy) (payload, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return payload{}, fmt.Errorf("reading the cgroups of pid %d: %w", pid, err)
	}
	return parsePayload(b, hs, pureV2(hs))
}

func parsePayload(procCgroup []byte, hs []hierarchy, v2 bool) (payload, error) {
	p := payload{dirs: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		// "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			for _, h := range hs {
				if h.V2 {
					if v2 {
						p.v2 = filepath.Join(h.Mount, f[2])
					}
					break
				}
			}
			continue
		}
		ctrls := strings.Split(f[1], ",")
		for _, h := range hs {
			if h.V2 || !h.has(ctrls[0]) {
				continue
			}
			for _, c := range ctrls {
				p.dirs[c] = filepath.Join(h.Mount, f[2])
			}
			break
		}
	}
	if p.v2 == "" && len(p.dirs) == 0 {
		return p, errors.New("no cgroup of the process is in a mounted hierarchy")
	}
	return p, nil
}

// dir is the directory holding a controller's files.
func (p payload) dir(controller string) (string, bool) {
	if p.v2 != "" {
		return p.v2, true
	}
	d, ok := p.dirs[controller]
	return d, ok
}

func (p payload) read(controller, file string) (string, error) {
	d, ok := p.dir(controller)
	if !ok {
		return "", fmt.Errorf("no %s cgroup", controller)
	}
	b, err := os.ReadFile(filepath.Join(d, file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// limitCheck is one limit as the kernel reports it.
type limitCheck struct {
	controller, file, want string
}

// limitChecks are the files that show the limits lim applied, with the
// values they must hold.
func limitChecks(lim Limits, v2, memsw bool) []limitCheck {
	page := int64(os.Getpagesize())
	mem := strconv.FormatInt(lim.MemoryBytes/page*page, 10)
	quota := strconv.FormatInt(int64(lim.CPUs*100000), 10)
	pids := strconv.Itoa(lim.Pids)
	if v2 {
		return []limitCheck{
			{"memory", "memory.max", mem},
			{"memory", "memory.swap.max", "0"},
			{"pids", "pids.max", pids},
			{"cpu", "cpu.max", quota + " 100000"},
		}
	}
	cs := []limitCheck{{"memory", "memory.limit_in_bytes", mem}}
	if memsw {
		cs = append(cs, limitCheck{"memory", "memory.memsw.limit_in_bytes", mem})
	}
	return append(cs, limitCheck{"pids", "pids.max", pids}, limitCheck{"cpu", "cpu.cfs_quota_us", quota})
}

// checkLimits verifies, from outside, that the container's cgroups hold
// its limits. It names every limit that is missing.
func (p payload) checkLimits(lim Limits, memsw bool) error {
	var bad []string
	for _, c := range limitChecks(lim, p.v2 != "", memsw) {
		got, err := p.read(c.controller, c.file)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s is not there (%v)", c.file, err))
		case got != c.want:
			bad = append(bad, fmt.Sprintf("%s is %q, not %q", c.file, got, c.want))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// pidsRefused is how many forks the container's pids limit has refused
// (pids.events: max N), -1 when it cannot be read.
func (p payload) pidsRefused() int64 {
	ev, err := p.read("pids", "pids.events")
	if err != nil {
		return -1
	}
	return pidsMaxEvents(ev)
}

// pidsLimit is the container's pids limit (pids.max), 0 for none or
// unknown.
func (p payload) pidsLimit() int {
	v, _ := p.read("pids", "pids.max")
	n, _ := strconv.Atoi(v) // "max": no limit
	return n
}

// pidsMaxEvents is the "max N" count of a pids.events file (-1 if absent).
func pidsMaxEvents(events string) int64 {
	for _, l := range strings.Split(events, "\n") {
		if v, ok := strings.CutPrefix(l, "max "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// processes counts the processes in the container's cgroups, its init and
// attached processes (which liblxc puts in child cgroups) included, those
// skip says are not the guest's excluded.
func (p payload) processes(skip func(pid int) bool) (int, error) {
	d, ok := p.dir("pids")
	if !ok {
		if d, ok = p.dir("memory"); !ok {
			return -1, errors.New("no pids or memory cgroup")
		}
	}
	n := 0
	err := filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // a leaf removed while walking
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && skip != nil && skip(pid) {
				continue
			}
			n++
		}
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("counting the processes in %s: %w", d, err)
	}
	return n, nil
}

// memory is the memory the container's processes use, in bytes.
func (p payload) memory() (int64, error) {
	file := "memory.usage_in_bytes"
	if p.v2 != "" {
		file = "memory.current"
	}
	s, err := p.read("memory", file)
	if err != nil {
		return -1, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// cpu is the CPU time the container's processes used since it started, or
// -1 when the cgroup does not tell.
func (p payload) cpu() time.Duration {
	var acct, stat []string
	if s, err := p.read("cpuacct", "cpuacct.usage"); err == nil && p.v2 == "" {
		acct = []string{s}
	}
	if s, err := p.read("cpu", "cpu.stat"); err == nil {
		stat = strings.Split(s, "\n")
	}
	return parseCPUTime(acct, stat)
}

func parseCPUTime(cpuacctUsage, cpuStat []string) time.Duration {
	if len(cpuacctUsage) > 0 {
		if ns, err := strconv.ParseInt(strings.TrimSpace(cpuacctUsage[0]), 10, 64); err == nil {
			return time.Duration(ns)
		}
	}
	for _, line := range cpuStat {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec "); ok {
			if us, err := strconv.ParseInt(v, 10, 64); err == nil {
				return time.Duration(us) * time.Microsecond
			}
		}
	}
	return -1
}
