// Package mountinfo reads the kernel's /proc/PID/mountinfo files
// (proc(5)): one Mount per line, in the order the kernel lists them
// (a mount stacked on another comes after it).
package mountinfo

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file.
type Mount struct {
	Root  string // the path of the mount's root within its file system
	Point string // where it is mounted
	// Options are the per-mount options (rw,nosuid,...).
	Options string
	// Optional are the optional fields: propagation (shared:N, master:N,
	// propagate_from:N, unbindable).
	Optional []string
	FSType   string
	Source   string
	// SuperOptions are the file system's options (for a cgroup v1
	// hierarchy, its controllers among them).
	SuperOptions string
}

// Shared reports whether the mount propagates mounts to a peer group.
func (m Mount) Shared() bool {
	for _, o := range m.Optional {
		if strings.HasPrefix(o, "shared:") {
			return true
		}
	}
	return false
}

// Parse reads a mountinfo file; malformed lines are skipped.
func Parse(b []byte) []Mount {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		m := Mount{Root: Unescape(f[3]), Point: Unescape(f[4]), Options: f[5], FSType: f[sep+1], Source: Unescape(f[sep+2])}
		if sep > 6 {
			m.Optional = f[6:sep]
		}
		if sep+3 < len(f) {
			m.SuperOptions = f[sep+3]
		}
		out = append(out, m)
	}
	return out
}

// Containing is the mount path is on: the last one mounted at the longest
// mount point that contains path (false if none does).
func Containing(mounts []Mount, path string) (Mount, bool) {
	var found Mount
	ok := false
	for _, m := range mounts {
		if !(m.Point == "/" || path == m.Point || strings.HasPrefix(path, m.Point+"/")) {
			continue
		}
		if !ok || len(m.Point) >= len(found.Point) {
			found, ok = m, true
		}
	}
	return found, ok
}

// Unescape undoes mountinfo's octal escapes (\040 for a space, \011 for a
// tab, \012 for a newline, \134 for a backslash).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
