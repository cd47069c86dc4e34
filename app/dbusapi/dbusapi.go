// Package dbusapi is eBrainPool's session-bus API, io.github.ebrainpool.EBrainPool1:
// the daemon exports it (with introspection), the command line and other
// programs use it through Client. Launch is asynchronous: it returns an id
// at once and LaunchProgress / LaunchFinished signals follow, because
// consent alone may take longer than a D-Bus call may last. SetUpSharing
// blocks while polkit asks for a password: call it with a long timeout.
package dbusapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// Names of the API on the session bus.
const (
	BusName   = "io.github.ebrainpool.EBrainPool1"
	Interface = "io.github.ebrainpool.EBrainPool1"
	Path      = dbus.ObjectPath("/io/github/ebrainpool/EBrainPool1")
)

// Peer is a discovered peer; Trust is one of the Trust* constants.
type Peer struct {
	Fingerprint string
	Short       string
	Name        string
	Host        string
	Address     string
	Port        uint16
	Trust       Trust
	// Introducer: the user marked this peer as introducer;
	// IntroducedBy is the name of the introducer that told of this peer
	// ("" for a peer discovered or added by address).
	Introducer   bool
	IntroducedBy string
}

// App is one app a peer shares.
type App struct {
	ID      string
	Name    string
	Comment string
	Icon    []byte // PNG
}

// Request is a pending consent prompt on this host.
type Request struct {
	ID        string
	Peer      string
	PeerName  string
	From      string
	App       string
	FirstTime bool
	Deadline  int64 // unix seconds
	// Files the requester brings (names, a folder's ending in "/"): for
	// this process's own views, not sent on the bus.
	Files []string `dbus:"-"`
	// Display is how the requester shows the app (for this process's own
	// views, not sent on the bus).
	Display DisplayMode `dbus:"-"`
}

// Session is an app a peer runs here (DirectionIncoming) or one we run on
// a peer (DirectionOutgoing). State is StageGranted or StageRunning for an
// incoming session, the launch's current Stage for an outgoing one.
type Session struct {
	ID        string // this side's handle (End takes it)
	Direction Direction
	Peer      string
	PeerName  string
	App       string
	Since     int64 // unix seconds
	State     Stage
	// Session is the id both sides know the session by (the host's, which
	// its grant carries); "" on the requester until the host granted it.
	Session string
	// Files brought into the app (names, a folder's ending in "/"): for
	// this process's own views, not sent on the bus.
	Files []string `dbus:"-"`
}

// Backend is what the daemon provides behind the API.
type Backend interface {
	Peers() []Peer
	Apps(ctx context.Context, peer string) ([]App, error)
	Launch(peer, app string) (string, error)
	Pending() []Request
	Answer(id string, allow, remember bool) error
	Block(peer string) error
	Sessions() []Session
	EndSession(id string) error
	// SandboxError says why this host cannot share apps, or nil;
	// CanSetUpSharing whether SetUpSharing could fix that (only the
	// one-time setup is missing); SetUpSharing runs that setup through
	// polkit and makes sharing available without a restart.
	SandboxError() error
	CanSetUpSharing() bool
	SetUpSharing(ctx context.Context) error
}

// ErrNotRunning means no daemon owns the bus name.
var ErrNotRunning = errors.New("the eBrainPool daemon is not running: start the desktop app or `ebrainpool daemon`")

// object is the exported D-Bus object; its exported methods are the API.
type object struct{ b Backend }

// dbusErr is a method's error on the bus: the message, and beside it the
// Outcome when the error carries one (a *LaunchError), so that clients can
// tell an unreachable or refusing peer from other failures.
func dbusErr(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	var le *LaunchError
	if errors.As(err, &le) && le.Outcome != "" {
		return dbus.NewError(Interface+".Error", []any{err.Error(), string(le.Outcome)})
	}
	return dbus.NewError(Interface+".Error", []any{err.Error()})
}

func (o object) ListPeers() ([]Peer, *dbus.Error) { return o.b.Peers(), nil }
func (o object) ListApps(peer string) ([]App, *dbus.Error) {
	apps, err := o.b.Apps(context.Background(), peer)
	return apps, dbusErr(err)
}
func (o object) Launch(peer, app string) (string, *dbus.Error) {
	id, err := o.b.Launch(peer, app)
	return id, dbusErr(err)
}
func (o object) Pending() ([]Request, *dbus.Error) { return o.b.Pending(), nil }
func (o object) Answer(id string, allow, remember bool) *dbus.Error {
	return dbusErr(o.b.Answer(id, allow, remember))
}
func (o object) Block(peer string) *dbus.Error      { return dbusErr(o.b.Block(peer)) }
func (o object) Sessions() ([]Session, *dbus.Error) { return o.b.Sessions(), nil }
func (o object) EndSession(id string) *dbus.Error   { return dbusErr(o.b.EndSession(id)) }

// SharingStatus says whether this host shares apps and, when it cannot,
// why and whether SetUpSharing would fix it.
func (o object) SharingStatus() (available, canSetUp bool, reason string, _ *dbus.Error) {
	if err := o.b.SandboxError(); err != nil {
		return false, o.b.CanSetUpSharing(), err.Error(), nil
	}
	return true, false, "", nil
}

// SetUpSharing runs the one-time setup through polkit (pkexec asks for an
// administrator's password) and returns once sharing is available, or
// with the reason it is not.
func (o object) SetUpSharing() *dbus.Error {
	return dbusErr(o.b.SetUpSharing(context.Background()))
}

// Signals, with their argument names for introspection.
var signals = []introspect.Signal{
	{Name: "PeerAdded", Args: []introspect.Arg{{Name: "peer", Type: sigOf(Peer{})}}},
	{Name: "PeerRemoved", Args: []introspect.Arg{{Name: "fingerprint", Type: "s"}}},
	{Name: "RequestPending", Args: []introspect.Arg{{Name: "request", Type: sigOf(Request{})}}},
	{Name: "RequestResolved", Args: []introspect.Arg{{Name: "id", Type: "s"}, {Name: "allowed", Type: "b"}, {Name: "reason", Type: "s"}}},
	{Name: "LaunchProgress", Args: []introspect.Arg{{Name: "id", Type: "s"}, {Name: "stage", Type: "s"}}},
	{Name: "LaunchFinished", Args: []introspect.Arg{{Name: "id", Type: "s"}, {Name: "exit_status", Type: "i"}, {Name: "error", Type: "s"}, {Name: "outcome", Type: "s"}}},
	{Name: "SharingChanged", Args: []introspect.Arg{{Name: "available", Type: "b"}, {Name: "reason", Type: "s"}}},
}

func sigOf(v any) string { return dbus.SignatureOf(v).String() }

// Server is the exported API on a connection.
type Server struct{ conn *dbus.Conn }

// Export exports the API on conn and takes the bus name; a second daemon of
// the same user gets an error saying one already runs.
func Export(conn *dbus.Conn, b Backend) (*Server, error) {
	obj := object{b}
	if err := conn.Export(obj, Path, Interface); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", Interface, err)
	}
	node := &introspect.Node{
		Name: string(Path),
		Interfaces: []introspect.Interface{
			introspect.IntrospectData,
			{Name: Interface, Methods: introspect.Methods(obj), Signals: signals},
		},
	}
	if err := conn.Export(introspect.NewIntrospectable(node), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("exporting introspection: %w", err)
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, fmt.Errorf("taking the bus name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return nil, fmt.Errorf("another eBrainPool daemon already runs for this user (it owns %s)", BusName)
	}
	return &Server{conn: conn}, nil
}

func (s *Server) emit(name string, args ...any) {
	s.conn.Emit(Path, Interface+"."+name, args...)
}

// PeerAdded announces a new or updated peer.
func (s *Server) PeerAdded(p Peer) { s.emit("PeerAdded", p) }

// PeerRemoved announces a peer gone.
func (s *Server) PeerRemoved(fingerprint string) { s.emit("PeerRemoved", fingerprint) }

// RequestPending announces a consent prompt.
func (s *Server) RequestPending(r Request) { s.emit("RequestPending", r) }

// RequestResolved announces a prompt's end.
func (s *Server) RequestResolved(id string, allowed bool, reason string) {
	s.emit("RequestResolved", id, allowed, reason)
}

// LaunchProgress reports a stage of one of our launches.
func (s *Server) LaunchProgress(id string, stage Stage) { s.emit("LaunchProgress", id, string(stage)) }

// LaunchFinished reports the end of one of our launches: the app's exit
// status, or -1 and the error; outcome is how it ended, as a code (an
// Outcome: "exited" with the exit status, else why). Its arguments are
// (id s, exit_status i, error s, outcome s); the fourth came last, so a
// reader of the first three keeps working.
func (s *Server) LaunchFinished(id string, exit int32, errText string, outcome Outcome) {
	s.emit("LaunchFinished", id, exit, errText, string(outcome))
}

// SharingChanged announces that whether this host can share apps changed:
// available, or the reason it is not.
func (s *Server) SharingChanged(available bool, reason string) {
	s.emit("SharingChanged", available, reason)
}

// remoteErr turns a D-Bus error from the daemon into a plain error.
func remoteErr(err error) error {
	var de dbus.Error
	if errors.As(err, &de) {
		if de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" {
			return ErrNotRunning
		}
		if len(de.Body) > 0 {
			if s, ok := de.Body[0].(string); ok {
				if len(de.Body) > 1 {
					if o, ok := de.Body[1].(string); ok && o != "" {
						return &LaunchError{Outcome: Outcome(o), Message: s}
					}
				}
				return errors.New(s)
			}
		}
	}
	var dep *dbus.Error
	if errors.As(err, &dep) {
		return remoteErr(*dep)
	}
	return err
}
