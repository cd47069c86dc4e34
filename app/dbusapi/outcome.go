package dbusapi

// Outcome is how a launch ended (or why it never started), as a stable
// code: it travels in the LaunchFinished signal and in the results the API
// returns; the command line maps it to its exit status and the desktop app
// to its wording. The words users read are in cli and ui, not here.
type Outcome string

const (
	// The app ran; the exit status says how it exited.
	OutcomeExited Outcome = "exited"
	// Ended here, by this user (`ebrainpool end`, the sessions window).
	OutcomeEnded Outcome = "ended"
	// The host ended the session.
	OutcomeEndedByHost Outcome = "ended_by_host"

	// The host's user denied the request.
	OutcomeDenied Outcome = "denied"
	// Nobody answered on the host before its consent timeout.
	OutcomeNoAnswer Outcome = "no_answer"
	// The host blocks this peer.
	OutcomeBlocked Outcome = "blocked"
	// The host does not share that app.
	OutcomeNotShared Outcome = "not_shared"
	// The host has sharing turned off.
	OutcomeSharingOff Outcome = "sharing_off"
	// The host's one-time setup has not been done.
	OutcomeSetupMissing Outcome = "setup_missing"
	// The host cannot put a sandbox under its limits.
	OutcomeNoLimits Outcome = "no_limits"
	// The host's sandbox failed to start (liblxc).
	OutcomeSandboxFailed Outcome = "sandbox_failed"
	// The host refused for being asked too often.
	OutcomeRateLimited Outcome = "rate_limited"

	// The peer could not be reached, did not answer in time, or its key
	// changed.
	OutcomeUnreachable Outcome = "unreachable"
	// This side's display cannot show the window (no X server, no cookie).
	OutcomeNoDisplay Outcome = "no_display"
	// This side's X server cannot confine the app to its own windows (no
	// SECURITY extension, e.g. Xwayland without it): only trusted display
	// access, which the user must choose for the app, would show it.
	OutcomeUnprotectedDisplay Outcome = "unprotected_display"
	// Anything else; the message says what.
	OutcomeFailed Outcome = "failed"
)
