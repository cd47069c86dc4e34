package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// buildRootfs lays out a container's root directory: mount points for the
// shared host trees, the host's /usr symlinks (merged-/usr hosts) and a
// generated /etc with the guest user. It owns no program: everything runs
// from the host's read-only /usr.
//
// Files are created by the desktop user, which is not mapped inside the
// container; they appear as nobody there, so the guest can write to none of
// them. /home is world-writable with the sticky bit so the container's root
// can create its store of the guest's home there on first start; the init
// covers /home with a tmpfs before the guest runs (see homeinit.go).
func buildRootfs(root, hostname string, hostEtc []string) error {
	dirs := []string{"usr", "etc", "home", "tmp", "var/tmp", "run", "proc", "sys", "dev", "root", "mnt", "opt", "srv", "var/lib", "var/cache", "var/log"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("creating rootfs directory %s: %w", d, err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "home"), os.ModeSticky|0o777); err != nil {
		return fmt.Errorf("preparing rootfs home: %w", err)
	}
	if err := os.Chmod(filepath.Join(root, "root"), 0o700); err != nil {
		return fmt.Errorf("preparing rootfs /root: %w", err)
	}
	// /bin, /lib, /lib64, /sbin, /libx32...: symlinks where the host has them,
	// read-only bind mounts (by mountTopLevel) where they are real directories.
	for _, d := range hostTopLevel() {
		target, err := os.Readlink("/" + d)
		p := filepath.Join(root, d)
		if err == nil {
			if cur, err := os.Readlink(p); err == nil && cur == target {
				continue
			}
			os.Remove(p)
			if err := os.Symlink(target, p); err != nil {
				return fmt.Errorf("linking rootfs /%s: %w", d, err)
			}
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("creating rootfs /%s: %w", d, err)
		}
	}
	// Mount points for shared /etc entries.
	for _, e := range hostEtc {
		st, err := os.Stat("/etc/" + e)
		if err != nil {
			continue
		}
		p := filepath.Join(root, "etc", e)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("creating mount point %s: %w", p, err)
		}
		if st.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("creating mount point %s: %w", p, err)
			}
			continue
		}
		if l, err := os.Lstat(p); err == nil && l.Mode().IsRegular() {
			continue
		}
		os.Remove(p)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return fmt.Errorf("creating mount point %s: %w", p, err)
		}
	}
	for name, content := range generatedEtc(hostname) {
		mode := os.FileMode(0o644)
		if name == "shadow" {
			mode = 0o600
		}
		if err := writeFileIfChanged(filepath.Join(root, "etc", name), []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// hostTopLevel lists the host's /bin, /sbin and /lib* entries.
func hostTopLevel() []string {
	var out []string
	ents, _ := os.ReadDir("/")
	for _, e := range ents {
		n := e.Name()
		if n == "bin" || n == "sbin" || strings.HasPrefix(n, "lib") {
			out = append(out, n)
		}
	}
	return out
}

// realTopLevelDirs are the host's /bin, /sbin, /lib* that are directories
// (not merged-/usr symlinks) and so must be bind-mounted.
func realTopLevelDirs() []string {
	var out []string
	for _, d := range hostTopLevel() {
		if st, err := os.Lstat("/" + d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// existingHostEtc filters hostEtcShared to the entries present on the host.
func existingHostEtc() []string {
	var out []string
	for _, e := range hostEtcShared {
		if _, err := os.Stat("/etc/" + e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// generatedEtc is the container's own /etc: a guest user without password,
// no network beyond loopback, a per-container machine id.
func generatedEtc(hostname string) map[string]string {
	return map[string]string{
		"passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n" +
			fmt.Sprintf("%s:x:%d:%d:eBrainPool guest:%s:/bin/sh\n", GuestUser, GuestUID, GuestGID, GuestHome) +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group":         fmt.Sprintf("root:x:0:\n%s:x:%d:\nnogroup:x:65534:\n", GuestUser, GuestGID),
		"shadow":        "root:*:19000:0:99999:7:::\n" + GuestUser + ":*:19000:0:99999:7:::\n",
		"hostname":      hostname + "\n",
		"hosts":         "127.0.0.1\tlocalhost " + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
		"resolv.conf":   "# no network in the sandbox\n",
		"machine-id":    machineID(hostname) + "\n",
	}
}

// machineID derives a stable 32-hex-digit machine id from the container name.
func machineID(name string) string {
	h := containerName("machine-id/" + name) // ebp-<16 hex>
	h = strings.TrimPrefix(h, "ebp-")
	return h + h
}
