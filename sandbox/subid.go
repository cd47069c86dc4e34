package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// IDRange is a subordinate uid or gid range from /etc/subuid or /etc/subgid.
type IDRange struct {
	Start uint32 `json:"start"`
	Count uint32 `json:"count"`
}

// subidEntry is one line of /etc/subuid or /etc/subgid.
type subidEntry struct {
	Owner string
	IDRange
}

// minSubIDs is the range size a container needs: uid 0..65535 inside.
const minSubIDs = 65536

// parseSubIDs parses the subuid/subgid file format ("owner:start:count").
// Comments, blank and malformed lines are skipped, as shadow-utils does.
func parseSubIDs(data []byte) []subidEntry {
	var out []subidEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, subidEntry{Owner: f[0], IDRange: IDRange{uint32(start), uint32(count)}})
	}
	return out
}

// findRange returns the first range of owner (by name or uid) that is large
// enough for a container.
func findRange(entries []subidEntry, owners ...string) (IDRange, bool) {
	for _, e := range entries {
		for _, o := range owners {
			if e.Owner == o && e.Count >= minSubIDs {
				return e.IDRange, true
			}
		}
	}
	return IDRange{}, false
}

// freeRange picks the lowest 65536-aligned range at or above 100000 that
// overlaps no existing entry.
func freeRange(entries []subidEntry) (IDRange, error) {
	sorted := append([]subidEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	start := uint64(100000)
	for _, e := range sorted {
		end := uint64(e.Start) + uint64(e.Count)
		if start+minSubIDs <= uint64(e.Start) {
			break
		}
		if end > start {
			start = end
		}
	}
	if start+minSubIDs > 1<<32-1 {
		return IDRange{}, errors.New("no free subordinate id range left below 2^32")
	}
	return IDRange{uint32(start), minSubIDs}, nil
}

// userRanges reads the subordinate uid and gid ranges of a user.
func userRanges(subuidPath, subgidPath, user string, uid int) (uids, gids IDRange, err error) {
	owners := []string{user, strconv.Itoa(uid)}
	for _, f := range []struct {
		path string
		out  *IDRange
	}{{subuidPath, &uids}, {subgidPath, &gids}} {
		data, err := os.ReadFile(f.path)
		if err != nil && !os.IsNotExist(err) {
			return uids, gids, fmt.Errorf("reading %s: %w", f.path, err)
		}
		r, ok := findRange(parseSubIDs(data), owners...)
		if !ok {
			return uids, gids, fmt.Errorf("%w: no range of %d ids for %s in %s", ErrNotSetUp, minSubIDs, user, f.path)
		}
		*f.out = r
	}
	return uids, gids, nil
}

// ensureRange gives owner a range in the subid file at path if it has none,
// and returns the owner's range. The file is rewritten atomically.
func ensureRange(path, owner string, uid int) (IDRange, bool, error) {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return IDRange{}, false, fmt.Errorf("reading %s: %w", path, err)
	}
	entries := parseSubIDs(data)
	if r, ok := findRange(entries, owner, strconv.Itoa(uid)); ok {
		return r, false, nil
	}
	r, err := freeRange(entries)
	if err != nil {
		return IDRange{}, false, fmt.Errorf("allocating ids in %s: %w", path, err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, fmt.Sprintf("%s:%d:%d\n", owner, r.Start, r.Count)...)
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return IDRange{}, false, err
	}
	return r, true, nil
}

// removeRange deletes owner's entries that match r from the subid file.
func removeRange(path, owner string, r IDRange) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var out []byte
	want := fmt.Sprintf("%s:%d:%d", owner, r.Start, r.Count)
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimSpace(line) == want {
			continue
		}
		out = append(out, line...)
	}
	return atomicfile.Write(path, out, 0o644)
}

// writeFileIfChanged is atomicfile.Write, skipped when path already holds
// data with that mode (containers start often; their files rarely change).
func writeFileIfChanged(path string, data []byte, mode os.FileMode) error {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode && st.Size() == int64(len(data)) {
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			return nil
		}
	}
	return atomicfile.Write(path, data, mode)
}
