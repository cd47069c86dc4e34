package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// Exit statuses. 0, 1 and 2 mean what they mean everywhere. eBrainPool's
// own reasons are 80 to 89: above the range of sysexits.h (64 to 78) that
// some programs exit with, below 126 and 127 (the shell could not run or
// find a program) and 128+N (killed by signal N), so that `run`, which
// exits with the app's own status when the app ran, rarely collides with
// a status an app chooses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2

	ExitNoDaemon    = 80 // no eBrainPool daemon (or desktop app) runs for this user
	ExitUnreachable = 81 // the peer could not be reached, did not answer in time, or its key changed
	ExitDenied      = 82 // the host's user denied the request
	ExitNoAnswer    = 83 // nobody answered on the host before its consent timeout
	ExitBlocked     = 84 // the host blocks you
	ExitNotShared   = 85 // the host does not share that app
	ExitUnavailable = 86 // the host cannot run apps now: sharing off, setup missing, no sandbox limits, its sandbox failed
	ExitRateLimited = 87 // the host refused for being asked too often: try again later
	ExitNoDisplay   = 88 // this side's display cannot show the window
	ExitEnded       = 89 // the session was ended (here or by the host) before the app exited
)

// exitStatus is one row of the EXIT STATUS table (man page, run --help).
type exitStatus struct {
	Code    string
	Meaning string
}

// exitStatuses documents every status, in order.
func exitStatuses() []exitStatus {
	return []exitStatus{
		{"0", "Success; for `run`, the app ran and exited with status 0."},
		{"1", "Failure: the reason is printed on standard error."},
		{"2", "Usage: an unknown command or flag, a missing or ambiguous argument (the usage is printed)."},
		{"N", "`run`: the app ran and exited with status N, passed on as `ssh` does (128+N when signal N killed it); `sandbox exec` passes on its command's status the same way."},
		{fmt.Sprint(ExitNoDaemon), "No eBrainPool daemon runs for this user (nor the desktop app), or there is no session bus: the commands that talk to it (`peers`, `apps`, `run`, `pending`, `allow`, `deny`, `block`, `sessions`, `end`, `rules`, `revoke`, `unblock`) cannot."},
		{fmt.Sprint(ExitUnreachable), "The peer could not be reached, did not answer in time, or its key changed since you first met it (refused)."},
		{fmt.Sprint(ExitDenied), "The host's user denied the request."},
		{fmt.Sprint(ExitNoAnswer), "Nobody answered on the host before its consent timeout (the request was denied)."},
		{fmt.Sprint(ExitBlocked), "The host blocks you."},
		{fmt.Sprint(ExitNotShared), "The host does not share that app."},
		{fmt.Sprint(ExitUnavailable), "The host cannot run apps now: its sharing is off, its one-time setup was not done, it cannot put sandboxes under limits, or its sandbox failed to start."},
		{fmt.Sprint(ExitRateLimited), "The host refused because it was asked too often: try again later."},
		{fmt.Sprint(ExitNoDisplay), "This side's display cannot show the window (no X server, no Xwayland, no usable cookie, or no SECURITY extension to confine an app without trusted display access): the peer was not asked."},
		{fmt.Sprint(ExitEnded), "The session was ended before the app exited: here (`ebrainpool end`, the sessions window) or by the host."},
		{"130, 143", "Interrupted by SIGINT (Ctrl-C) or SIGTERM (128+N); `run` ends its session first."},
	}
}

// exitStatusText is the exit statuses as plain text for --help.
func exitStatusText() string {
	var b strings.Builder
	b.WriteString("Exit status:\n")
	for _, s := range exitStatuses() {
		fmt.Fprintf(&b, "  %-9s %s\n", s.Code, strings.ReplaceAll(s.Meaning, "`", ""))
	}
	return strings.TrimRight(b.String(), "\n")
}

// outcomeExit is the exit status of a launch that ended with o, when the
// app did not run (OutcomeExited: the app's own status instead).
var outcomeExit = map[dbusapi.Outcome]int{
	dbusapi.OutcomeEnded:              ExitEnded,
	dbusapi.OutcomeEndedByHost:        ExitEnded,
	dbusapi.OutcomeDenied:             ExitDenied,
	dbusapi.OutcomeNoAnswer:           ExitNoAnswer,
	dbusapi.OutcomeBlocked:            ExitBlocked,
	dbusapi.OutcomeNotShared:          ExitNotShared,
	dbusapi.OutcomeSharingOff:         ExitUnavailable,
	dbusapi.OutcomeSetupMissing:       ExitUnavailable,
	dbusapi.OutcomeNoLimits:           ExitUnavailable,
	dbusapi.OutcomeSandboxFailed:      ExitUnavailable,
	dbusapi.OutcomeRateLimited:        ExitRateLimited,
	dbusapi.OutcomeUnreachable:        ExitUnreachable,
	dbusapi.OutcomeNoDisplay:          ExitNoDisplay,
	dbusapi.OutcomeUnprotectedDisplay: ExitNoDisplay,
	dbusapi.OutcomeFailed:             ExitFailure,
}

// launchExit is the exit status of `run` for a launch that ended with
// outcome and, when the app ran, its exit status. An unknown or missing
// outcome (a daemon older than the outcome field) is read from the exit
// status: the app's when it is not negative, else a failure.
func launchExit(outcome dbusapi.Outcome, status int) int {
	if outcome == dbusapi.OutcomeExited || outcome == "" {
		if status >= 0 && status <= 255 {
			return status
		}
		return ExitFailure
	}
	if code, ok := outcomeExit[outcome]; ok {
		return code
	}
	return ExitFailure
}

// exitCoder lets an error choose the exit status (a remote app's status,
// a launch's outcome).
type exitCoder interface{ ExitCode() int }

// outcomer is an error that says how a launch (or a call to the daemon)
// ended, as a dbusapi.Outcome: the daemon's method errors, once they
// carry one, map to the same statuses as run's.
type outcomer interface{ Outcome() dbusapi.Outcome }

// exitCode is the exit status for an error a command returned.
func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if errors.Is(err, dbusapi.ErrNotRunning) || errors.Is(err, errNoBus) {
		return ExitNoDaemon
	}
	var le *dbusapi.LaunchError
	if errors.As(err, &le) {
		return launchExit(le.Outcome, -1)
	}
	var o outcomer
	if errors.As(err, &o) {
		if code, ok := outcomeExit[o.Outcome()]; ok {
			return code
		}
	}
	return ExitFailure
}

// outcomeError is a failed launch or call with its outcome.
type outcomeError struct {
	outcome dbusapi.Outcome
	msg     string
}

func (e *outcomeError) Error() string            { return e.msg }
func (e *outcomeError) Outcome() dbusapi.Outcome { return e.outcome }

// exitError carries a remote or sandboxed program's exit status; Main
// prints nothing for it (the program said what it had to).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exited with status %d", int(e)) }
func (e exitError) ExitCode() int { return int(e) }
func (e exitError) silent()       {}

// silentExit is an error Main does not print.
type silentExit interface{ silent() }
