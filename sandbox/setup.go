package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
	lxc "github.com/lxc/go-lxc"
)

// SetupOptions configures the one-time root setup for a desktop user.
type SetupOptions struct {
	User   string
	Remove bool      // undo what setup did for the user
	Out    io.Writer // progress, one line per step
	// SubUID and SubGID are the id files (default /etc/subuid, /etc/subgid).
	SubUID, SubGID string
}

// setupRecord remembers what setup changed, so --remove undoes exactly that.
type setupRecord struct {
	User       string   `json:"user"`
	AddedUIDs  *IDRange `json:"added_subuids,omitempty"`
	AddedGIDs  *IDRange `json:"added_subgids,omitempty"`
	CgroupDirs []string `json:"cgroup_dirs"`
}

// Problem is a missing prerequisite and how to fix it.
type Problem struct {
	What, Fix string
}

func (p Problem) String() string { return p.What + "\n    fix: " + p.Fix }

// Preflight checks the kernel and liblxc prerequisites for unprivileged
// containers. It needs no root.
func Preflight() []Problem {
	var ps []Problem
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
		ps = append(ps, Problem{"user namespaces are disabled (user.max_user_namespaces is 0 or missing)",
			"sudo sysctl -w user.max_user_namespaces=15000 (and add it to /etc/sysctl.d/)"})
	}
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		ps = append(ps, Problem{"unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
			"sudo sysctl -w kernel.unprivileged_userns_clone=1 (and add it to /etc/sysctl.d/)"})
	}
	if err := checkUserns("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "/sys/kernel/security/apparmor/policy/profiles"); err != nil {
		what, fix, _ := strings.Cut(err.Error(), "\n  fix: ")
		ps = append(ps, Problem{what, fix})
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			for _, d := range []string{"/usr/bin/", "/bin/"} {
				if _, e := os.Stat(d + tool); e == nil {
					p, err = d+tool, nil
				}
			}
		}
		if err != nil {
			ps = append(ps, Problem{tool + " is not installed", "sudo apt-get install uidmap"})
			continue
		}
		st, err := os.Stat(p)
		if err == nil && st.Mode()&os.ModeSetuid == 0 && !hasFileCaps(p) {
			ps = append(ps, Problem{p + " is neither setuid root nor has file capabilities", "sudo apt-get install --reinstall uidmap"})
		}
	}
	if maj, min := lxc.VersionNumber(); maj < 4 {
		ps = append(ps, Problem{fmt.Sprintf("liblxc %d.%d is too old (4.0 or newer needed)", maj, min), "sudo apt-get install liblxc1"})
	}
	if _, err := os.Stat("/usr/share/lxc/config/common.seccomp"); err != nil {
		ps = append(ps, Problem{"LXC's seccomp profile /usr/share/lxc/config/common.seccomp is missing", "sudo apt-get install liblxc-common"})
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || len(cgroupHierarchies(mi)) == 0 {
		ps = append(ps, Problem{"no cgroup hierarchy is mounted", "mount cgroup2 on /sys/fs/cgroup (your init system normally does)"})
	}
	return ps
}

// CheckUser lists what the one-time setup still has to do for user (no
// root needed): the subordinate id ranges, the state directory, the cgroup
// directories on hosts without systemd, and on systemd hosts the
// controllers the user's manager gets.
func CheckUser(l Layout, name string) []Problem {
	fix := "sudo ebrainpool setup --user " + name
	u, err := user.Lookup(name)
	if err != nil {
		return []Problem{{fmt.Sprintf("there is no user %q", name), "give an existing desktop user's name"}}
	}
	uid, _ := strconv.Atoi(u.Uid)
	var ps []Problem
	if _, _, err := userRanges("/etc/subuid", "/etc/subgid", name, uid); err != nil {
		ps = append(ps, Problem{err.Error(), fix})
	}
	if st, err := os.Stat(l.LXCPath(name)); err != nil {
		ps = append(ps, Problem{fmt.Sprintf("%s is missing", l.LXCPath(name)), fix})
	} else if s, ok := st.Sys().(*syscall.Stat_t); ok && int(s.Uid) != uid {
		ps = append(ps, Problem{fmt.Sprintf("%s does not belong to %s", l.LXCPath(name), name), fix})
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return append(ps, Problem{"cannot read /proc/self/mountinfo: " + err.Error(), "run it on the host, not in a container"})
	}
	hs := cgroupHierarchies(mi)
	if pureV2(hs) && isSystemdHost() {
		if b, err := os.ReadFile(filepath.Join(userManagerCgroup(uid), "cgroup.controllers")); err == nil {
			for _, c := range delegatedControllers {
				if !contains(strings.Fields(string(b)), c) {
					ps = append(ps, Problem{fmt.Sprintf("systemd does not delegate the %s controller to user@%d.service", c, uid),
						"create /etc/systemd/system/user@.service.d/delegate.conf with \"[Service]\" and \"Delegate=cpu memory pids\", then sudo systemctl daemon-reload and log in again"})
				}
			}
		}
		return ps
	}
	for _, d := range l.userCgroupDirs(hs, name) {
		st, err := os.Stat(d)
		if err != nil {
			ps = append(ps, Problem{fmt.Sprintf("cgroup %s is missing", d), fix})
			continue
		}
		if s, ok := st.Sys().(*syscall.Stat_t); ok && int(s.Uid) != uid {
			ps = append(ps, Problem{fmt.Sprintf("cgroup %s does not belong to %s", d, name), fix})
		}
	}
	return ps
}

func hasFileCaps(path string) bool {
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(path, "security.capability", buf)
	return err == nil && n > 0
}

func recordPath(l Layout, user string) string {
	return filepath.Join(l.Root, ".setup-"+user+".json")
}

// Setup gives a desktop user what unprivileged containers need: subordinate
// id ranges, a cgroup directory the user owns in every hierarchy and the
// state directory. It must run as root, is idempotent, and with Remove undoes
// exactly what it did.
func Setup(l Layout, o SetupOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.SubUID == "" {
		o.SubUID = "/etc/subuid"
	}
	if o.SubGID == "" {
		o.SubGID = "/etc/subgid"
	}
	if os.Geteuid() != 0 {
		verb := "setup"
		if o.Remove {
			verb = "setup --remove"
		}
		return fmt.Errorf("setup changes system files and needs root: run `sudo ebrainpool %s --user %s`", verb, o.User)
	}
	u, err := user.Lookup(o.User)
	if err != nil {
		return fmt.Errorf("setup for %q: %w", o.User, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return errors.New("setup is for a desktop user, not root: containers run unprivileged as that user")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	hs := cgroupHierarchies(mi)
	if o.Remove {
		return removeSetup(l, o, uid, hs)
	}
	if ps := Preflight(); len(ps) > 0 {
		var b strings.Builder
		for _, p := range ps {
			b.WriteString("\n  - " + p.String())
		}
		return fmt.Errorf("this machine cannot run unprivileged containers yet:%s", b.String())
	}
	step := func(format string, a ...any) { fmt.Fprintf(o.Out, "  "+format+"\n", a...) }
	fmt.Fprintf(o.Out, "Setting up eBrainPool sandboxes for %s (uid %d):\n", o.User, uid)

	rec := setupRecord{User: o.User}
	if old, err := os.ReadFile(recordPath(l, o.User)); err == nil {
		_ = json.Unmarshal(old, &rec)
	}
	if err := os.MkdirAll(l.Root, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", l.Root, err)
	}
	// The record is saved after every change, so that --remove (and the
	// package's purge) undoes what was done even if a later step fails.
	save := func() error {
		b, _ := json.MarshalIndent(rec, "", "  ")
		return atomicfile.Write(recordPath(l, o.User), b, 0o644)
	}
	if err := save(); err != nil {
		return err
	}
	uids, added, err := ensureRange(o.SubUID, o.User, uid)
	if err != nil {
		return err
	}
	if added {
		rec.AddedUIDs = &uids
		if err := save(); err != nil {
			return err
		}
		step("subordinate uids %d-%d added to %s", uids.Start, uids.Start+uids.Count-1, o.SubUID)
	} else {
		step("subordinate uids %d-%d already in %s", uids.Start, uids.Start+uids.Count-1, o.SubUID)
	}
	gids, added, err := ensureRange(o.SubGID, o.User, uid)
	if err != nil {
		return err
	}
	if added {
		rec.AddedGIDs = &gids
		if err := save(); err != nil {
			return err
		}
		step("subordinate gids %d-%d added to %s", gids.Start, gids.Start+gids.Count-1, o.SubGID)
	} else {
		step("subordinate gids %d-%d already in %s", gids.Start, gids.Start+gids.Count-1, o.SubGID)
	}

	// The user's directory is reachable by the user and by the containers'
	// root group (the first subordinate gid), which liblxc needs to mount
	// the rootfs, and by nobody else.
	ud := l.UserDir(o.User)
	if err := os.MkdirAll(ud, 0o710); err != nil {
		return fmt.Errorf("creating %s: %w", ud, err)
	}
	if err := os.Chown(ud, uid, int(gids.Start)); err != nil {
		return fmt.Errorf("handing %s to %s: %w", ud, o.User, err)
	}
	if err := os.Chmod(ud, 0o710); err != nil {
		return fmt.Errorf("setting mode of %s: %w", ud, err)
	}
	cd := l.LXCPath(o.User)
	if err := os.MkdirAll(cd, 0o711); err != nil {
		return fmt.Errorf("creating %s: %w", cd, err)
	}
	if err := os.Chown(cd, uid, gid); err != nil {
		return fmt.Errorf("handing %s to %s: %w", cd, o.User, err)
	}
	step("state directory %s", ud)

	if pureV2(hs) && isSystemdHost() {
		step("systemd with cgroup v2: each sandbox gets a delegated scope from %s's systemd user manager (user@%d.service); nothing to set up here", o.User, uid)
		if !userManagerRunning(uid) && !lingering(o.User) {
			step("note: %s's user manager starts when %s logs in (for sharing without a login: sudo loginctl enable-linger %s)", o.User, o.User, o.User)
		}
	} else {
		for _, d := range l.userCgroupDirs(hs, o.User) {
			if err := createUserCgroup(d, uid, gid, isV2Dir(hs, d)); err != nil {
				return err
			}
			if !contains(rec.CgroupDirs, d) {
				rec.CgroupDirs = append(rec.CgroupDirs, d)
				if err := save(); err != nil {
					return err
				}
			}
		}
		step("cgroup directories owned by %s in %d hierarchies (%s, ...)", o.User, len(rec.CgroupDirs), firstOr(rec.CgroupDirs, "none"))
	}
	fmt.Fprintf(o.Out, "Done. Nothing else needs root: run ebrainpool as %s.\n", o.User)
	return nil
}

// userManagerRunning reports whether the user's systemd manager runs.
func userManagerRunning(uid int) bool {
	_, err := os.Stat(userManagerCgroup(uid))
	return err == nil
}

// lingering reports whether logind keeps the user's manager without a login.
func lingering(user string) bool {
	_, err := os.Stat(filepath.Join("/var/lib/systemd/linger", user))
	return err == nil
}

func isV2Dir(hs []hierarchy, dir string) bool {
	for _, h := range hs {
		if h.V2 && strings.HasPrefix(dir, h.Mount+"/") {
			return true
		}
	}
	return false
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// removeSetup undoes Setup: kills the user's container processes, removes
// the cgroups, the state directory and the id ranges setup added.
func removeSetup(l Layout, o SetupOptions, uid int, hs []hierarchy) error {
	fmt.Fprintf(o.Out, "Removing eBrainPool sandboxes of %s:\n", o.User)
	var rec setupRecord
	if b, err := os.ReadFile(recordPath(l, o.User)); err == nil {
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("reading %s: %w", recordPath(l, o.User), err)
		}
	}
	dirs := rec.CgroupDirs
	if len(dirs) == 0 {
		dirs = l.userCgroupDirs(hs, o.User)
	}
	// Containers' processes (and the user's own processes that moved in)
	// live in these cgroups: containers are killed, the user's own
	// processes are moved back to the root cgroup.
	for _, d := range dirs {
		if err := evacuateCgroup(d); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := removeUserCgroup(d); err != nil {
			return err
		}
	}
	if pureV2(hs) && isSystemdHost() {
		// The sandboxes run in scopes of the user's systemd manager, which
		// removes the scopes once their processes are gone.
		killSandboxes(filepath.Join(userManagerCgroup(uid), "app.slice", sandboxSlice))
	}
	fmt.Fprintf(o.Out, "  cgroup directories removed\n")
	if err := os.RemoveAll(l.UserDir(o.User)); err != nil {
		return fmt.Errorf("removing %s: %w", l.UserDir(o.User), err)
	}
	fmt.Fprintf(o.Out, "  state directory %s removed\n", l.UserDir(o.User))
	if rec.AddedUIDs != nil {
		if err := removeRange(o.SubUID, o.User, *rec.AddedUIDs); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "  subordinate uids removed from %s\n", o.SubUID)
	}
	if rec.AddedGIDs != nil {
		if err := removeRange(o.SubGID, o.User, *rec.AddedGIDs); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "  subordinate gids removed from %s\n", o.SubGID)
	}
	os.Remove(recordPath(l, o.User))
	os.Remove(l.Root) // only if empty
	return nil
}

// killSandboxes kills the processes of every container cgroup (lxc.*)
// below dir.
func killSandboxes(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || !strings.Contains(p[len(dir):], "/lxc.") {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, _ := strconv.Atoi(f); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// evacuateCgroup kills container processes below dir (their cgroups are
// named lxc.*) and moves the user's own processes to the hierarchy root.
func evacuateCgroup(dir string) error {
	root := dir
	for i := 0; i < 2; i++ {
		root = filepath.Dir(root)
	}
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		inContainer := strings.Contains(p[len(dir):], "/lxc.")
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if pid <= 0 {
				continue
			}
			if inContainer {
				syscall.Kill(pid, syscall.SIGKILL)
			} else {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(f), 0)
			}
		}
		return nil
	})
}
