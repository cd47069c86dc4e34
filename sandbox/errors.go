package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNotSetUp means the one-time root setup has not been done for the user.
var ErrNotSetUp = errors.New("eBrainPool's one-time setup has not been done for this user")

// ErrNoContainer means the peer has no container yet.
var ErrNoContainer = errors.New("no sandbox for this peer")

// setupHint wraps a setup error with the exact command that fixes it.
func setupHint(user string, err error) error {
	return fmt.Errorf("%w\n  fix: run `sudo ebrainpool setup --user %s` once (it is the only step that needs root)", err, user)
}

// lxcErrors returns liblxc's own ERROR lines from a container log, without
// the timestamps and source positions, most recent last.
func lxcErrors(logFile string, max int) []string {
	return lxcErrorsFrom(logFile, 0, max, "")
}

// attachErrors are the ERROR lines liblxc logged after offset, if its
// attach failed (one of them comes from attach.c).
func attachErrors(logFile string, offset int64, max int) []string {
	if len(lxcErrorsFrom(logFile, offset, 1, "attach.c")) == 0 {
		return nil
	}
	return lxcErrorsFrom(logFile, offset, max, "")
}

// lxcErrorsFrom reads ERROR lines after offset, only those whose source
// position mentions src when src is not empty.
func lxcErrorsFrom(logFile string, offset int64, max int, src string) []string {
	f, err := os.Open(logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, " ERROR ") || (src != "" && !strings.Contains(line, src)) {
			continue
		}
		// "lxc-start NAME 2026... ERROR    conf - ../src/lxc/conf.c:fn:123 - message"
		if i := strings.Index(line, " - "); i >= 0 {
			rest := line[i+3:]
			if j := strings.Index(rest, " - "); j >= 0 {
				rest = rest[j+3:]
			}
			line = rest
		}
		if len(out) > 0 && out[len(out)-1] == line {
			continue
		}
		out = append(out, line)
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// startError builds the error for a container that failed to start: liblxc's
// own messages, not just "failed".
func startError(peer, logFile string, err error) error {
	lines := lxcErrors(logFile, 8)
	if len(lines) == 0 {
		return fmt.Errorf("starting sandbox for %s: %w (no error in %s)", peer, err, logFile)
	}
	return fmt.Errorf("starting sandbox for %s: %w; liblxc said:\n  %s\n  (full log: %s)", peer, err, strings.Join(lines, "\n  "), logFile)
}
