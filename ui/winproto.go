package ui

import (
	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// The protocol between the desktop app and its window process (see
// windowProc): net/rpc with gob over a private socket pair, the window
// process calling the app's service "App" (serviceName, AppService). The
// app never calls the window process: what it has to say (the daemon's
// events, a window to show, a launch) waits in a queue the window process
// fetches with Next, a long poll. Both sides are the same binary, so the types need no
// versioning.

// serviceName is the RPC service the desktop app serves.
const serviceName = "App"

// Message is one thing for the window process, in order: an event from
// the daemon, or a command from the tray or a second start of the app.
type Message struct {
	Seq   int64
	Event *daemon.Event
	// Window opens a window: peers, sessions or settings.
	Window string
	// Peer, with Window "peers", selects that peer (a fingerprint).
	Peer string
	// SetUp runs the one-time setup in Settings ("Set up sharing…").
	SetUp bool
	// SharingSet: the tray turned sharing on or off (Settings shows it).
	SharingSet bool
	// Launch is a launch the app recorded (from the tray, or asked for
	// in a window).
	Launch *LaunchRecord
	// Open, with Window "peers", opens these files with a peer's app
	// (`ebrainpool open --gui`, a file manager's "Open with").
	Open        []string
	OpenFolders []dbusapi.Folder
}

// LaunchRecord is one launch started from the desktop app (tray or
// window), as the app keeps it for every window process it starts.
type LaunchRecord struct {
	ID       string
	Seq      int
	Peer     string
	PeerName string
	App      string
	AppID    string
	Stage    dbusapi.Stage
	Done     bool
	Exit     int
	Err      string
	Outcome  dbusapi.Outcome
	// Files names what the launch brings (see broughtNames).
	Files []string
	// Trusted: the app has trusted access to the display.
	Trusted bool
	// Isolated: the app runs on a display of its own (xpra).
	Isolated bool `json:",omitempty"`
}

// LaunchArgs is a launch asked for in a window: the peer and app as shown,
// and the files and folders it brings.
type LaunchArgs struct {
	Peer    dbusapi.Peer
	App     dbusapi.App
	Files   []string
	Folders []dbusapi.Folder
}

// AppsForFilesArgs asks which apps open files (AppsForFiles).
type AppsForFilesArgs struct {
	Peer  string
	Files []string
}

// AnswerArgs answers a request (AnswerFull).
type AnswerArgs struct {
	ID                     string
	Allow, Remember, Block bool
}

// SharedArgs shares an app or stops sharing it (SetShared).
type SharedArgs struct {
	ID     string
	Shared bool
}

// LocalAppsReply is LocalApps' result.
type LocalAppsReply struct {
	Apps    []catalog.App
	Sharing catalog.Sharing
	Err     string
}

// SharingReply is whether this host can share (SandboxError,
// CanSetUpSharing).
type SharingReply struct {
	Err      string // "" when it can
	CanSetUp bool
}

// record copies a launch for the window process.
func (l *launchState) record() LaunchRecord {
	return LaunchRecord{ID: l.id, Seq: l.seq, Peer: l.peer, PeerName: l.peerName, App: l.app, AppID: l.appID, Stage: l.stage,
		Done: l.done, Exit: l.exit, Err: l.err, Outcome: l.outcome, Files: l.files, Trusted: l.trusted, Isolated: l.isolated}
}

// restore adds (or replaces) a launch the desktop app recorded.
func (ls *launches) restore(r LaunchRecord) {
	ls.byID[r.ID] = &launchState{id: r.ID, seq: r.Seq, peer: r.Peer, peerName: r.PeerName, app: r.App, appID: r.AppID, stage: r.Stage,
		done: r.Done, exit: r.Exit, err: r.Err, outcome: r.Outcome, files: r.Files, trusted: r.Trusted, isolated: r.Isolated}
	if r.Seq > ls.seq {
		ls.seq = r.Seq
	}
}
