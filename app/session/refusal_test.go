package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

// The requester is told the host's real reason, never "setup" when the
// cause is something else.
func TestSandboxRefusal(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		code    control.Code
		want    string
		notWant string
	}{
		{"limits cannot be applied",
			fmt.Errorf("%w: no systemd user manager runs for hana (user@1000.service: no login session and no linger)\n  fix: log in", sandbox.ErrNoLimits),
			control.CodeNoLimits, "this host cannot limit sandboxes: no systemd user manager runs for hana", "setup"},
		{"setup missing",
			fmt.Errorf("%w: /var/lib/ebrainpool/hana/containers is missing\n  fix: run `sudo ebrainpool setup --user hana`", sandbox.ErrNotSetUp),
			control.CodeSetupMissing, "one-time setup has not been done", ""},
		{"liblxc failed", errors.New("starting sandbox for x: container is not running after start; liblxc said:\n  Failed to mount"),
			control.CodeSandboxFailed, "liblxc failed there", "setup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := SandboxRefusal(tt.err)
			if code != tt.code {
				t.Errorf("SandboxRefusal code = %q, want %q", code, tt.code)
			}
			// An older requester reading the old code "unavailable" gets
			// the same code back from the sentence.
			if legacy := control.LegacyUnavailable(got); legacy != tt.code {
				t.Errorf("LegacyUnavailable(%q) = %q, want %q", got, legacy, tt.code)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("SandboxRefusal = %q, want %q in it", got, tt.want)
			}
			if tt.notWant != "" && strings.Contains(got, tt.notWant) {
				t.Fatalf("SandboxRefusal = %q blames %q", got, tt.notWant)
			}
			if strings.Contains(got, "\n") || strings.Contains(got, "fix:") {
				t.Fatalf("SandboxRefusal = %q carries the host's fix lines", got)
			}
		})
	}
}
