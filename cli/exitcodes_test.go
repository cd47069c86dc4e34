package cli

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// outcomeConstants are the Outcome constants declared in app/dbusapi, read
// from its source, so that an outcome added there without an exit status
// here fails TestOutcomeExit.
func outcomeConstants(t *testing.T) map[string]dbusapi.Outcome {
	t.Helper()
	files, err := filepath.Glob("../app/dbusapi/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("app/dbusapi sources: %v", err)
	}
	out := map[string]dbusapi.Outcome{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Outcome" {
					continue
				}
				for i, n := range vs.Names {
					v, err := strconv.Unquote(vs.Values[i].(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					out[n.Name] = dbusapi.Outcome(v)
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Outcome constants: %v", len(out), out)
	}
	return out
}

func TestOutcomeExit(t *testing.T) {
	want := map[dbusapi.Outcome]int{
		dbusapi.OutcomeEnded:              89,
		dbusapi.OutcomeEndedByHost:        89,
		dbusapi.OutcomeDenied:             82,
		dbusapi.OutcomeNoAnswer:           83,
		dbusapi.OutcomeBlocked:            84,
		dbusapi.OutcomeNotShared:          85,
		dbusapi.OutcomeSharingOff:         86,
		dbusapi.OutcomeSetupMissing:       86,
		dbusapi.OutcomeNoLimits:           86,
		dbusapi.OutcomeSandboxFailed:      86,
		dbusapi.OutcomeRateLimited:        87,
		dbusapi.OutcomeUnreachable:        81,
		dbusapi.OutcomeNoDisplay:          88,
		dbusapi.OutcomeUnprotectedDisplay: 88,
		dbusapi.OutcomeFailed:             1,
	}
	for name, o := range outcomeConstants(t) {
		t.Run(name, func(t *testing.T) {
			if o == dbusapi.OutcomeExited {
				for _, status := range []int{0, 1, 3, 130, 255} {
					if got := launchExit(o, status); got != status {
						t.Errorf("exited with %d: exit %d", status, got)
					}
				}
				if got := launchExit(o, -1); got != ExitFailure {
					t.Errorf("exited with -1: exit %d", got)
				}
				return
			}
			w, ok := want[o]
			if !ok {
				t.Fatalf("outcome %q has no exit status in this test (and maybe none in outcomeExit)", o)
			}
			if got := launchExit(o, -1); got != w {
				t.Errorf("launchExit(%q) = %d, want %d", o, got, w)
			}
			err := runError("xlogo", -1, &dbusapi.LaunchError{Outcome: o, Message: "it said why"})
			want := "it said why"
			if o == dbusapi.OutcomeUnprotectedDisplay {
				// The fix is this command's own flag.
				want += "\n  fix: add --isolated-display (needs xpra on both computers), or --trusted-display (remembered for this app of this peer) only if you trust it with everything on your screen"
			}
			if got := exitCode(err); got != w || err.Error() != want {
				t.Errorf("run's error for %q: %v, exit %d, want %d", o, err, got, w)
			}
		})
	}
	// A daemon before outcomes: its error is a failure, the app's status
	// passes through; an unknown outcome is a failure.
	if got := exitCode(runError("x", -1, &dbusapi.LaunchError{Message: "refused"})); got != ExitFailure {
		t.Errorf("error without outcome: exit %d", got)
	}
	if got := exitCode(runError("x", 7, nil)); got != 7 {
		t.Errorf("app exited 7: exit %d", got)
	}
	if err := runError("x", -1, nil); err == nil || exitCode(err) != ExitFailure || !strings.Contains(err.Error(), "without an exit status") {
		t.Errorf("app ended without a status: %v", err)
	}
	if err := runError("x", 0, nil); err != nil {
		t.Errorf("app exited 0: %v", err)
	}
	if got := launchExit("from-the-future", -1); got != ExitFailure {
		t.Errorf("unknown outcome: exit %d", got)
	}
	if got := exitCode(runError("x", -1, &dbusapi.LaunchError{Outcome: dbusapi.OutcomeEndedByHost})); got != ExitEnded {
		t.Errorf("ended by host without a message: exit %d", got)
	}
}

// The documented statuses are distinct, cover every status a command
// returns, and stay clear of the shell's (126, 127, 128+N).
func TestExitStatusesDocumented(t *testing.T) {
	seen := map[int]string{}
	for _, c := range []int{ExitOK, ExitFailure, ExitUsage, ExitNoDaemon, ExitUnreachable, ExitDenied, ExitNoAnswer,
		ExitBlocked, ExitNotShared, ExitUnavailable, ExitRateLimited, ExitNoDisplay, ExitEnded} {
		if prev, dup := seen[c]; dup {
			t.Errorf("exit status %d used twice (%s)", c, prev)
		}
		seen[c] = fmt.Sprint(c)
		if c >= 126 {
			t.Errorf("exit status %d collides with the shell's", c)
		}
		documented := false
		for _, s := range exitStatuses() {
			documented = documented || s.Code == fmt.Sprint(c)
		}
		if !documented {
			t.Errorf("exit status %d is not documented", c)
		}
	}
	for _, code := range outcomeExit {
		if _, ok := seen[code]; !ok {
			t.Errorf("outcomeExit uses undocumented status %d", code)
		}
	}
}

func TestExitCodeOfErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"plain", errors.New("x"), ExitFailure},
		{"no daemon", fmt.Errorf("calling: %w", dbusapi.ErrNotRunning), ExitNoDaemon},
		{"no bus", fmt.Errorf("%w: dial", errNoBus), ExitNoDaemon},
		{"app status", exitError(42), 42},
		{"launch error", &dbusapi.LaunchError{Outcome: dbusapi.OutcomeBlocked}, ExitBlocked},
		{"an outcome from a method error", fmt.Errorf("apps: %w", &outcomeError{outcome: dbusapi.OutcomeUnreachable, msg: "x"}), ExitUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
