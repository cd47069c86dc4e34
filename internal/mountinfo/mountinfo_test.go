package mountinfo

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	const mi = `22 27 0:21 / /proc rw,relatime - proc proc rw
46 45 0:49 / /home/guest rw,nosuid,nodev,relatime shared:39 master:7 - fuse.ext4 /run/ebp-store/home.img rw,user_id=0
35 24 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
2 1 0:2 /sub /srv/my\040home rw - tmpfs tmp\040fs rw
malformed line
3 1 0:3 / /x rw shared:1 no-separator
`
	want := []Mount{
		{Root: "/", Point: "/proc", Options: "rw,relatime", FSType: "proc", Source: "proc", SuperOptions: "rw"},
		{Root: "/", Point: "/home/guest", Options: "rw,nosuid,nodev,relatime", Optional: []string{"shared:39", "master:7"},
			FSType: "fuse.ext4", Source: "/run/ebp-store/home.img", SuperOptions: "rw,user_id=0"},
		{Root: "/", Point: "/sys/fs/cgroup/cpu,cpuacct", Options: "rw,nosuid", FSType: "cgroup", Source: "cgroup", SuperOptions: "rw,cpu,cpuacct"},
		{Root: "/sub", Point: "/srv/my home", Options: "rw", FSType: "tmpfs", Source: "tmp fs", SuperOptions: "rw"},
	}
	if got := Parse([]byte(mi)); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestContaining(t *testing.T) {
	// As liblxc leaves a container: every mount shared, in peer groups of
	// its own; /home a tmpfs, the guest's home a FUSE mount on it.
	const container = `66 43 254:0 /var/lib/ebrainpool/c/rootfs / rw,relatime shared:2 - ext4 /dev/vda rw
45 66 0:48 / /home rw,nosuid,nodev,noexec,relatime shared:38 - tmpfs tmpfs rw,size=64k
46 45 0:49 / /home/guest rw,nosuid,nodev,relatime shared:39 - fuse.ext4 /run/ebp-store/home.img rw
`
	// The same seen from a mount namespace of a new user namespace.
	const nested = `120 119 254:0 /var/lib/ebrainpool/c/rootfs / rw,relatime master:2 - ext4 /dev/vda rw
121 120 0:48 / /home rw,nosuid,nodev,noexec,relatime master:38 - tmpfs tmpfs rw,size=64k
122 121 0:49 / /home/guest rw,nosuid,nodev,relatime master:39 - fuse.ext4 /run/ebp-store/home.img rw
`
	tests := []struct {
		name, mountinfo, path string
		point                 string
		shared                bool
	}{
		{"the container's home is shared", container, "/home/guest", "/home/guest", true},
		{"a slave in a new user namespace's", nested, "/home/guest", "/home/guest", false},
		{"a path below a mount point", nested, "/home/guest/Docs", "/home/guest", false},
		{"a name that only starts like a mount point", container, "/home/guests", "/home", true},
		{"the root", "1 0 0:1 / / rw - ext4 /dev/vda rw\n", "/srv/x", "/", false},
		{"stacked: the last mount counts", container + "47 46 0:50 / /home/guest rw - tmpfs tmpfs rw\n", "/home/guest", "/home/guest", false},
		{"a space in a mount point", "1 0 0:1 / / rw - ext4 /dev/vda rw\n2 1 0:2 / /srv/my\\040home rw shared:7 - tmpfs tmpfs rw\n", "/srv/my home/guest", "/srv/my home", true},
		{"optional fields end at the separator", "1 0 0:1 / / rw - shared:9 /dev/vda rw\n", "/x", "/", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := Containing(Parse([]byte(tc.mountinfo)), tc.path)
			if !ok || m.Point != tc.point || m.Shared() != tc.shared {
				t.Errorf("Containing(%q) = %q (found %v), shared %v; want %q, %v", tc.path, m.Point, ok, m.Shared(), tc.point, tc.shared)
			}
		})
	}
	if _, ok := Containing(nil, "/x"); ok {
		t.Error("Containing found a mount in an empty table")
	}
}
