package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

// Peer is the authenticated other side of a control connection.
type Peer struct {
	Fingerprint identity.Fingerprint
	Key         ssh.PublicKey
	Name        string // as the peer calls itself in its hello (unverified)
	Addr        net.Addr
	LocalAddr   net.Addr // the address the request came in on
	// Display is, for a launch, how the requester says it shows the app
	// ("" from older requesters).
	Display DisplayMode
}

// Handler serves requests. Launch blocks while the host decides; it reports
// stages through progress and refuses with a *RefusedError.
type Handler interface {
	Catalog(ctx context.Context, p Peer) ([]AppInfo, error)
	Launch(ctx context.Context, p Peer, app string, progress func(stage string)) (*Grant, error)
	End(ctx context.Context, p Peer, session string) error
}

// Server accepts control connections.
type Server struct {
	Identity ssh.Signer // the host's identity (its SSH host key)
	Name     string     // display name sent in hello (SetName changes it)
	Handler  Handler
	Logger   *slog.Logger
	// HandshakeTimeout bounds the whole SSH handshake and each hello
	// (default 10s); BannerTimeout, KexTimeout and AuthTimeout bound its
	// stages: the client's version line from the accept, the key exchange
	// from there, and authentication from there (default 3s each).
	HandshakeTimeout                       time.Duration
	BannerTimeout, KexTimeout, AuthTimeout time.Duration
	// Peers, if set, lists the peers this host introduces to a peer that
	// asks (TypePeers); nil refuses such requests.
	Peers PeersFunc
	// RequestTimeout bounds one request, consent included (default 2m).
	RequestTimeout time.Duration
	// IdleTimeout closes a connection with no request open (default 2m).
	IdleTimeout time.Duration
	// Unauthenticated connections (admit.go): MaxStartups is the random
	// early drop of those from strangers' addresses (default 256:30:1024),
	// MaxStartupsPerIP each address's share (default 16; a new connection
	// from an address holding its share displaces the address's oldest),
	// ReservedStartups the pool of addresses a connection authenticated
	// from recently (default 256). Limits beyond half the descriptor
	// limit are scaled down.
	MaxStartups      Startups
	MaxStartupsPerIP int
	ReservedStartups int
	// MaxConns and MaxConnsPerIP bound authenticated connections (defaults
	// 256 and 32); MaxChannels bounds concurrent requests per connection
	// (default 4).
	MaxConns, MaxConnsPerIP, MaxChannels int

	mu   sync.Mutex
	gate *gate
}

func (s *Server) defaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.gate != nil {
		return
	}
	if s.HandshakeTimeout <= 0 {
		s.HandshakeTimeout = 10 * time.Second
	}
	for _, d := range []*time.Duration{&s.BannerTimeout, &s.KexTimeout, &s.AuthTimeout} {
		if *d <= 0 {
			*d = 3 * time.Second
		}
	}
	if s.RequestTimeout <= 0 {
		s.RequestTimeout = 2 * time.Minute
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 2 * time.Minute
	}
	if m := s.MaxStartups; m.Start <= 0 || m.Full < m.Start || m.Rate < 0 || m.Rate > 100 {
		s.MaxStartups = DefaultMaxStartups
	}
	if s.MaxStartupsPerIP <= 0 {
		s.MaxStartupsPerIP = DefaultMaxStartupsPerIP
	}
	if s.ReservedStartups <= 0 {
		s.ReservedStartups = DefaultReservedStartups
	}
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if s.MaxChannels <= 0 {
		s.MaxChannels = 4
	}
	lim := limits{startups: s.MaxStartups, startupsPerIP: s.MaxStartupsPerIP, reserved: s.ReservedStartups,
		conns: s.MaxConns, connsPer: s.MaxConnsPerIP}
	lim.fitDescriptors(s.Logger)
	s.gate = newGate(lim, s.Logger)
}

// SetName changes the display name sent in the hellos from now on.
func (s *Server) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Name = name
}

func (s *Server) name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Name
}

// Serve accepts connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.defaults()
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if isTemporaryAccept(err) {
				// Out of descriptors (or a connection gone before its
				// accept): wait for some to close rather than stop serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Warn("accepting control connections", "err", err, "retry in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("accepting control connections: %w", err)
		}
		backoff = 0
		sl := s.gate.admit(c)
		if sl == nil {
			abort(c)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.gate.release(sl)
			s.serveConn(ctx, c, sl)
		}()
	}
}

// isTemporaryAccept reports whether an Accept error passes (EMFILE,
// ENFILE, ENOBUFS, ENOMEM, ECONNABORTED).
func isTemporaryAccept(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeConn serves one connection until it closes or ctx ends (with the
// handshake's stage deadlines, outside the budgets of Serve).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.defaults()
	s.serveConn(ctx, c, nil)
}

// serveConn serves c; sl, if set, is its place in the gate's budgets.
func (s *Server) serveConn(ctx context.Context, c net.Conn, sl *slot) {
	defer c.Close()
	staged := newStagedConn(c, [stageCount]time.Duration{s.BannerTimeout, s.KexTimeout, s.AuthTimeout}, s.HandshakeTimeout)
	cfg := &ssh.ServerConfig{
		// Any Ed25519 key may connect: who may do what is decided per
		// request (consent, block list), by the key's fingerprint.
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if key.Type() != ssh.KeyAlgoED25519 {
				return nil, fmt.Errorf("only ed25519 identities are accepted, not %s", key.Type())
			}
			return &ssh.Permissions{Extensions: map[string]string{
				"pubkey-fp": string(identity.FingerprintOf(key)),
				"pubkey":    string(key.Marshal()),
			}}, nil
		},
		// The key exchange is done: authentication has its own deadline,
		// and a connection the authenticated budget could not keep ends
		// here, before its client believes it is in.
		PreAuthConnCallback: func(ssh.ServerPreAuthConn) {
			if sl != nil && !s.gate.mayAuthenticate(sl) {
				s.gate.refusedAuth()
				s.Logger.Warn("control connection refused: too many authenticated connections", "from", c.RemoteAddr())
				c.Close()
				return
			}
			staged.enter(stageAuth)
		},
		MaxAuthTries:  2,
		ServerVersion: "SSH-2.0-eBrainPool-control",
	}
	cfg.AddHostKey(s.Identity)
	err := staged.readBanner()
	var sc *ssh.ServerConn
	var chans <-chan ssh.NewChannel
	var reqs <-chan *ssh.Request
	if err == nil {
		sc, chans, reqs, err = ssh.NewServerConn(staged, cfg)
	}
	if err != nil {
		st := staged.current()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && s.gate != nil {
			s.gate.timedOut[st].Add(1)
		}
		s.Logger.Debug("control handshake failed", "from", c.RemoteAddr(), "stage", st, "err", err)
		return
	}
	defer sc.Close()
	staged.enter(stageDone)
	if sl != nil && !s.gate.authenticated(sl) {
		s.Logger.Warn("control connection closed: too many authenticated connections", "from", c.RemoteAddr())
		return
	}
	go ssh.DiscardRequests(reqs)
	key, err := ssh.ParsePublicKey([]byte(sc.Permissions.Extensions["pubkey"]))
	if err != nil {
		return
	}
	peer := Peer{Fingerprint: identity.Fingerprint(sc.Permissions.Extensions["pubkey-fp"]), Key: key, Addr: c.RemoteAddr(), LocalAddr: c.LocalAddr()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); sc.Close() }()

	active := make(chan struct{}, s.MaxChannels)
	idle := time.NewTimer(s.IdleTimeout)
	defer idle.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-idle.C:
			if len(active) == 0 {
				s.Logger.Debug("closing idle control connection", "peer", peer.Fingerprint)
				return
			}
			idle.Reset(s.IdleTimeout)
		case nc, ok := <-chans:
			if !ok {
				return
			}
			if nc.ChannelType() != ChannelType {
				nc.Reject(ssh.UnknownChannelType, "only "+ChannelType+" channels")
				continue
			}
			select {
			case active <- struct{}{}:
			default:
				nc.Reject(ssh.ResourceShortage, "too many concurrent requests")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				<-active
				continue
			}
			go ssh.DiscardRequests(creqs)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-active; idle.Reset(s.IdleTimeout) }()
				defer ch.Close()
				s.serveChannel(ctx, ch, peer)
			}()
		}
	}
}

// serveChannel runs hello and one request on a channel.
func (s *Server) serveChannel(ctx context.Context, ch ssh.Channel, peer Peer) {
	ctx, cancel := context.WithTimeout(ctx, s.RequestTimeout)
	defer cancel()
	// A read that never completes is ended by closing the channel.
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	readTimed := func(d time.Duration) (*Msg, error) {
		t := time.AfterFunc(d, func() { ch.Close() })
		defer t.Stop()
		return readMsg(ch)
	}
	hello, err := readTimed(s.HandshakeTimeout)
	if err != nil || hello.Type != TypeHello {
		return
	}
	v := pickVersion(hello.Versions)
	if v == 0 {
		writeMsg(ch, &Msg{Type: TypeRefused, Code: CodeVersion, Reason: fmt.Sprintf("this host speaks protocol versions %v, you offered %v", Versions, hello.Versions)})
		return
	}
	peer.Name = boundName(hello.Name)
	if err := writeMsg(ch, &Msg{Type: TypeHello, Version: v, Name: s.name()}); err != nil {
		return
	}
	req, err := readTimed(s.HandshakeTimeout)
	if err != nil {
		return
	}
	// The client closes its side to cancel: watch for EOF while serving.
	reqCtx, cancelReq := context.WithCancel(ctx)
	defer cancelReq()
	go func() {
		io.Copy(io.Discard, io.LimitReader(ch, 1<<10))
		cancelReq()
	}()
	var mu sync.Mutex
	send := func(m *Msg) error { mu.Lock(); defer mu.Unlock(); return writeMsg(ch, m) }
	refuse := func(err error) {
		var r *RefusedError
		if !errors.As(err, &r) {
			s.Logger.Error("control request failed", "peer", peer.Fingerprint, "type", req.Type, "err", err)
			r = &RefusedError{Code: CodeInternal, Reason: "the host could not complete the request"}
			if reqCtx.Err() != nil {
				r = &RefusedError{Code: CodeCanceled, Reason: "canceled"}
			}
		}
		send(&Msg{Type: TypeRefused, Code: r.Code, Reason: r.Reason})
	}
	switch req.Type {
	case TypeCatalog:
		apps, err := s.Handler.Catalog(reqCtx, peer)
		if err != nil {
			refuse(err)
			return
		}
		if err := send(&Msg{Type: TypeApps, Apps: apps}); err != nil {
			s.Logger.Warn("sending catalog", "peer", peer.Fingerprint, "err", err)
		}
	case TypeLaunch:
		if req.App == "" || len(req.App) > 255 {
			refuse(Refuse(CodeBadRequest, "launch needs an app id of at most 255 bytes"))
			return
		}
		var g *Grant
		var err error
		progress := func(stage string) { send(&Msg{Type: TypeProgress, Stage: stage}) }
		peer := peer
		switch req.Display {
		case "", DisplayProtected, DisplayTrusted, DisplayIsolated:
			peer.Display = req.Display
		default:
			refuse(Refuse(CodeBadRequest, fmt.Sprintf("unknown display mode %q", req.Display)))
			return
		}
		if fh, ok := s.Handler.(FilesHandler); ok {
			if err = CheckFiles(req.Files); err == nil {
				g, err = fh.LaunchWith(reqCtx, peer, req.App, req.Files, progress)
			}
		} else {
			g, err = s.Handler.Launch(reqCtx, peer, req.App, progress)
		}
		if err != nil {
			refuse(err)
			return
		}
		send(&Msg{Type: TypeGrant, Grant: g})
	case TypePeers:
		if s.Peers == nil {
			refuse(Refuse(CodeBadRequest, "this host introduces no peers"))
			return
		}
		list, err := s.Peers(reqCtx, peer)
		if err != nil {
			refuse(err)
			return
		}
		if len(list) > MaxIntroduced {
			list = list[:MaxIntroduced]
		}
		if err := send(&Msg{Type: TypePeerList, Peers: list}); err != nil {
			s.Logger.Warn("sending the peer list", "peer", peer.Fingerprint, "err", err)
		}
	case TypeEnd:
		if err := s.Handler.End(reqCtx, peer, req.Session); err != nil {
			refuse(err)
			return
		}
		send(&Msg{Type: TypeOK})
	default:
		refuse(Refuse(CodeBadRequest, fmt.Sprintf("unknown request %q", req.Type)))
	}
	ch.CloseWrite()
}

// boundName keeps a peer-supplied display name short and printable.
func boundName(s string) string {
	out := make([]rune, 0, 64)
	for _, r := range s {
		if len(out) == 63 {
			break
		}
		if r < 0x20 || r == 0x7f {
			continue
		}
		out = append(out, r)
	}
	return string(out)
}
