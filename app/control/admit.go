package control

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Admission control of the control port. Connections are counted in two
// budgets:
//
//   - unauthenticated ("startups"): from the accept until the SSH handshake
//     completes. They cost little (a socket, a goroutine, a few KiB) but
//     cost a stranger nothing either, so each address has a share of them
//     (MaxStartupsPerIP: a new connection from an address holding its
//     share displaces that address's oldest), and those from addresses no
//     connection authenticated from recently meet OpenSSH's MaxStartups
//     random early drop (start:rate:full). Addresses a connection
//     authenticated from recently have a pool of their own
//     (ReservedStartups) that strangers never take; when it is full, a
//     newcomer displaces the oldest connection of the address holding the
//     most, so one address (or a stranger that authenticated from a few)
//     cannot starve another. Each stage of the handshake has its own
//     deadline (banner, key exchange, authentication).
//   - authenticated: from the completed handshake until the connection
//     closes, limited overall (MaxConns) and per address (MaxConnsPerIP).
//
// Addresses are keyed as addrKey says: IPv4 addresses whole, IPv6 ones by
// their /64 (one host can use a whole /64), link-local IPv6 whole.

// Startups is OpenSSH's MaxStartups for unauthenticated connections: below
// Start every connection is accepted; from Start a new one is refused with
// probability Rate percent, rising linearly to 100% at Full.
type Startups struct {
	Start, Rate, Full int
}

func (m Startups) String() string { return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full) }

// dropChance is the probability of refusing a new connection while n are
// unauthenticated.
func (m Startups) dropChance(n int) float64 {
	switch {
	case n < m.Start:
		return 0
	case n >= m.Full:
		return 1
	}
	return (float64(m.Rate) + float64(100-m.Rate)*float64(n-m.Start)/float64(m.Full-m.Start)) / 100
}

// Defaults of the admission limits (see Server).
// An unauthenticated connection costs a descriptor, about 20 KiB of heap
// and a goroutine (three, with the key exchange's state, once it sent its
// version line), so the pools are large; the per-address share keeps them
// fair.
var (
	DefaultMaxStartups      = Startups{Start: 256, Rate: 30, Full: 1024}
	DefaultMaxStartupsPerIP = 16
	DefaultReservedStartups = 256
	DefaultMaxConns         = 256
	DefaultMaxConnsPerIP    = 32
)

// fitDescriptors scales the limits down so that they use at most half of
// the process's descriptor limit (Go raises the soft limit to the hard one
// at start; a hard limit of 1024 would not fit the defaults).
func (l *limits) fitDescriptors(log *slog.Logger) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return
	}
	budget := int(min(rl.Cur/2, 1<<30))
	total := l.startups.Full + l.reserved + l.conns
	if total <= budget {
		return
	}
	scale := func(n int) int { return max(1, n*budget/total) }
	l.startups = Startups{Start: scale(l.startups.Start), Rate: l.startups.Rate, Full: scale(l.startups.Full)}
	l.reserved, l.conns = scale(l.reserved), scale(l.conns)
	log.Info("control port limits scaled to the descriptor limit", "nofile", rl.Cur, "startups", l.startups, "reserved", l.reserved, "authenticated", l.conns)
}

// Known addresses: how long an address stays known after a connection
// authenticated from it, and how many are kept (the oldest is forgotten).
const (
	knownFor  = 7 * 24 * time.Hour
	knownMax  = 1024
	floodNote = 10 * time.Second // at most one flood log line per this
)

// addrKey is the budget key of a remote address.
func addrKey(a net.Addr) string {
	var ip net.IP
	switch t := a.(type) {
	case *net.TCPAddr:
		ip = t.IP
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = net.ParseIP(host)
		if ip == nil {
			return host
		}
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	if ip.IsLinkLocalUnicast() {
		return ip.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

type class int

const (
	stranger class = iota // no connection authenticated from its address recently
	known                 // the reserved pool
)

func (c class) String() string { return [...]string{"stranger", "known"}[c] }

// slot is one accepted connection's place in the budgets.
type slot struct {
	c     net.Conn
	key   string
	class class
	seq   uint64
	state int // slotPre, slotAuth, slotGone
}

const (
	slotPre = iota
	slotAuth
	slotGone
)

// pool is one class's unauthenticated connections, by address, oldest
// first.
type pool struct {
	n      int
	byAddr map[string][]*slot
}

func (p *pool) add(s *slot) {
	p.byAddr[s.key] = append(p.byAddr[s.key], s)
	p.n++
}

func (p *pool) remove(s *slot) {
	list := p.byAddr[s.key]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			p.n--
			break
		}
	}
	if len(list) == 0 {
		delete(p.byAddr, s.key)
	} else {
		p.byAddr[s.key] = list
	}
}

// heaviest is the address holding the most connections (ties: the one
// whose oldest is oldest).
func (p *pool) heaviest() string {
	best, n := "", 0
	var seq uint64
	for k, list := range p.byAddr {
		if len(list) > n || len(list) == n && list[0].seq < seq {
			best, n, seq = k, len(list), list[0].seq
		}
	}
	return best
}

// limits are the Server's admission settings after defaults.
type limits struct {
	startups        Startups
	startupsPerIP   int
	reserved        int
	conns, connsPer int
}

// gateStats counts what the gate did (for logs and tests).
type gateStats struct {
	Strangers, Known int // unauthenticated now, by pool
	Authenticated    int
	KnownAddrs       int
	Admitted         uint64 // accepted into a pool
	Dropped          uint64 // refused by the random early drop
	Displaced        uint64 // closed to make room for a newer connection
	RefusedAuth      uint64 // over the authenticated limits
	TimedOut         [stageCount]uint64
}

// gate is the control port's admission control.
type gate struct {
	lim  limits
	rand func() float64
	now  func() time.Time
	log  *slog.Logger

	mu       sync.Mutex
	seq      uint64
	pools    [2]pool
	auth     int
	authBy   map[string]int
	knownAt  map[string]time.Time
	st       gateStats
	noted    time.Time // last flood log line
	notedAt  gateStats // counters then
	timedOut [stageCount]atomic.Uint64
}

func newGate(lim limits, log *slog.Logger) *gate {
	g := &gate{lim: lim, rand: rand.Float64, now: time.Now, log: log, authBy: map[string]int{}, knownAt: map[string]time.Time{}}
	for i := range g.pools {
		g.pools[i].byAddr = map[string][]*slot{}
	}
	return g
}

// isKnown reports whether a connection authenticated from key within
// knownFor (g.mu held).
func (g *gate) isKnown(key string, now time.Time) bool {
	at, ok := g.knownAt[key]
	if ok && now.Sub(at) > knownFor {
		delete(g.knownAt, key)
		return false
	}
	return ok
}

// admit decides on a new connection: a slot, or nil to close it. The
// connections it displaces are closed before it returns.
func (g *gate) admit(c net.Conn) *slot {
	key := addrKey(c.RemoteAddr())
	now := g.now()
	g.mu.Lock()
	cl := stranger
	if g.isKnown(key, now) {
		cl = known
	}
	p := &g.pools[cl]
	var victim *slot
	switch {
	case len(p.byAddr[key]) >= g.lim.startupsPerIP:
		// The address's share is full: its oldest makes room.
		victim = p.byAddr[key][0]
	case cl == stranger && g.rand() < g.lim.startups.dropChance(p.n):
		g.st.Dropped++
		g.noteLocked(now)
		g.mu.Unlock()
		return nil
	case cl == known && p.n >= g.lim.reserved:
		victim = p.byAddr[p.heaviest()][0]
	}
	if victim != nil {
		p.remove(victim)
		victim.state = slotGone
		g.st.Displaced++
	}
	g.seq++
	s := &slot{c: c, key: key, class: cl, seq: g.seq}
	p.add(s)
	g.st.Admitted++
	if victim != nil {
		g.noteLocked(now)
	}
	g.mu.Unlock()
	if victim != nil {
		abort(victim.c)
	}
	return s
}

// abort closes a connection the gate turned away with a reset: no FIN
// exchange, no TIME_WAIT on this side.
func abort(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		t.SetLinger(0)
	}
	c.Close()
}

// mayAuthenticate reports whether s could be counted as authenticated now
// (asked when its key exchange completed: a connection that could not be
// kept is closed before it authenticates, so its client's Dial fails).
func (g *gate) mayAuthenticate(s *slot) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return s.state == slotPre && g.auth < g.lim.conns && g.authBy[s.key] < g.lim.connsPer
}

// authenticated moves s from its pool to the authenticated budget and
// makes its address known; false if s was displaced meanwhile or the
// authenticated limits are reached (the caller closes it).
func (g *gate) authenticated(s *slot) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.state != slotPre {
		return false
	}
	g.pools[s.class].remove(s)
	if g.auth >= g.lim.conns || g.authBy[s.key] >= g.lim.connsPer {
		s.state = slotGone
		g.st.RefusedAuth++
		return false
	}
	s.state = slotAuth
	g.auth++
	g.authBy[s.key]++
	if _, ok := g.knownAt[s.key]; !ok && len(g.knownAt) >= knownMax {
		oldest, at := "", now
		for k, t := range g.knownAt {
			if t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(g.knownAt, oldest)
	}
	g.knownAt[s.key] = now
	return true
}

// refusedAuth counts a connection closed at mayAuthenticate.
func (g *gate) refusedAuth() {
	g.mu.Lock()
	g.st.RefusedAuth++
	g.mu.Unlock()
}

// release frees s's place when its connection ends.
func (g *gate) release(s *slot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch s.state {
	case slotPre:
		g.pools[s.class].remove(s)
	case slotAuth:
		g.auth--
		if g.authBy[s.key]--; g.authBy[s.key] <= 0 {
			delete(g.authBy, s.key)
		}
	}
	s.state = slotGone
}

// stats returns the counts now.
func (g *gate) stats() gateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.st
	st.Strangers, st.Known = g.pools[stranger].n, g.pools[known].n
	st.Authenticated, st.KnownAddrs = g.auth, len(g.knownAt)
	for i := range st.TimedOut {
		st.TimedOut[i] = g.timedOut[i].Load()
	}
	return st
}

// noteLocked logs, at most once per floodNote, how many connections were
// refused or displaced since the last line (g.mu held).
func (g *gate) noteLocked(now time.Time) {
	if now.Sub(g.noted) < floodNote {
		return
	}
	args := []any{"refused", g.st.Dropped - g.notedAt.Dropped, "displaced", g.st.Displaced - g.notedAt.Displaced}
	if !g.noted.IsZero() {
		args = append(args, "in", now.Sub(g.noted).Round(time.Second))
	}
	args = append(args, "strangers", g.pools[stranger].n, "known", g.pools[known].n,
		"limits", fmt.Sprintf("startups %s, %d per address, %d reserved", g.lim.startups, g.lim.startupsPerIP, g.lim.reserved))
	g.log.Warn("control port: unauthenticated connections refused or displaced (a flood, or many peers connecting at once)", args...)
	g.noted, g.notedAt = now, g.st
}

// Handshake stages, each with its own deadline.
type stage int32

const (
	stageBanner stage = iota // until the client's version line
	stageKex                 // until the key exchange completed
	stageAuth                // until authenticated
	stageDone
	stageCount = int(stageDone)
)

func (s stage) String() string {
	return [...]string{"banner", "key exchange", "authentication", "done"}[s]
}

// stagedConn sets the deadline of each handshake stage; it is told when
// the client's version line arrived (readBanner), when the key exchange
// completed (the ssh package's PreAuthConnCallback) and when the
// handshake did. Read serves what readBanner read before the socket.
type stagedConn struct {
	net.Conn
	timeouts [stageCount]time.Duration
	overall  time.Time // no stage goes past it
	stage    atomic.Int32
	pending  []byte // read by readBanner, not yet by the ssh package
}

func newStagedConn(c net.Conn, timeouts [stageCount]time.Duration, overall time.Duration) *stagedConn {
	sc := &stagedConn{Conn: c, timeouts: timeouts, overall: time.Now().Add(overall)}
	sc.enter(stageBanner)
	return sc
}

func (c *stagedConn) current() stage { return stage(c.stage.Load()) }

// enter starts stage st with its deadline (none once done).
func (c *stagedConn) enter(st stage) {
	c.stage.Store(int32(st))
	if st == stageDone {
		c.Conn.SetDeadline(time.Time{})
		return
	}
	d := time.Now().Add(c.timeouts[st])
	if d.After(c.overall) {
		d = c.overall
	}
	c.Conn.SetDeadline(d)
}

// maxBanner bounds what a client may send before its version line
// (RFC 4253 allows lines before it only from servers; the ssh package
// reads at most 255 bytes a line).
const maxBanner = 4 << 10

// errNoBanner: the client sent no version line within maxBanner bytes.
var errNoBanner = errors.New("no SSH version line")

// readBanner reads until the end of the client's version line (a line
// starting with "SSH-") and enters the key exchange stage. The server's
// own version line is sent only after it (the ssh package writes it when
// it starts): a connection that never sends one costs one read, not a
// write, and no ssh state. Both sides send theirs at once (RFC 4253 4.2;
// this package's Dial does), so a client loses no round trip.
func (c *stagedConn) readBanner() error {
	buf := make([]byte, 0, 256)
	line := 0 // start of the current line in buf
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBanner {
				return errNoBanner
			}
			buf = slices.Grow(buf, len(buf))
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		from := len(buf)
		buf = buf[:from+n]
		for i := from; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if bytes.HasPrefix(buf[line:i], []byte("SSH-")) {
				c.pending = buf
				c.enter(stageKex)
				return nil
			}
			line = i + 1
		}
		if err != nil {
			return err
		}
	}
}

func (c *stagedConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
