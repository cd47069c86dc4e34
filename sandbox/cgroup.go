package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/mountinfo"
)

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	Mount string // e.g. /sys/fs/cgroup/memory
	V2    bool   // the unified hierarchy
	// Options are a v1 hierarchy's mount options, its controllers among
	// them (e.g. rw,cpu,cpuacct or rw,xattr,name=systemd).
	Options []string
}

// has reports whether a v1 hierarchy carries the controller.
func (h hierarchy) has(controller string) bool {
	for _, o := range h.Options {
		if o == controller {
			return true
		}
	}
	return false
}

// cgroupHierarchies lists the mounted cgroup hierarchies from mountinfo.
func cgroupHierarchies(mi []byte) []hierarchy {
	var out []hierarchy
	for _, m := range mountinfo.Parse(mi) {
		if m.Root != "/" { // a bind of a sub-cgroup (as in nested containers): skip
			continue
		}
		switch m.FSType {
		case "cgroup":
			var opts []string
			if m.SuperOptions != "" {
				opts = strings.Split(m.SuperOptions, ",")
			}
			out = append(out, hierarchy{Mount: m.Point, Options: opts})
		case "cgroup2":
			out = append(out, hierarchy{Mount: m.Point, V2: true})
		}
	}
	return out
}

// pureV2 reports whether the hierarchies are a pure cgroup v2 host.
func pureV2(hs []hierarchy) bool {
	for _, h := range hs {
		if !h.V2 {
			return false
		}
	}
	return len(hs) > 0
}

// userCgroupDirs are the per-user cgroup directories, one per v1 hierarchy.
// On hybrid hosts the unified (v2) hierarchy is left alone: it has no
// controllers there, and a user cannot move itself in it without owning a
// common ancestor.
func (l Layout) userCgroupDirs(hs []hierarchy, user string) []string {
	var dirs []string
	for _, h := range hs {
		if h.V2 && !pureV2(hs) {
			continue
		}
		dirs = append(dirs, filepath.Join(h.Mount, l.CgroupBase, user))
	}
	return dirs
}

// delegatedFiles are the files in a per-user v1 cgroup directory that the
// user must own to create children and move processes.
var delegatedFiles = []string{"cgroup.procs", "tasks", "cgroup.clone_children", "notify_on_release"}

// delegatedFilesV2 are the equivalents on a pure cgroup v2 host.
var delegatedFilesV2 = []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control"}

// createUserCgroup makes dir (and its parent base directory) and hands it to
// uid:gid. cpuset directories get the parent's cpus and mems, or children
// could hold no task.
func createUserCgroup(dir string, uid, gid int, v2 bool) error {
	base := filepath.Dir(dir)
	for _, d := range []string{base, dir} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			p := filepath.Join(d, f)
			cur, err := os.ReadFile(p)
			if err != nil || strings.TrimSpace(string(cur)) != "" {
				continue
			}
			parent, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
			if err != nil {
				return fmt.Errorf("reading parent %s: %w", f, err)
			}
			if err := os.WriteFile(p, parent, 0); err != nil {
				return fmt.Errorf("initialising %s: %w", p, err)
			}
		}
	}
	if v2 {
		// Enable the parent's controllers for the user's subtree.
		ctrl, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
		if err == nil {
			var enable []string
			for _, c := range strings.Fields(string(ctrl)) {
				enable = append(enable, "+"+c)
			}
			if len(enable) > 0 {
				_ = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0)
			}
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("handing cgroup %s to uid %d: %w", dir, uid, err)
	}
	files := delegatedFiles
	if v2 {
		files = delegatedFilesV2
	}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.Chown(p, uid, gid); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("handing %s to uid %d: %w", p, uid, err)
		}
	}
	return nil
}

// removeUserCgroup removes dir and its (empty) children, deepest first, then
// the base directory if nothing else is left in it.
func removeUserCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing cgroup %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		// Killed processes leave their cgroup a moment after the signal.
		var err error
		for try := 0; try < 100; try++ {
			if err = os.Remove(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("removing cgroup %s (processes still in it?): %w", dirs[i], err)
		}
	}
	_ = os.Remove(filepath.Dir(dir)) // fails while other users remain: fine
	return nil
}

// enterCgroups moves the calling process into the user's cgroup directories,
// so that liblxc creates the containers' cgroups below them. It fails with
// ErrNotSetUp when a directory is missing or not the user's.
func enterCgroups(dirs []string, user string) error {
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, d := range dirs {
		// Already there? (cheap check avoids rewriting on every call)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), pid, 0); err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("%w: cgroup %s is missing or not owned by %s", ErrNotSetUp, d, user)
			}
			return fmt.Errorf("moving into cgroup %s: %w", d, err)
		}
	}
	return nil
}
