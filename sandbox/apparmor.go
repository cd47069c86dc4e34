package sandbox

import (
	"os"
	"strings"
)

// lxcProfile is the AppArmor profile liblxc puts unprivileged containers in
// by default (shipped by liblxc-common, loaded by the apparmor package).
const lxcProfile = "lxc-container-default-cgns"

// apparmorState is what this host's AppArmor means for a container.
type apparmorState int

const (
	apparmorOff       apparmorState = iota // not enabled in the kernel
	apparmorLoaded                         // on, and LXC's profile is loaded
	apparmorNoProfile                      // on, but LXC's profile is not loaded
	apparmorUnknown                        // on; the loaded profiles cannot be listed
)

// detectAppArmor reads the kernel's AppArmor state as an unprivileged user
// can: the module parameter and the names in the policy directory (the
// profiles file itself is root-only).
func detectAppArmor(enabledFile, policyDir string) apparmorState {
	b, err := os.ReadFile(enabledFile)
	if err != nil || strings.TrimSpace(string(b)) != "Y" {
		return apparmorOff
	}
	ents, err := os.ReadDir(policyDir)
	if err != nil {
		return apparmorUnknown
	}
	for _, e := range ents {
		// Entries are NAME.N.
		if i := strings.LastIndexByte(e.Name(), '.'); i > 0 && e.Name()[:i] == lxcProfile {
			return apparmorLoaded
		}
	}
	return apparmorNoProfile
}

// profile is the lxc.apparmor.profile to write, or "" for liblxc's default.
// Without LXC's profile loaded liblxc cannot start a container under
// AppArmor at all ("Failed to write AppArmor profile"), and an unprivileged
// user cannot load one: the container then runs unconfined by AppArmor (its
// user namespace, seccomp filter, no_new_privs and dropped capabilities
// still apply).
func (s apparmorState) profile() string {
	switch s {
	case apparmorLoaded, apparmorUnknown:
		return ""
	}
	return "unconfined"
}
