package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const netnsDir = "/run/netns"

// ownerFile, in a bed's directory, names the process that owns the bed.
const ownerFile = "owner"

// writeOwner records the current process (pid and start time) as the owner
// of the bed in dir.
func writeOwner(dir string) error {
	pid := os.Getpid()
	st, err := procStartTime(pid)
	if err != nil {
		return fmt.Errorf("test bed owner: %w", err)
	}
	data := fmt.Sprintf("%d %d\n", pid, st)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(data), 0o644); err != nil {
		return fmt.Errorf("test bed owner: %w", err)
	}
	return nil
}

// ownerAlive reports whether the process recorded in dir still runs.
func ownerAlive(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscan(string(data), &pid, &st); err != nil {
		return false
	}
	cur, err := procStartTime(pid)
	return err == nil && cur == st
}

// CleanupStale removes test beds named prefix-<id> whose owning process is
// gone: it kills the processes in their network namespaces, deletes the
// namespaces and removes their directories. Beds of live processes, such as
// another test binary running in parallel, are left alone.
func CleanupStale(ctx context.Context, prefix string, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ids := map[string]bool{}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("listing network namespaces: %w", err)
	}
	for _, e := range entries {
		if id, ok := bedID(prefix, e.Name()); ok {
			ids[id] = true
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*"))
	for _, d := range dirs {
		if id, ok := bedID(prefix, filepath.Base(d)); ok {
			ids[id] = true
		}
	}
	var errs []error
	for id := range ids {
		dir := filepath.Join(os.TempDir(), id)
		if ownerAlive(dir) {
			continue
		}
		logf("removing stale test bed %s", id)
		for _, e := range entries {
			if other, ok := bedID(prefix, e.Name()); ok && other == id {
				errs = append(errs, removeNetns(ctx, e.Name()))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bedID returns "prefix-<id>" for a name "prefix-<id>" or "prefix-<id>-<suffix>".
func bedID(prefix, name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok || rest == "" {
		return "", false
	}
	id, _, _ := strings.Cut(rest, "-")
	if len(id) != 6 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", false
	}
	return prefix + "-" + id, true
}

// removeNetns kills every process still in the network namespace, by pid,
// and deletes the namespace. A missing namespace is not an error.
func removeNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := output(ctx, "ip", "netns", "pids", name)
		if err != nil {
			return err
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network namespace %s: processes %v survive SIGKILL", name, pids)
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := run(ctx, "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("deleting network namespace: %w", err)
	}
	return nil
}
