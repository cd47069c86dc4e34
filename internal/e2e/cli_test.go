package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// Every command prints only what it means to: no library noise, whatever
// the locale (LANG=C.UTF-8 used to make Fyne log a parse error on each run).
func TestNoNoiseOnStderr(t *testing.T) {
	testenv.RequireRoot(t)
	for _, lang := range []string{"C.UTF-8", "C", "POSIX", "en_US.UTF-8", ""} {
		t.Run("LANG="+lang, func(t *testing.T) {
			cmd := exec.Command(binary, "setup", "--check")
			cmd.Env = append(os.Environ(), "LANG="+lang, "LC_ALL=", "LANGUAGE=")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.Contains(string(out), "error") || !strings.Contains(string(out), "prerequisites") {
				t.Fatalf("ebrainpool setup --check under LANG=%q: %v\n%s", lang, err, out)
			}
		})
	}
}
