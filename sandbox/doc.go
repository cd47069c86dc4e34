// Package sandbox runs per-peer unprivileged LXC containers for the desktop
// user, driven through go-lxc.
//
// A container shares the host's /usr read-only (and /bin, /lib*, /sbin as the
// host lays them out), gets a few read-only files from the host's /etc that
// GUI programs need, and has its own generated /etc, /home, /tmp and /run. It
// has no network device besides loopback, runs with a reduced capability set
// and no_new_privs, and is limited in memory, CPU and process count. Every
// requesting peer gets its own container, so peers never see each other's
// processes or files, and none sees the host user's home, keys or config.
//
// Root is needed once, for Setup (subordinate id ranges, a cgroup directory
// owned by the user in every hierarchy, the storage directory). Everything
// else runs as the desktop user: see Manager.
package sandbox
