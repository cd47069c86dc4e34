package tunnel

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

func TestIdentityMap(t *testing.T) {
	tests := []struct {
		name, file string
		want       []syscall.SysProcIDMap
		fails      bool
	}{
		{"a container's range", "         0     296608      65536\n", []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}, false},
		{"the host's", "         0          0 4294967295\n", []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 4294967295}}, false},
		{"two ranges", "0 100000 1000\n1000 1000 1\n", []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1000}, {ContainerID: 1000, HostID: 1000, Size: 1}}, false},
		{"empty", "", nil, true},
		{"garbage", "0 x 1\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "uid_map")
			os.WriteFile(p, []byte(tc.file), 0o644)
			got, err := identityMap(p)
			if (err != nil) != tc.fails || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("identityMap(%q) = %v, %v; want %v (fails: %v)", tc.file, got, err, tc.want, tc.fails)
			}
		})
	}
}
