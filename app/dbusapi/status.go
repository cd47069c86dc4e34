package dbusapi

// The status words of the API, each in one place: a launch's stages, a
// peer's trust, a session's direction. They are the values the API (and
// the control protocol, for the host's stages) carries; the words users
// read are in cli and ui.

// Stage is a step of a launch, in LaunchProgress signals and as an
// outgoing Session's State. The host reports its own stages (consent,
// sandbox, forward) through the requester.
type Stage string

const (
	// StageAsking: the requester connects to the host and asks.
	StageAsking Stage = "asking"
	// StageConsent: the host waits for its user's answer.
	StageConsent Stage = "waiting for consent"
	// StageSandbox: the host starts the requester's sandbox.
	StageSandbox Stage = "starting sandbox"
	// StageForward: the host opens the one-session forward.
	StageForward Stage = "opening connection"
	// StageConnecting: the requester connects to the forward.
	StageConnecting Stage = "connecting"
	// StageRunning: the app runs.
	StageRunning Stage = "running"
	// StageGranted is an incoming Session's State before its requester
	// connected (not a step of a launch: the host's view of one).
	StageGranted Stage = "granted"
)

// Stages are a launch's steps in the order they come.
var Stages = []Stage{StageAsking, StageConsent, StageSandbox, StageForward, StageConnecting, StageRunning}

// Trust is how a peer's key relates to this user's pins.
type Trust string

const (
	// TrustVerified: the peer's key is pinned and matches.
	TrustVerified Trust = "verified"
	// TrustNew: first seen; the key is pinned on first contact.
	TrustNew Trust = "new"
	// TrustChanged: a pinned peer shows another key; it is refused.
	TrustChanged Trust = "changed"
	// TrustNameClash: a new key under a name already pinned to another key.
	TrustNameClash Trust = "name-clash"
)

// Direction says whose app a Session is.
type Direction string

const (
	// DirectionIncoming: a peer runs an app of this host.
	DirectionIncoming Direction = "incoming"
	// DirectionOutgoing: this user runs an app of a peer.
	DirectionOutgoing Direction = "outgoing"
)

// DisplayMode is how the requester shows a peer's app on its display, as
// the host's pending request says it ("" when the requester does not say:
// an older one).
type DisplayMode string

const (
	// DisplayProtected: the app sees and drives only its own windows.
	DisplayProtected DisplayMode = "protected"
	// DisplayTrusted: the requester gave the app its whole display.
	DisplayTrusted DisplayMode = "trusted"
	// DisplayIsolated: the app draws on a display of its own in the
	// sandbox; only its windows travel (xpra).
	DisplayIsolated DisplayMode = "isolated"
)
