package daemon

import (
	"context"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// Event is something the GUI (or the D-Bus API) shows: a peer came or went,
// a consent prompt appeared or ended, one of our launches progressed or
// finished, sharing became available (or its cause changed).
type Event struct {
	Kind    EventKind       // one of the Event* constants
	Peer    dbusapi.Peer    // EventPeerAdded; EventPeerRemoved has only Fingerprint
	Request dbusapi.Request // EventRequestPending; EventRequestResolved has ID
	Allowed bool            // EventRequestResolved
	Reason  string          // EventRequestResolved
	Launch  string          // launch id for EventLaunch*
	Stage   dbusapi.Stage   // EventLaunchProgress
	Exit    int             // EventLaunchFinished
	Err     string          // EventLaunchFinished; EventSharingChanged: why sharing is unavailable ("" when it is available)
	// Outcome is how the launch ended (EventLaunchFinished): OutcomeExited
	// with Exit, else why, with Err saying it in words.
	Outcome dbusapi.Outcome
	// Session is the session that started or ended
	// (EventSessionStarted, EventSessionEnded), incoming or outgoing.
	Session dbusapi.Session
	// ByRule: a remembered decision let the peer in (EventSessionStarted
	// of an incoming session): the user was not asked.
	ByRule bool
	// Apps is the peer's app list now (EventPeerAppsChanged).
	Apps []dbusapi.App
	// Discovery is the discovery's state now (EventDiscoveryChanged).
	Discovery dbusapi.Discovery
}

// EventKind says what an Event is about.
type EventKind string

// Event kinds.
const (
	EventPeerAdded       EventKind = "peer-added"
	EventPeerRemoved     EventKind = "peer-removed"
	EventRequestPending  EventKind = "request-pending"
	EventRequestResolved EventKind = "request-resolved"
	EventLaunchProgress  EventKind = "launch-progress"
	EventLaunchFinished  EventKind = "launch-finished"
	// EventSharingChanged: whether this host can share apps changed
	// (RetrySharing): views read SandboxError and CanSetUpSharing again.
	EventSharingChanged EventKind = "sharing-changed"
	// EventSessionStarted, EventSessionEnded: a peer's app started or
	// ended here (incoming; an outgoing session is followed by the
	// launch events), so Sessions changed.
	EventSessionStarted EventKind = "session-started"
	EventSessionEnded   EventKind = "session-ended"
	// EventRulesChanged: the remembered decisions or the block list
	// changed (Rules, BlockedPeers).
	EventRulesChanged EventKind = "rules-changed"
	// EventPeerAppsChanged: a peer's shared apps differ from the list it
	// gave before (Peer has only Fingerprint; Apps the list now).
	EventPeerAppsChanged EventKind = "peer-apps-changed"
	// EventDiscoveryChanged: discovery started working, or stopped
	// (Discovery says why).
	EventDiscoveryChanged EventKind = "discovery-changed"
	// EventDisplayModesChanged: the display mode chosen for an app of a
	// peer changed (DisplayModes, DisplayMode).
	EventDisplayModesChanged EventKind = "display-modes-changed"
)

// Events returns a channel of events until ctx ends. A subscriber that
// does not keep up misses events rather than slowing the daemon.
func (d *Daemon) Events(ctx context.Context) <-chan Event {
	ch := make(chan Event, 256)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
		close(ch)
	}()
	return ch
}

// publish sends an event to subscribers and as a D-Bus signal.
func (d *Daemon) publish(ev Event) {
	d.mu.Lock()
	for ch := range d.subs {
		select {
		case ch <- ev:
		default:
		}
	}
	api := d.api
	d.mu.Unlock()
	if api == nil {
		return
	}
	switch ev.Kind {
	case EventPeerAdded:
		api.PeerAdded(ev.Peer)
	case EventPeerRemoved:
		api.PeerRemoved(ev.Peer.Fingerprint)
	case EventRequestPending:
		api.RequestPending(ev.Request)
	case EventRequestResolved:
		api.RequestResolved(ev.Request.ID, ev.Allowed, ev.Reason)
	case EventLaunchProgress:
		api.LaunchProgress(ev.Launch, ev.Stage)
	case EventLaunchFinished:
		api.LaunchFinished(ev.Launch, int32(ev.Exit), ev.Err, ev.Outcome)
	case EventSharingChanged:
		api.SharingChanged(ev.Err == "", ev.Err)
	case EventSessionStarted:
		api.SessionStarted(ev.Session, ev.ByRule)
	case EventSessionEnded:
		api.SessionEnded(ev.Session.ID)
	case EventRulesChanged:
		api.RulesChanged()
	case EventPeerAppsChanged:
		api.PeerAppsChanged(ev.Peer.Fingerprint)
	case EventDiscoveryChanged:
		api.DiscoveryChanged(ev.Discovery)
	case EventDisplayModesChanged:
		api.DisplayModesChanged()
	}
}
