package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	avahi "github.com/holoplot/go-avahi"
)

const (
	avahiName        = "org.freedesktop.Avahi"
	avahiServerIface = "org.freedesktop.Avahi.Server"
	maxResolveTries  = 3
	maxResolving     = 4
)

var (
	errConnClosed = errors.New("D-Bus connection closed")
	errAvahiGone  = errors.New("avahi-daemon left the bus")
)

// Items put into a session's inbox.
type (
	browseEvent struct {
		svc     avahi.Service
		removed bool
	}
	resolveResult struct {
		key     itemKey
		gen     uint64
		attempt int
		svc     avahi.Service
		err     error
	}
	groupEvent struct{ state avahi.EntryGroupState }
	republish  struct{}
)

// session is one connection to avahi-daemon: from dial to the connection
// closing, the daemon leaving the bus, or ctx ending.
type session struct {
	s      *Service
	ctx    context.Context
	conn   *dbus.Conn
	server *avahi.Server
	in     *inbox
	table  *table
	done   chan struct{} // closed to stop the drainers
	wg     sync.WaitGroup
	sem    chan struct{} // bounds concurrent resolves

	owner    string             // avahi-daemon's unique bus name
	pending  map[itemKey]uint64 // browse items being resolved, by generation
	gen      uint64
	group    *avahi.EntryGroup
	name     string // service name being published
	collided int
	running  bool // avahi server state is Running
}

// session runs one connection. healthy reports whether it got as far as
// browsing, which resets the reconnection backoff.
func (s *Service) session(ctx context.Context) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := s.opts.Dial(ctx)
	if err != nil {
		s.setStatus(Status{State: StateNoSystemBus, Err: err.Error()})
		return false, fmt.Errorf("connecting to the system bus: %w", err)
	}
	ss := &session{
		s: s, ctx: ctx, conn: conn, in: newInbox(), table: newTable(),
		done: make(chan struct{}), sem: make(chan struct{}, maxResolving),
		pending: map[itemKey]uint64{}, name: s.opts.Self.Name,
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	defer func() {
		// Closing the server closes conn; the drainers must keep draining
		// until then, or go-avahi's dispatcher could block forever.
		if ss.server != nil {
			ss.server.Close()
		} else {
			conn.Close()
		}
		close(ss.done)
		ss.wg.Wait()
		s.setPublished("")
		s.emit(ss.table, ss.table.clear())
	}()
	if err := ss.waitForAvahi(sigs); err != nil {
		return false, err
	}
	ss.server, err = avahi.ServerNew(conn)
	if err != nil {
		return false, fmt.Errorf("connecting to avahi: %w", err)
	}
	if err := ss.start(); err != nil {
		return false, err
	}
	s.setStatus(Status{State: StateRunning})
	return true, ss.loop(sigs)
}

// waitForAvahi subscribes to the signals the session needs and waits until
// avahi-daemon owns its bus name.
func (ss *session) waitForAvahi(sigs <-chan *dbus.Signal) error {
	err := ss.conn.AddMatchSignal(dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, avahiName))
	if err == nil {
		err = ss.conn.AddMatchSignal(dbus.WithMatchInterface(avahiServerIface), dbus.WithMatchMember("StateChanged"))
	}
	if err != nil {
		return fmt.Errorf("subscribing to bus signals: %w", err)
	}
	var owner string
	err = ss.conn.BusObject().CallWithContext(ss.ctx, "org.freedesktop.DBus.GetNameOwner", 0, avahiName).Store(&owner)
	if err == nil {
		ss.owner = owner
		return nil
	}
	ss.s.log.Info("waiting for avahi-daemon", "err", err)
	ss.s.setStatus(Status{State: StateNoAvahi, Err: err.Error()})
	for {
		select {
		case <-ss.ctx.Done():
			return ss.ctx.Err()
		case sig, ok := <-sigs:
			if !ok {
				return errConnClosed
			}
			if name, _, newOwner, ok := nameOwnerChanged(sig); ok && name == avahiName && newOwner != "" {
				ss.owner = newOwner
				return nil
			}
		}
	}
}

// nameOwnerChanged decodes org.freedesktop.DBus.NameOwnerChanged.
func nameOwnerChanged(sig *dbus.Signal) (name, oldOwner, newOwner string, ok bool) {
	if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
		return "", "", "", false
	}
	name, ok1 := sig.Body[0].(string)
	oldOwner, ok2 := sig.Body[1].(string)
	newOwner, ok3 := sig.Body[2].(string)
	return name, oldOwner, newOwner, ok1 && ok2 && ok3
}

// start creates the entry group and the browser, draining both channels.
func (ss *session) start() error {
	if ss.s.opts.Port != 0 {
		g, err := ss.server.EntryGroupNew()
		if err != nil {
			return fmt.Errorf("creating avahi entry group: %w", err)
		}
		ss.group = g
		ss.drain(func() bool {
			select {
			case st, ok := <-g.StateChangeChannel:
				if ok {
					ss.in.put(groupEvent{st})
				}
				return ok
			case <-ss.done:
				return false
			}
		})
	}
	for _, domain := range append([]string{"local"}, ss.s.opts.BrowseDomains...) {
		if err := ss.browseDomain(domain); err != nil {
			return err
		}
	}
	state, err := ss.server.GetState()
	if err != nil {
		return fmt.Errorf("reading avahi server state: %w", err)
	}
	ss.serverState(state)
	return nil
}

// browseDomain browses ServiceType in domain, draining the browser.
func (ss *session) browseDomain(domain string) error {
	b, err := ss.server.ServiceBrowserNew(avahi.InterfaceUnspec, avahi.ProtoUnspec, ServiceType, domain, 0)
	if err != nil {
		return fmt.Errorf("browsing %s in %s on avahi: %w", ServiceType, domain, err)
	}
	ss.drain(func() bool {
		select {
		case svc, ok := <-b.AddChannel:
			if ok {
				ss.in.put(browseEvent{svc: svc})
			}
			return ok
		case svc, ok := <-b.RemoveChannel:
			if ok {
				ss.in.put(browseEvent{svc: svc, removed: true})
			}
			return ok
		case <-ss.done:
			return false
		}
	})
	return nil
}

// drain runs step in a goroutine until it returns false.
func (ss *session) drain(step func() bool) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		for step() {
		}
	}()
}

// loop handles signals and inbox items until the session ends.
func (ss *session) loop(sigs <-chan *dbus.Signal) error {
	for {
		select {
		case <-ss.ctx.Done():
			return ss.ctx.Err()
		case <-ss.conn.Context().Done():
			return errConnClosed
		case sig, ok := <-sigs:
			if !ok {
				return errConnClosed
			}
			if err := ss.signal(sig); err != nil {
				return err
			}
		case <-ss.in.notify:
			for _, item := range ss.in.take() {
				ss.handle(item)
			}
		}
	}
}

func (ss *session) signal(sig *dbus.Signal) error {
	if name, oldOwner, newOwner, ok := nameOwnerChanged(sig); ok {
		if name == avahiName && (oldOwner == ss.owner || newOwner != ss.owner) {
			return fmt.Errorf("%w (owner %q -> %q)", errAvahiGone, oldOwner, newOwner)
		}
		return nil
	}
	if sig.Name == avahiServerIface+".StateChanged" && sig.Path == "/" && len(sig.Body) >= 1 {
		if state, ok := sig.Body[0].(int32); ok {
			if state == avahi.ServerFailure {
				return fmt.Errorf("avahi server failed: %v", sig.Body[1:])
			}
			ss.serverState(state)
		}
	}
	return nil
}

// serverState follows the avahi server: publish once it runs, withdraw while
// it re-registers its host name.
func (ss *session) serverState(state int32) {
	wasRunning := ss.running
	ss.running = state == avahi.ServerRunning
	switch {
	case ss.running && !wasRunning:
		ss.publish()
	case !ss.running && wasRunning && ss.group != nil:
		ss.s.setPublished("")
		if err := ss.group.Reset(); err != nil {
			ss.s.log.Warn("resetting avahi entry group", "err", err)
		}
	}
}

func (ss *session) handle(item any) {
	switch it := item.(type) {
	case browseEvent:
		ss.browse(it)
	case resolveResult:
		ss.resolved(it)
	case groupEvent:
		ss.groupState(it.state)
	case republish:
		if ss.running {
			ss.publish()
		}
	}
}

// publish (re)announces our service under ss.name.
func (ss *session) publish() {
	if ss.group == nil {
		return
	}
	txt, err := EncodeTXT(ss.s.opts.Self)
	if err == nil {
		err = ss.group.Reset()
	}
	if err == nil {
		err = ss.group.AddService(avahi.InterfaceUnspec, avahi.ProtoUnspec, 0, ss.name, ServiceType, "", "", ss.s.opts.Port, txt)
	}
	if err == nil {
		err = ss.group.Commit()
	}
	if err != nil {
		ss.s.log.Warn("publishing on avahi failed, retrying", "name", ss.name, "err", err)
		ss.later(time.Second, republish{})
		return
	}
	ss.s.log.Debug("publishing", "name", ss.name, "port", ss.s.opts.Port)
}

// later puts item into the inbox after d, unless the session ends first.
func (ss *session) later(d time.Duration, item any) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		select {
		case <-time.After(d):
			ss.in.put(item)
		case <-ss.done:
		}
	}()
}

func (ss *session) groupState(st avahi.EntryGroupState) {
	switch st.State {
	case avahi.EntryGroupEstablished:
		ss.s.log.Info("published", "name", ss.name, "type", ServiceType, "port", ss.s.opts.Port)
		ss.s.setPublished(ss.name)
	case avahi.EntryGroupCollision:
		ss.s.setPublished("")
		ss.collided++
		if ss.collided > ss.s.opts.MaxCollisions {
			ss.s.log.Error("giving up publishing after repeated name collisions", "name", ss.name, "collisions", ss.collided)
			return
		}
		alt, err := ss.server.GetAlternativeServiceName(ss.name)
		if err != nil {
			ss.s.log.Warn("choosing an alternative service name", "name", ss.name, "err", err)
			ss.later(time.Second, republish{})
			return
		}
		ss.s.log.Info("service name collision, renaming", "from", ss.name, "to", alt)
		ss.name = alt
		ss.publish()
	case avahi.EntryGroupFailure:
		ss.s.setPublished("")
		ss.s.log.Warn("avahi entry group failed, retrying", "name", ss.name, "err", st.Error)
		ss.later(time.Second, republish{})
	}
}

func keyOf(svc avahi.Service) itemKey {
	return itemKey{iface: svc.Interface, proto: svc.Protocol, name: svc.Name, domain: svc.Domain}
}

// browse starts resolving a new item or forgets a removed one.
func (ss *session) browse(ev browseEvent) {
	k := keyOf(ev.svc)
	if ev.removed {
		delete(ss.pending, k)
		ss.s.emit(ss.table, ss.table.remove(k))
		return
	}
	ss.gen++
	ss.pending[k] = ss.gen
	ss.resolve(k, ss.gen, 1, 0)
}

// resolve resolves item k in a goroutine after delay.
func (ss *session) resolve(k itemKey, gen uint64, attempt int, delay time.Duration) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ss.done:
				return
			}
		}
		select {
		case ss.sem <- struct{}{}:
		case <-ss.done:
			return
		}
		defer func() { <-ss.sem }()
		svc, err := ss.server.ResolveService(k.iface, k.proto, k.name, ServiceType, k.domain, avahi.ProtoUnspec, 0)
		if err == nil && isLinkLocal6(svc.Address) {
			if ifname, ierr := ss.server.GetNetworkInterfaceNameByIndex(k.iface); ierr == nil {
				svc.Address += "%" + ifname
			}
		}
		ss.in.put(resolveResult{key: k, gen: gen, attempt: attempt, svc: svc, err: err})
	}()
}

func isLinkLocal6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.IsLinkLocalUnicast()
}

// resolved applies a resolution to the peer table, ignoring stale results,
// our own announcement and malformed announcements.
func (ss *session) resolved(r resolveResult) {
	if ss.pending[r.key] != r.gen {
		return // removed or re-announced meanwhile
	}
	log := ss.s.log.With("instance", r.key.name, "interface", r.key.iface, "protocol", r.key.proto)
	if r.err != nil {
		if r.attempt < maxResolveTries {
			log.Debug("resolving failed, retrying", "err", r.err, "attempt", r.attempt)
			ss.resolve(r.key, r.gen, r.attempt+1, time.Duration(r.attempt)*500*time.Millisecond)
			return
		}
		log.Warn("resolving peer failed", "err", r.err)
		return
	}
	delete(ss.pending, r.key)
	ann, err := DecodeTXT(r.svc.Txt)
	if err != nil {
		log.Warn("ignoring announcement with a bad TXT record", "host", r.svc.Host, "err", err)
		ss.s.emit(ss.table, ss.table.remove(r.key))
		return
	}
	if ann.Fingerprint == ss.s.opts.Self.Fingerprint {
		log.Debug("ignoring our own announcement")
		return
	}
	res := resolution{ann: ann, host: r.svc.Host, port: r.svc.Port}
	if a, err := netip.ParseAddr(r.svc.Address); err == nil {
		res.addr = a
	} else {
		log.Warn("peer address does not parse", "address", r.svc.Address, "err", err)
	}
	ss.s.emit(ss.table, ss.table.set(r.key, res))
}
