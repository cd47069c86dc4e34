package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
)

// Layout is where the sandbox keeps its state on the host.
type Layout struct {
	// Root holds one directory per set-up user (default /var/lib/ebrainpool).
	Root string
	// CgroupBase is the directory created under each cgroup hierarchy's root
	// to hold the per-user directories (default "ebrainpool").
	CgroupBase string
	// CgroupMounts is where the cgroup hierarchies are mounted
	// (default /sys/fs/cgroup); tests never change it.
	CgroupMounts string
}

// DefaultLayout is the layout used by the installed application.
func DefaultLayout() Layout {
	return Layout{Root: "/var/lib/ebrainpool", CgroupBase: "ebrainpool", CgroupMounts: "/sys/fs/cgroup"}
}

// UserDir is the per-user state directory, created by Setup.
func (l Layout) UserDir(user string) string { return filepath.Join(l.Root, user) }

// LXCPath is the LXC path (lxcpath) holding the user's containers.
func (l Layout) LXCPath(user string) string { return filepath.Join(l.UserDir(user), "containers") }

// containerName maps a peer identifier (a display name, a host name or a key
// fingerprint, any bytes) to a safe, stable LXC container name.
func containerName(peer string) string {
	sum := sha256.Sum256([]byte(peer))
	return "ebp-" + hex.EncodeToString(sum[:8])
}

// validPeer rejects peer identifiers that cannot be ours: empty, overlong or
// with control characters. The identifier is only ever hashed into names.
func validPeer(peer string) error {
	if peer == "" {
		return fmt.Errorf("empty peer name")
	}
	if len(peer) > 256 {
		return fmt.Errorf("peer name longer than 256 bytes")
	}
	if strings.IndexFunc(peer, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("peer name %q contains control characters", peer)
	}
	return nil
}
