package sandbox

import (
	"errors"
	"fmt"
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
	if _, err := os.ReadDir(policyDir); err != nil {
		return apparmorUnknown
	}
	if profileLoaded(policyDir, lxcProfile) {
		return apparmorLoaded
	}
	return apparmorNoProfile
}

// ErrUsernsRestricted means AppArmor does not let this program create the
// user namespaces sandboxes need.
var ErrUsernsRestricted = errors.New("AppArmor restricts unprivileged user namespaces on this host (kernel.apparmor_restrict_unprivileged_userns=1) and eBrainPool's AppArmor profile is not loaded")

// ownProfile is the profile the package ships for hosts with that
// restriction (Ubuntu 23.10 and later): unconfined, with userns allowed.
const ownProfile = "ebrainpool"

// checkUserns fails where AppArmor would move this program into a profile
// without capabilities as soon as it creates a user namespace.
func checkUserns(restrictFile, policyDir string) error {
	b, err := os.ReadFile(restrictFile)
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return nil
	}
	if profileLoaded(policyDir, ownProfile) {
		return nil
	}
	return fmt.Errorf("%w\n  fix: install the ebrainpool package (it ships /etc/apparmor.d/ebrainpool where AppArmor 4 is installed) and run `sudo apparmor_parser -r /etc/apparmor.d/ebrainpool`, or allow it for everyone with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`", ErrUsernsRestricted)
}

// profileLoaded reports whether a profile is in the kernel's policy.
func profileLoaded(policyDir, name string) bool {
	ents, err := os.ReadDir(policyDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		// Entries are NAME.N.
		if i := strings.LastIndexByte(e.Name(), '.'); i > 0 && e.Name()[:i] == name {
			return true
		}
	}
	return false
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
