package ui

import (
	"context"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// Backend is what the interface needs from the daemon: exactly the methods
// it calls. *daemon.Daemon implements it.
type Backend interface {
	Peers() []dbusapi.Peer
	Apps(ctx context.Context, peer string) ([]dbusapi.App, error)
	Launch(peer, app string) (string, error)
	// LaunchWith is Launch bringing the user's files (the app's
	// arguments) and folders (in its home); AppsForFiles lists the apps
	// of a peer ("" every peer) that open all the files.
	LaunchWith(peer, app string, files []string, folders []dbusapi.Folder) (string, error)
	AppsForFiles(ctx context.Context, peer string, files []string) ([]dbusapi.Candidate, error)

	Pending() []dbusapi.Request
	AnswerFull(id string, allow, remember, block bool) error

	Sessions() []dbusapi.Session
	EndSession(id string) error
	SandboxUsage() []daemon.SandboxUsage
	// SandboxError says why this host cannot share apps at all (setup
	// missing, or running as a Flatpak), or nil.
	SandboxError() error
	// CanSetUpSharing reports whether SetUpSharing could fix that: only
	// the one-time setup is missing (not in a Flatpak).
	CanSetUpSharing() bool
	// SetUpSharing runs the one-time setup through polkit (it waits for
	// the password dialog) and makes sharing available without a restart;
	// an EventSharingChanged follows.
	SetUpSharing(ctx context.Context) error

	Settings() config.Settings
	SaveSettings(config.Settings) error
	LocalApps() ([]catalog.App, catalog.Sharing, error)
	SetShared(id string, shared bool) error
	LocalIcon(catalog.App) []byte
	KnownPeers() []identity.Pin
	ForgetPeer(identity.Fingerprint) error
	Blocked() map[string]string
	Unblock(fp string) error
	// Rules are the remembered decisions; ForgetRule revokes one (the
	// peer's fingerprint and the app's desktop ID).
	Rules() []dbusapi.Rule
	ForgetRule(peer, app string) error
	// Discovery says whether peers on the network are found, and if not,
	// why; Self is the user's own name, fingerprint and addresses.
	Discovery() dbusapi.Discovery
	Self() dbusapi.Self
	// DisplayMode is the display mode an app of a peer runs in, as the
	// daemon decides it (isolated also by default, where this display
	// cannot protect); SetDisplayMode chooses it (protected: back to the
	// default); DisplayModes lists the modes chosen (displaymode.go).
	DisplayMode(peer, app string) (dbusapi.DisplayMode, error)
	SetDisplayMode(peer, app string, mode dbusapi.DisplayMode) error
	DisplayModes() []dbusapi.DisplayChoice

	Events(ctx context.Context) <-chan daemon.Event
}

var _ Backend = (*daemon.Daemon)(nil)
