package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

// DialFunc opens a new private connection to the system bus, for example
// dbus.ConnectSystemBus or dbus.Connect(address). Service calls it again
// whenever the connection is lost or avahi-daemon restarts, and closes every
// connection it got when done with it, so it must not return a shared one.
type DialFunc func(ctx context.Context) (*dbus.Conn, error)

// Finder is the read side of discovery that the rest of the app uses.
type Finder interface {
	Peers() []Peer
	Peer(fp identity.Fingerprint) (Peer, bool)
}

// Options configure a Service.
type Options struct {
	// Dial connects to the system bus; required.
	Dial DialFunc
	// Self is this instance's announcement. Its fingerprint is required: it
	// is how our own announcement is recognised and skipped.
	Self Announcement
	// Port is the control port published in the SRV record. Zero means
	// browse only, publish nothing.
	Port uint16
	// BrowseDomains are unicast DNS domains browsed for ServiceType
	// besides "local" (wide-area DNS-SD: avahi asks its unicast DNS
	// servers for the PTR, SRV and TXT records an administrator
	// publishes there; avahi-daemon needs enable-wide-area=yes, its
	// default). Nothing is published there.
	BrowseDomains []string
	// OnEvent, if set, is called for every change to the peer list, from
	// Run's goroutine, in order. It must not block.
	OnEvent func(Event)
	// Logger receives diagnostics; slog.Default() if nil.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts; 100ms and 10s if zero.
	MinBackoff, MaxBackoff time.Duration
	// MaxCollisions bounds how many alternative service names are tried
	// after name collisions before giving up publishing; 10 if zero.
	MaxCollisions int
	// OnStatus, if set, is told when the state changes (working, or off
	// and why), from Run's goroutine. It must not block.
	OnStatus func(Status)
}

// Service publishes this instance and maintains the list of peers.
type Service struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	peers     []Peer
	published string
	status    Status // see Status
}

var _ Finder = (*Service)(nil)

// New validates opts and returns a Service; call Run to start it.
func New(opts Options) (*Service, error) {
	if opts.Dial == nil {
		return nil, errors.New("discovery: Options.Dial is required")
	}
	if opts.Self.Version == 0 {
		opts.Self.Version = ProtocolVersion
	}
	if !opts.Self.Fingerprint.Valid() {
		return nil, fmt.Errorf("discovery: own fingerprint %q: %w", opts.Self.Fingerprint, identity.ErrInvalidFingerprint)
	}
	if opts.Port != 0 {
		if _, err := EncodeTXT(opts.Self); err != nil {
			return nil, fmt.Errorf("discovery: own announcement: %w", err)
		}
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(10*time.Second, opts.MinBackoff)
	}
	if opts.MaxCollisions <= 0 {
		opts.MaxCollisions = 10
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{opts: opts, log: log.With("component", "discovery")}, nil
}

// Run publishes and browses until ctx is done, reconnecting as needed. It
// returns ctx.Err().
func (s *Service) Run(ctx context.Context) error {
	backoff := s.opts.MinBackoff
	for {
		healthy, err := s.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy {
			backoff = s.opts.MinBackoff
		}
		s.log.Info("avahi session ended, reconnecting", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if !healthy {
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
	}
}

// Peers returns the current peers, sorted by name then fingerprint.
func (s *Service) Peers() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Peer, len(s.peers))
	copy(out, s.peers)
	return out
}

// Peer returns the peer with fingerprint fp.
func (s *Service) Peer(fp identity.Fingerprint) (Peer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.Fingerprint == fp {
			return p, true
		}
	}
	return Peer{}, false
}

// PublishedName returns the service instance name our announcement is
// established under ("" while not established); it differs from the display
// name after a name collision.
func (s *Service) PublishedName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published
}

func (s *Service) setPublished(name string) {
	s.mu.Lock()
	s.published = name
	s.mu.Unlock()
}

// emit publishes the table's state and then reports evs.
func (s *Service) emit(t *table, evs []Event) {
	if len(evs) == 0 {
		return
	}
	list := t.list()
	s.mu.Lock()
	s.peers = list
	s.mu.Unlock()
	for _, ev := range evs {
		s.log.Debug("peer "+ev.Kind.String(), "peer", ev.Peer.String())
		if s.opts.OnEvent != nil {
			s.opts.OnEvent(ev)
		}
	}
}
