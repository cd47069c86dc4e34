package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePayload(t *testing.T) {
	v1 := cgroupHierarchies([]byte(strings.Join([]string{
		"30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
		"31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
		"32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
		"33 25 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd",
		"34 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
	}, "\n")))
	v2 := cgroupHierarchies([]byte("28 25 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"))
	tests := []struct {
		name     string
		hs       []hierarchy
		cgroup   string
		ctrl     string
		wantDir  string
		wantFail bool
	}{
		{"v2", v2, "0::/user.slice/a.scope/lxc.payload.x\n", "memory", "/sys/fs/cgroup/user.slice/a.scope/lxc.payload.x", false},
		{"v1 joint hierarchy", v1, "4:cpu,cpuacct:/ebrainpool/u/lxc.payload.x\n3:memory:/ebrainpool/u/lxc.payload.x\n0::/\n", "cpuacct", "/sys/fs/cgroup/cpu,cpuacct/ebrainpool/u/lxc.payload.x", false},
		{"v1 memory", v1, "3:memory:/ebrainpool/u/lxc.payload.x\n", "memory", "/sys/fs/cgroup/memory/ebrainpool/u/lxc.payload.x", false},
		{"v1 ignores the controller-less unified line", v1, "0::/foo\n", "memory", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePayload([]byte(tt.cgroup), tt.hs, pureV2(tt.hs))
			if tt.wantFail {
				if err == nil {
					t.Fatalf("want an error, got %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := p.dir(tt.ctrl); !ok || d != tt.wantDir {
				t.Fatalf("dir(%s) = %q %v, want %q", tt.ctrl, d, ok, tt.wantDir)
			}
		})
	}
}

// fakePayload writes cgroup files into a temporary v2 directory.
func fakePayload(t *testing.T, files map[string]string) payload {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return payload{v2: dir}
}

func TestCheckLimits(t *testing.T) {
	lim := Limits{MemoryBytes: 256 << 20, CPUs: 0.5, Pids: 128}
	good := map[string]string{"memory.max": "268435456", "memory.swap.max": "0", "pids.max": "128", "cpu.max": "50000 100000"}
	tests := []struct {
		name    string
		change  map[string]string
		missing string
		wantErr string
	}{
		{"all applied", nil, "", ""},
		{"no pids limit (liblxc could not enable the controller)", map[string]string{"pids.max": "max"}, "", `pids.max is "max", not "128"`},
		{"no memory controller", nil, "memory.max", "memory.max is not there"},
		{"swap allowed", map[string]string{"memory.swap.max": "max"}, "", "memory.swap.max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range good {
				files[k] = v
			}
			for k, v := range tt.change {
				files[k] = v
			}
			delete(files, tt.missing)
			err := fakePayload(t, files).checkLimits(lim, false)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkLimits = %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("memory rounded down to whole pages, as the kernel reports it", func(t *testing.T) {
		page := int64(os.Getpagesize())
		c := limitChecks(Limits{MemoryBytes: 1000*page + 100, CPUs: 1, Pids: 8}, true, false)
		if want := fmt.Sprint(1000 * page); c[0].file != "memory.max" || c[0].want != want {
			t.Fatalf("first check %+v, want memory.max %s", c[0], want)
		}
	})
}

func TestPayloadUsage(t *testing.T) {
	p := fakePayload(t, map[string]string{
		"cgroup.procs":          "100",
		".lxc/cgroup.procs":     "200\n201",
		".lxc/sub/cgroup.procs": "300",
		"memory.current":        "12345",
		"cpu.stat":              "usage_usec 1500\nuser_usec 1000",
	})
	if n, err := p.processes(nil); err != nil || n != 4 {
		t.Fatalf("processes = %d %v, want 4 (init and attached processes in child cgroups)", n, err)
	}
	if m, err := p.memory(); err != nil || m != 12345 {
		t.Fatalf("memory = %d %v", m, err)
	}
	if c := p.cpu(); c != 1500*time.Microsecond {
		t.Fatalf("cpu = %v", c)
	}
}

func TestDetectAppArmor(t *testing.T) {
	dir := t.TempDir()
	enabled := filepath.Join(dir, "enabled")
	policy := filepath.Join(dir, "profiles")
	write := func(s string) { os.WriteFile(enabled, []byte(s), 0o644) }
	tests := []struct {
		name     string
		enabled  string
		profiles []string // nil: directory missing
		want     apparmorState
		profile  string
	}{
		{"off", "N\n", nil, apparmorOff, "unconfined"},
		{"on with LXC's profile", "Y\n", []string{"lxc-container-default.7", "lxc-container-default-cgns.8"}, apparmorLoaded, ""},
		{"on without it (no apparmor package)", "Y\n", []string{"lxc-container-default.7", "man_groff.6"}, apparmorNoProfile, "unconfined"},
		{"on, policy unreadable", "Y\n", nil, apparmorUnknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.enabled)
			os.RemoveAll(policy)
			if tt.profiles != nil {
				for _, p := range tt.profiles {
					os.MkdirAll(filepath.Join(policy, p), 0o755)
				}
			}
			got := detectAppArmor(enabled, policy)
			if got != tt.want || got.profile() != tt.profile {
				t.Fatalf("detectAppArmor = %v (profile %q), want %v (%q)", got, got.profile(), tt.want, tt.profile)
			}
		})
	}
}

func TestAttachErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lxc.log")
	before := "lxc-start ebp-1 20261201 ERROR    start - ../src/lxc/start.c:x:1 - an old start error\n"
	attach := "lxc ebp-1 20261201 ERROR    conf - ../src/lxc/conf.c:userns_exec_minimal:5249 - Permission denied - Running parent function failed\n" +
		"lxc ebp-1 20261201 ERROR    attach - ../src/lxc/attach.c:do_attach:1376 - Failed to attach to container\n"
	os.WriteFile(p, []byte(before), 0o644)
	off := int64(len(before))
	if got := attachErrors(p, off, 8); got != nil {
		t.Fatalf("nothing logged since the attach: %q", got)
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(attach)
	f.Close()
	got := attachErrors(p, off, 8)
	want := []string{"Permission denied - Running parent function failed", "Failed to attach to container"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("attachErrors = %q, want %q", got, want)
	}
}

func TestInUserManager(t *testing.T) {
	for cg, want := range map[string]bool{
		"/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x-1.scope": true,
		"/user.slice/user-1000.slice/user@1000.service":                               true,
		"/user.slice/user-1000.slice/session-2.scope":                                 false,
		"/user.slice/user-1001.slice/user@1001.service/app.slice/x.scope":             false,
		"/system.slice/vmtest.service":                                                false,
	} {
		if got := inUserManager(cg, 1000); got != want {
			t.Errorf("inUserManager(%q) = %v, want %v", cg, got, want)
		}
	}
}

func TestCheckUserns(t *testing.T) {
	dir := t.TempDir()
	restrict := filepath.Join(dir, "restrict")
	policy := filepath.Join(dir, "profiles")
	tests := []struct {
		name     string
		restrict string // "" : file missing (kernel without the knob)
		profiles []string
		wantErr  bool
	}{
		{"no such knob (Debian 12)", "", nil, false},
		{"restriction off", "0\n", nil, false},
		{"restricted, our profile loaded", "1\n", []string{"ebrainpool.12", "flatpak.3"}, false},
		{"restricted, no profile (Ubuntu 24.04 without the package's profile)", "1\n", []string{"flatpak.3", "ebrainpool-other.4"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(restrict)
			os.RemoveAll(policy)
			if tt.restrict != "" {
				os.WriteFile(restrict, []byte(tt.restrict), 0o644)
			}
			for _, p := range tt.profiles {
				os.MkdirAll(filepath.Join(policy, p), 0o755)
			}
			err := checkUserns(restrict, policy)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkUserns = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrUsernsRestricted) || !strings.Contains(err.Error(), "apparmor_parser -r /etc/apparmor.d/ebrainpool")) {
				t.Fatalf("the error names neither the cause nor the fix: %v", err)
			}
		})
	}
}
