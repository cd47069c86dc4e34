package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSubIDsAndFreeRange(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		owner     string
		wantFound bool
		wantFree  IDRange
	}{
		{"empty file", "", "alice", false, IDRange{100000, 65536}},
		{"owner present", "alice:100000:65536\n", "alice", true, IDRange{165536, 65536}},
		{"range too small is not enough", "alice:100000:1000\n", "alice", false, IDRange{101000, 65536}},
		{"gap before first range is used", "bob:300000:65536\n", "alice", false, IDRange{100000, 65536}},
		{"comments and junk skipped", "# comment\nbad line\nbob:x:y\nbob:100000:65536\n", "alice", false, IDRange{165536, 65536}},
		{"by uid", "1001:200000:65536\n", "1001", true, IDRange{100000, 65536}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := parseSubIDs([]byte(tt.file))
			_, found := findRange(es, tt.owner)
			if found != tt.wantFound {
				t.Errorf("findRange found=%v, want %v", found, tt.wantFound)
			}
			got, err := freeRange(es)
			if err != nil || got != tt.wantFree {
				t.Errorf("freeRange = %v, %v; want %v", got, err, tt.wantFree)
			}
		})
	}
}

func TestEnsureAndRemoveRange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(p, []byte("bob:100000:65536"), 0o644) // no trailing newline
	r, added, err := ensureRange(p, "alice", 1001)
	if err != nil || !added || r != (IDRange{165536, 65536}) {
		t.Fatalf("ensureRange = %v %v %v", r, added, err)
	}
	if _, added, _ := ensureRange(p, "alice", 1001); added {
		t.Fatal("second ensureRange added another range")
	}
	b, _ := os.ReadFile(p)
	if string(b) != "bob:100000:65536\nalice:165536:65536\n" {
		t.Fatalf("file after ensure: %q", b)
	}
	if err := removeRange(p, "alice", r); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	if string(b) != "bob:100000:65536\n" {
		t.Fatalf("file after remove: %q", b)
	}
}

func TestCgroupHierarchies(t *testing.T) {
	mi := `25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 25 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 25 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
28 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
29 25 0:26 /lxc.payload.x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
30 25 0:27 / /mnt/with\040space rw - cgroup cgroup rw,blkio
`
	hs := cgroupHierarchies([]byte(mi))
	var got []string
	for _, h := range hs {
		got = append(got, h.Mount)
	}
	want := "/sys/fs/cgroup/memory /sys/fs/cgroup/pids /sys/fs/cgroup/unified /mnt/with space"
	if strings.Join(got, " ") != want {
		t.Fatalf("hierarchies %q, want %q", got, want)
	}
	dirs := DefaultLayout().userCgroupDirs(hs, "alice")
	if len(dirs) != 3 || dirs[0] != "/sys/fs/cgroup/memory/ebrainpool/alice" {
		t.Fatalf("hybrid host: user dirs %v (unified must be skipped)", dirs)
	}
	v2 := cgroupHierarchies([]byte("28 25 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	if d := DefaultLayout().userCgroupDirs(v2, "alice"); len(d) != 1 || d[0] != "/sys/fs/cgroup/ebrainpool/alice" {
		t.Fatalf("pure v2 host: user dirs %v", d)
	}
}

func TestLXCErrors(t *testing.T) {
	log := `lxc-start c 20261123 WARN     start - ../src/lxc/start.c:lxc_spawn:1832 - Operation not permitted - harmless
lxc-start c 20261123 ERROR    conf - ../src/lxc/conf.c:mount_entry:2400 - No such file or directory - Failed to mount "/x" on "/y"
lxc-start c 20261123 ERROR    conf - ../src/lxc/conf.c:lxc_setup:4419 - Failed to setup mount entries
lxc-start c 20261123 ERROR    conf - ../src/lxc/conf.c:lxc_setup:4419 - Failed to setup mount entries
`
	p := filepath.Join(t.TempDir(), "lxc.log")
	os.WriteFile(p, []byte(log), 0o644)
	got := lxcErrors(p, 8)
	want := []string{`No such file or directory - Failed to mount "/x" on "/y"`, "Failed to setup mount entries"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lxcErrors = %q, want %q", got, want)
	}
	if got := lxcErrors(p, 1); len(got) != 1 || got[0] != want[1] {
		t.Fatalf("lxcErrors max 1 = %q", got)
	}
}

func TestContainerNameAndPeerValidation(t *testing.T) {
	tests := []struct {
		peer    string
		wantErr bool
	}{
		{"alice", false},
		{"SHA256:abc/def+ghi", false},
		{"../../etc", false}, // only ever hashed
		{"", true},
		{"bad\nname", true},
		{strings.Repeat("x", 257), true},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			if err := validPeer(tt.peer); (err != nil) != tt.wantErr {
				t.Fatalf("validPeer(%q) = %v", tt.peer, err)
			}
			n := containerName(tt.peer)
			if !strings.HasPrefix(n, "ebp-") || len(n) != 20 || strings.ContainsAny(n, "/. ") {
				t.Fatalf("containerName(%q) = %q", tt.peer, n)
			}
		})
	}
	if containerName("alice") == containerName("bob") {
		t.Fatal("two peers map to one container")
	}
}

func TestLXCConfig(t *testing.T) {
	c := containerConfig{
		Name: "ebp-1", Hostname: "ebp-1", Rootfs: "/r", LogFile: "/l",
		UIDs: IDRange{100000, 65536}, GIDs: IDRange{200000, 65536},
		Limits: Limits{MemoryBytes: 1 << 30, CPUs: 1.5, Pids: 100, DiskBytes: 1<<30 + 100}, GuestBinary: "/usr/bin/ebrainpool",
		HostEtc: []string{"fonts"}, TopLevel: []string{"bin"}, StartID: "0123abcd",
	}
	cfg := c.lxcConfig()
	for _, want := range []string{
		"lxc.idmap = u 0 100000 65536", "lxc.idmap = g 0 200000 65536",
		"lxc.net.0.type = empty", "lxc.no_new_privs = 1",
		"lxc.mount.entry = /usr usr none bind,ro,nodev 0 0",
		"lxc.mount.entry = /bin bin none bind,ro,nodev 0 0",
		"lxc.mount.entry = /etc/fonts etc/fonts none bind,ro,nodev,nosuid 0 0",
		"lxc.mount.entry = /usr/bin/ebrainpool run/ebrainpool/ebrainpool none bind,ro,create=file 0 0",
		"lxc.cgroup.pids.max = 100", "lxc.cgroup.memory.limit_in_bytes = 1073741824",
		"lxc.cgroup.cpu.cfs_quota_us = 150000",
		"lxc.init.cmd = /run/ebrainpool/ebrainpool guest-init --disk 1073741824 --start 0123abcd",
		"lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0",
		"lxc.cap.keep = chown dac_override fowner kill setgid setuid setpcap setfcap net_admin sys_admin",
		"lxc.signal.halt = SIGPWR",
	} {
		if !strings.Contains(cfg, want+"\n") {
			t.Errorf("config lacks %q", want)
		}
	}
	c.CgroupV2 = true
	if cfg := c.lxcConfig(); !strings.Contains(cfg, "lxc.cgroup2.cpu.max = 150000 100000\n") || !strings.Contains(cfg, "lxc.cgroup2.pids.max = 100\n") {
		t.Errorf("cgroup v2 limits missing:\n%s", cfg)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits invalid: %v", err)
	}
	if d := DefaultLimits().DiskBytes; d != 2<<30 {
		t.Errorf("default disk limit %d, want 2 GiB", d)
	}
	for _, l := range []Limits{
		{MemoryBytes: 1 << 20, CPUs: 1, Pids: 100, DiskBytes: 1 << 30}, {MemoryBytes: 1 << 30, CPUs: 0, Pids: 100, DiskBytes: 1 << 30},
		{MemoryBytes: 1 << 30, CPUs: 1, Pids: 2, DiskBytes: 1 << 30}, {MemoryBytes: 1 << 30, CPUs: 1, Pids: 100, DiskBytes: 63 << 20},
		{MemoryBytes: 1 << 30, CPUs: 1, Pids: 100},
	} {
		if l.Validate() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if err := (Limits{MemoryBytes: 1 << 30, CPUs: 1, Pids: 100, DiskBytes: 64 << 20}).Validate(); err != nil {
		t.Errorf("a 64 MiB home refused: %v", err)
	}
	// Limits made without a disk limit (older settings) get the default.
	if l := (Limits{MemoryBytes: 1 << 30, CPUs: 1, Pids: 100}).withDefaults(); l.DiskBytes != DefaultDiskBytes || l.MemoryBytes != 1<<30 {
		t.Errorf("withDefaults = %+v", l)
	}
	if l := (Limits{}).withDefaults(); l != DefaultLimits() {
		t.Errorf("zero limits became %+v, want the defaults", l)
	}
}

func TestBuildRootfs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := buildRootfs(root, "ebp-x", []string{"ld.so.cache", "fonts"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "home"))
	if err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Fatalf("home mode %v, want sticky 0777", st.Mode())
	}
	pw, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(pw), "guest:x:1000:1000:") {
		t.Fatalf("passwd: %s", pw)
	}
	if st, err := os.Stat(filepath.Join(root, "etc/shadow")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("shadow must be 0600: %v %v", st.Mode(), err)
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if st, err := os.Stat(filepath.Join(root, "etc/ld.so.cache")); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("mount point for ld.so.cache: %v", err)
		}
	}
	// Idempotent: a second build over the first succeeds.
	if err := buildRootfs(root, "ebp-x", []string{"ld.so.cache"}); err != nil {
		t.Fatalf("second build: %v", err)
	}
}

func TestParseCPUTime(t *testing.T) {
	tests := []struct {
		name        string
		cpuacct, v2 []string
		want        time.Duration
	}{
		{"cgroup v1", []string{"1500000000\n"}, nil, 1500 * time.Millisecond},
		{"cgroup v2", nil, []string{"usage_usec 2500000", "user_usec 2000000"}, 2500 * time.Millisecond},
		{"neither", []string{""}, []string{"nr_periods 0"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCPUTime(tt.cpuacct, tt.v2); got != tt.want {
				t.Errorf("parseCPUTime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPidsMaxEvents(t *testing.T) {
	for _, tc := range []struct {
		events string
		want   int64
	}{
		{"max 0", 0},
		{"max 17", 17},
		{"max 3\nother 5", 3},
		{"", -1},
		{"max x", -1},
	} {
		t.Run(tc.events, func(t *testing.T) {
			if got := pidsMaxEvents(tc.events); got != tc.want {
				t.Errorf("pidsMaxEvents(%q) = %d, want %d", tc.events, got, tc.want)
			}
		})
	}
}
