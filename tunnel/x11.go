package tunnel

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultX11Dir is where X servers put their unix sockets.
const DefaultX11Dir = "/tmp/.X11-unix"

// Bounds on the X connection setup packet (the first packet a client sends).
const (
	maxXAuthName = 64
	maxXAuthData = 256
)

// Display is a parsed X display name.
type Display struct {
	Number int
	Screen int
	// Socket is the unix socket path for local displays, "" for TCP.
	Socket string
	// Host is the TCP host for TCP displays.
	Host string
}

// ParseDisplay parses ":N[.S]", "unix:N", "/path/to/socket:N" and
// "host:N" display names.
func ParseDisplay(s string) (Display, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Display{}, fmt.Errorf("display %q: no ':'", s)
	}
	host, rest := s[:i], s[i+1:]
	if strings.HasSuffix(host, ":") { // DECnet "host::N" is not supported
		return Display{}, fmt.Errorf("display %q: DECnet displays are not supported", s)
	}
	numStr, scrStr, hasScreen := strings.Cut(rest, ".")
	d := Display{}
	var err error
	if d.Number, err = strconv.Atoi(numStr); err != nil || d.Number < 0 || d.Number > 65535-6000 {
		return Display{}, fmt.Errorf("display %q: bad display number", s)
	}
	if hasScreen {
		if d.Screen, err = strconv.Atoi(scrStr); err != nil || d.Screen < 0 {
			return Display{}, fmt.Errorf("display %q: bad screen number", s)
		}
	}
	switch {
	case host == "" || host == "unix":
		d.Socket = filepath.Join(DefaultX11Dir, "X"+numStr)
	case strings.HasPrefix(host, "/"):
		d.Socket = host
	default:
		d.Host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	return d, nil
}

func (d Display) isLocal() bool { return d.Socket != "" }

func (d Display) ip() net.IP {
	if d.Host == "localhost" {
		return net.IPv4(127, 0, 0, 1)
	}
	return net.ParseIP(d.Host)
}

func (d Display) loopback() bool {
	ip := d.ip()
	return ip != nil && ip.IsLoopback()
}

// Dial connects to the display: its unix socket for local displays (the
// abstract socket as a fallback for the default directory), TCP with
// TCP_NODELAY otherwise.
func (d Display) Dial(ctx context.Context) (net.Conn, error) {
	var dl net.Dialer
	if d.isLocal() {
		c, err := dl.DialContext(ctx, "unix", d.Socket)
		if err == nil {
			return c, nil
		}
		if filepath.Dir(d.Socket) == DefaultX11Dir {
			if c, err2 := dl.DialContext(ctx, "unix", "@"+d.Socket); err2 == nil {
				return c, nil
			}
		}
		return nil, fmt.Errorf("connecting to X display %d at %s: %w", d.Number, d.Socket, err)
	}
	addr := net.JoinHostPort(d.Host, strconv.Itoa(6000+d.Number))
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to X display %d at %s: %w", d.Number, addr, err)
	}
	c.(*net.TCPConn).SetNoDelay(true)
	return c, nil
}

// xSetup is an X11 connection setup request, the first packet an X client
// sends: byte order, protocol version and authorization.
type xSetup struct {
	order        byte // 'B' or 'l'
	major, minor uint16
	authName     string
	authData     []byte
}

func pad4(n int) int { return (n + 3) &^ 3 }

// readXSetup reads and bounds-checks a connection setup request.
func readXSetup(r io.Reader) (*xSetup, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading X setup header: %w", err)
	}
	var bo binary.ByteOrder
	switch hdr[0] {
	case 'B':
		bo = binary.BigEndian
	case 'l':
		bo = binary.LittleEndian
	default:
		return nil, fmt.Errorf("X setup: bad byte order 0x%02x", hdr[0])
	}
	s := &xSetup{order: hdr[0], major: bo.Uint16(hdr[2:]), minor: bo.Uint16(hdr[4:])}
	n, d := int(bo.Uint16(hdr[6:])), int(bo.Uint16(hdr[8:]))
	if n > maxXAuthName || d > maxXAuthData {
		return nil, fmt.Errorf("X setup: authorization of %d+%d bytes too long", n, d)
	}
	body := make([]byte, pad4(n)+pad4(d))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("reading X setup authorization: %w", err)
	}
	s.authName = string(body[:n])
	s.authData = body[pad4(n) : pad4(n)+d]
	return s, nil
}

func (s *xSetup) marshal() []byte {
	var bo binary.ByteOrder = binary.LittleEndian
	if s.order == 'B' {
		bo = binary.BigEndian
	}
	n, d := len(s.authName), len(s.authData)
	b := make([]byte, 12+pad4(n)+pad4(d))
	b[0] = s.order
	bo.PutUint16(b[2:], s.major)
	bo.PutUint16(b[4:], s.minor)
	bo.PutUint16(b[6:], uint16(n))
	bo.PutUint16(b[8:], uint16(d))
	copy(b[12:], s.authName)
	copy(b[12+pad4(n):], s.authData)
	return b
}

var errBadXCookie = errors.New("X11 connection with wrong authorization")

// checkAndReplace verifies the fake cookie and substitutes the real
// authorization (name may be "" when the display needs none).
func (s *xSetup) checkAndReplace(fake []byte, realName string, realData []byte) error {
	if s.authName != mitMagicCookie || subtle.ConstantTimeCompare(s.authData, fake) != 1 {
		return fmt.Errorf("%w (protocol %q, %d bytes)", errBadXCookie, s.authName, len(s.authData))
	}
	s.authName, s.authData = realName, realData
	return nil
}

// halfCloser is a stream whose write side can be closed on its own
// (net.TCPConn, net.UnixConn, ssh.Channel).
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// relay copies both ways until both directions end, then closes both.
func relay(a, b halfCloser) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src halfCloser) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		io.CopyBuffer(dst, src, buf)
		dst.CloseWrite()
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// guestDisplay is the X display an endpoint offers to the app: unix
// sockets whose connections are forwarded back to the client.
type guestDisplay struct {
	number    int
	display   string // DISPLAY value, ":N"
	listeners []*net.UnixListener
	xauthDir  string
	xauthPath string
	protected bool // the client said the app's authorization is untrusted
}

// firstGuestDisplay is the first display number tried, like OpenSSH's
// X11DisplayOffset.
const firstGuestDisplay = 10

// listenGuestDisplay binds the first free display number from 10 up and
// writes an Xauthority file holding cookie for it. The display listens on
// the abstract socket "@/tmp/.X11-unix/XN", which Xlib tries first for
// DISPLAY=:N (and which is private to the container's network namespace),
// and on the socket file XN in dir. Numbers whose lock file or socket in
// /tmp/.X11-unix exists are skipped.
func listenGuestDisplay(dir string, cookie []byte) (*guestDisplay, error) {
	if dir == "" {
		dir = DefaultX11Dir
	}
	mode := os.FileMode(0o700)
	if filepath.Clean(dir) == DefaultX11Dir {
		mode = 0o1777
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return nil, fmt.Errorf("creating X11 socket dir: %w", err)
	}
	g := &guestDisplay{}
	for n := firstGuestDisplay; n < firstGuestDisplay+1000 && g.listeners == nil; n++ {
		std := filepath.Join(DefaultX11Dir, fmt.Sprintf("X%d", n))
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		if _, err := os.Lstat(std); err == nil {
			continue
		}
		abs, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + std, Net: "unix"})
		if err != nil {
			continue // in use
		}
		path := filepath.Join(dir, fmt.Sprintf("X%d", n))
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			abs.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, fmt.Errorf("listening on X11 display socket %s: %w", path, err)
		}
		g.listeners = []*net.UnixListener{abs, ln}
		g.number = n
		g.display = fmt.Sprintf(":%d", n)
	}
	if g.listeners == nil {
		return nil, fmt.Errorf("no free X11 display number in %s", dir)
	}
	xdir, err := os.MkdirTemp("", "ebrainpool-xauth-")
	if err != nil {
		g.close()
		return nil, fmt.Errorf("creating xauthority dir: %w", err)
	}
	g.xauthDir = xdir
	g.xauthPath = filepath.Join(xdir, "Xauthority")
	err = WriteXauthority(g.xauthPath, []XauthEntry{{
		Family: FamilyWild, Number: strconv.Itoa(g.number), Name: mitMagicCookie, Data: cookie,
	}})
	if err != nil {
		g.close()
		return nil, fmt.Errorf("writing xauthority for display %d: %w", g.number, err)
	}
	return g, nil
}

// close stops listening, removing the socket, and deletes the Xauthority.
func (g *guestDisplay) close() {
	for _, l := range g.listeners {
		l.Close()
	}
	if g.xauthDir != "" {
		os.RemoveAll(g.xauthDir)
	}
}
