// Package busrelay relays this process's D-Bus connections to the session
// bus and renumbers the messages each connection sends, so that their
// serials reach the bus strictly increasing.
//
// Why: godbus takes a message's serial before it takes the connection's
// send lock, so two goroutines sending at once may write serials out of
// order. A bus does not mind, but xdg-dbus-proxy before 0.1.6 (Flatpak's
// bus filter; Debian 12 ships 0.1.4) closes a connection whose serials go
// backwards ("Invalid client serial"), taking the tray icon or the D-Bus
// API of the Flatpak'd app with it. The relay sits between godbus and the
// proxy: it numbers outgoing messages in the order they arrive on its
// socket, which is the order they were written, and maps the reply serials
// of incoming replies back.
package busrelay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// maxMessage bounds one message (the D-Bus specification's maximum).
const maxMessage = 128 << 20

// maxAuthLine bounds one line of the authentication exchange.
const maxAuthLine = 16 << 10

// Relay accepts D-Bus connections on a private socket and relays each to
// the upstream bus.
type Relay struct {
	ln       net.Listener
	dir      string
	upstream string // "unix" network address (a path, or @name)
	log      *slog.Logger
	wg       sync.WaitGroup
	stop     func() bool // stops closing on ctx's end
	mu       sync.Mutex
	clients  map[net.Conn]bool
	closed   bool
}

// Start relays to the bus at upstream (a D-Bus address such as
// unix:path=/run/flatpak/bus) from a socket in a new private directory
// under dir ("": the system temporary directory; a socket path must stay
// under 108 bytes). It stops when ctx ends or Close is called.
func Start(ctx context.Context, upstream, dir string, log *slog.Logger) (*Relay, error) {
	up, err := unixAddress(upstream)
	if err != nil {
		return nil, err
	}
	d, err := os.MkdirTemp(dir, "ebrainpool-bus-")
	if err != nil {
		return nil, fmt.Errorf("bus relay: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(d, "bus"))
	if err != nil {
		os.RemoveAll(d)
		return nil, fmt.Errorf("bus relay: %w", err)
	}
	r := &Relay{ln: ln, dir: d, upstream: up, log: log, clients: map[net.Conn]bool{}}
	r.stop = context.AfterFunc(ctx, func() { r.Close() })
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Address is the D-Bus address clients connect to.
func (r *Relay) Address() string {
	return "unix:path=" + r.ln.Addr().String()
}

// Close stops accepting, ends every relayed connection (closing the
// client's side ends both) and removes the socket.
func (r *Relay) Close() error {
	r.stop()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for c := range r.clients {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	os.RemoveAll(r.dir)
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.clients[c] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.serve(c); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				r.log.Debug("bus relay: connection ended", "err", err)
			}
			r.mu.Lock()
			delete(r.clients, c)
			r.mu.Unlock()
		}()
	}
}

// serve relays one client connection.
func (r *Relay) serve(client net.Conn) error {
	defer client.Close()
	up, err := net.DialTimeout("unix", r.upstream, 10*time.Second)
	if err != nil {
		return fmt.Errorf("connecting to the bus: %w", err)
	}
	defer up.Close()

	cr, ur := bufio.NewReader(client), bufio.NewReader(up)
	client.SetDeadline(time.Now().Add(30 * time.Second))
	up.SetDeadline(time.Now().Add(30 * time.Second))
	if err := authenticate(cr, client, ur, up); err != nil {
		return err
	}
	client.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})

	s := &serials{pending: map[uint32]uint32{}}
	errs := make(chan error, 2)
	go func() { errs <- s.toBus(cr, up) }()
	go func() { errs <- s.toClient(ur, client) }()
	err = <-errs
	client.Close()
	up.Close()
	<-errs
	return err
}

// authenticate passes the SASL exchange through: the client's NUL byte,
// then each command and the bus's one-line answer, until BEGIN. Unix fd
// passing is refused here (this relay copies bytes only), which clients
// handle by not passing fds.
func authenticate(cr *bufio.Reader, client net.Conn, ur *bufio.Reader, up net.Conn) error {
	nul, err := cr.ReadByte()
	if err != nil {
		return fmt.Errorf("authentication: %w", err)
	}
	if _, err := up.Write([]byte{nul}); err != nil {
		return fmt.Errorf("authentication: %w", err)
	}
	for {
		line, err := readLine(cr)
		if err != nil {
			return fmt.Errorf("authentication: %w", err)
		}
		switch cmd := strings.TrimRight(line, "\r\n"); {
		case cmd == "NEGOTIATE_UNIX_FD":
			if _, err := client.Write([]byte("ERROR \"no fd passing through the relay\"\r\n")); err != nil {
				return err
			}
			continue
		case cmd == "BEGIN":
			_, err := up.Write([]byte(line))
			return err
		}
		if _, err := up.Write([]byte(line)); err != nil {
			return fmt.Errorf("authentication: %w", err)
		}
		reply, err := readLine(ur)
		if err != nil {
			return fmt.Errorf("authentication: %w", err)
		}
		if _, err := client.Write([]byte(reply)); err != nil {
			return fmt.Errorf("authentication: %w", err)
		}
	}
}

func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		frag, err := r.ReadSlice('\n')
		b.Write(frag)
		if b.Len() > maxAuthLine {
			return "", errors.New("authentication line too long")
		}
		if err == nil {
			return b.String(), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// serials renumbers one connection's outgoing messages and maps replies
// back.
type serials struct {
	mu      sync.Mutex
	next    uint32
	pending map[uint32]uint32 // serial on the bus -> the client's serial
}

const (
	typeMethodCall   = 1
	typeMethodReturn = 2
	typeError        = 3
	flagNoReply      = 0x1
	fieldReplySerial = 5
)

// toBus copies messages from the client, each with the next serial.
func (s *serials) toBus(r *bufio.Reader, w io.Writer) error {
	for {
		msg, order, err := readMessage(r)
		if err != nil {
			return err
		}
		orig := order.Uint32(msg[8:12])
		s.mu.Lock()
		s.next++
		if s.next == 0 {
			s.next = 1
		}
		wire := s.next
		if msg[1] == typeMethodCall && msg[2]&flagNoReply == 0 {
			s.pending[wire] = orig
		}
		s.mu.Unlock()
		order.PutUint32(msg[8:12], wire)
		if _, err := w.Write(msg); err != nil {
			return err
		}
	}
}

// toClient copies messages from the bus, replies with the reply serial
// the client used.
func (s *serials) toClient(r *bufio.Reader, w io.Writer) error {
	for {
		msg, order, err := readMessage(r)
		if err != nil {
			return err
		}
		if msg[1] == typeMethodReturn || msg[1] == typeError {
			if off := replySerialOffset(msg, order); off > 0 {
				wire := order.Uint32(msg[off : off+4])
				s.mu.Lock()
				orig, ok := s.pending[wire]
				delete(s.pending, wire)
				s.mu.Unlock()
				if ok {
					order.PutUint32(msg[off:off+4], orig)
				}
			}
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
	}
}

// readMessage reads one whole message and its byte order.
func readMessage(r *bufio.Reader) ([]byte, binary.ByteOrder, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, err
	}
	var order binary.ByteOrder
	switch hdr[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return nil, nil, fmt.Errorf("not a D-Bus message (byte order %q)", hdr[0])
	}
	body, fields := uint64(order.Uint32(hdr[4:8])), uint64(order.Uint32(hdr[12:16]))
	total := 16 + (fields+7)&^7 + body
	if total > maxMessage {
		return nil, nil, fmt.Errorf("D-Bus message of %d bytes exceeds %d", total, maxMessage)
	}
	msg := make([]byte, total)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[16:]); err != nil {
		return nil, nil, err
	}
	return msg, order, nil
}

// replySerialOffset finds the REPLY_SERIAL header field's value in msg, or
// returns 0. Header fields are (code, variant) structs aligned to 8; their
// values are object paths, strings, signatures or uint32s.
func replySerialOffset(msg []byte, order binary.ByteOrder) int {
	end := 16 + int(order.Uint32(msg[12:16]))
	if end > len(msg) {
		return 0
	}
	align := func(p, n int) int { return (p + n - 1) &^ (n - 1) }
	for p := 16; ; {
		p = align(p, 8)
		if p+3 > end {
			return 0
		}
		code, sigLen := msg[p], int(msg[p+1])
		if p+2+sigLen+1 > end {
			return 0
		}
		sig := string(msg[p+2 : p+2+sigLen])
		p += 2 + sigLen + 1
		switch sig {
		case "u":
			p = align(p, 4)
			if p+4 > end {
				return 0
			}
			if code == fieldReplySerial {
				return p
			}
			p += 4
		case "s", "o":
			p = align(p, 4)
			if p+4 > end {
				return 0
			}
			p += 4 + int(order.Uint32(msg[p:p+4])) + 1
		case "g":
			if p >= end {
				return 0
			}
			p += 1 + int(msg[p]) + 1
		default:
			return 0
		}
	}
}

// unixAddress turns the first unix: entry of a D-Bus address into a
// "unix" network address.
func unixAddress(addr string) (string, error) {
	for _, a := range strings.Split(addr, ";") {
		kind, rest, ok := strings.Cut(a, ":")
		if !ok || kind != "unix" {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v, err := url.PathUnescape(v)
			if err != nil {
				return "", fmt.Errorf("bus address %q: %w", addr, err)
			}
			switch k {
			case "path":
				return v, nil
			case "abstract":
				return "@" + v, nil
			}
		}
	}
	return "", fmt.Errorf("bus address %q: no unix path or abstract socket", addr)
}
