package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// The X SECURITY extension (X.Org's Xext/security.c; "Security Extension
// Specification", version 7.1): an X client holding the real cookie asks
// the server for a new authorization whose clients are untrusted. Such a
// client sees only its own windows' contents and resources: no GetImage of
// the root or of other clients' windows, no properties, input or events of
// other clients' windows, and only the extensions the server deems safe
// (XTEST, XInput, RECORD, RENDER, GLX, MIT-SHM are absent). This is what
// `xauth generate :0 . untrusted` and `ssh -X` (ForwardX11Trusted=no) do.

// securityExtension is the extension's name for QueryExtension.
const securityExtension = "SECURITY"

// The extension's minor opcodes and GenerateAuthorization's values.
const (
	xSecurityQueryVersion          = 0
	xSecurityGenerateAuthorization = 1
	xSecurityRevokeAuthorization   = 2

	xSecurityTimeoutBit    = 1 << 0
	xSecurityTrustLevelBit = 1 << 1
	xSecurityUntrusted     = 1
)

// Core requests used here.
const (
	xQueryExtension = 98
	xGetInputFocus  = 43
)

// untrustedTimeout is how long the server keeps an untrusted authorization
// once no client uses it. The session's client holds one connection with
// it open for the whole session (untrustedAuth.holder), so the timer only
// runs after the session (or a crashed client process) is gone; a revoke
// at the end removes it at once.
const untrustedTimeout = 60 * time.Second

// maxSetupReply bounds the server's connection setup answer we read and
// discard (screens, visuals, formats: a few KiB on real servers).
const maxSetupReply = 4 << 20

// protectedDisplayRequest is the session request (no payload, no reply
// wanted) our client sends after x11-req when the app gets an untrusted
// authorization: the endpoint then runs the app with protectedAppEnv. It
// only tunes the app; what the app may do on the display is the
// requester's X server's and filter's to decide, whatever the endpoint
// believes.
const protectedDisplayRequest = "protected-display@ebrainpool"

// protectedAppEnv is what an app on a protected display runs with (unless
// the approved environment sets it). GTK 3 without RENDER, which untrusted
// clients do not get, otherwise draws each frame into a server pixmap it
// reads back (GetImage), paints in the app and sends again (PutImage):
// about 8 MB each way through the tunnel before gtk3-widget-factory's
// first paint. Drawing into an image of its own (GDK_RENDERING=image), it
// sends the frame once and reads nothing back: 4.3 MB up, 14 KB down, and
// its first paint 0.86x the trusted mode's instead of 1.50x (medians of 7
// on loopback, docs/benchmarks.md). Other toolkits ignore it.
var protectedAppEnv = []string{"GDK_RENDERING=image"}

// ErrNoSecurityExtension is the error for a display whose X server has no
// SECURITY extension: apps from peers cannot be confined there.
var ErrNoSecurityExtension = errors.New("the X server has no SECURITY extension")

// untrustedAuth is an untrusted authorization the requester's X server
// generated for one session: what the client substitutes into each X11
// channel's connection setup instead of the real cookie.
type untrustedAuth struct {
	name string
	data []byte
	id   uint32
	// holder is a connection authorized with it, kept open for the
	// session so the server's timeout does not run while it lasts.
	holder net.Conn
	t      *x11Target
}

// xconn is a minimal X protocol connection: requests and their replies in
// the byte order of the client ('l'), every read under a deadline.
type xconn struct {
	c   net.Conn
	seq uint16
}

// dialX connects to the target's display with the given authorization and
// reads the server's setup answer (a refusal is the *DisplayError of
// t.refused).
func dialX(ctx context.Context, t *x11Target, name string, data []byte) (*xconn, error) {
	// An X server that resets after its last client left (Xvfb, Xorg
	// without -noreset) drops connections made during the reset.
	for i := 0; ; i++ {
		x, err := dialXOnce(ctx, t, name, data)
		if err == nil || i == 3 || ctx.Err() != nil || !resetting(err) {
			return x, err
		}
		time.Sleep(time.Duration(50<<i) * time.Millisecond)
	}
}

// resetting reports whether err is a connection the X server dropped
// before answering, as it does while it resets.
func resetting(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func dialXOnce(ctx context.Context, t *x11Target, name string, data []byte) (*xconn, error) {
	ctx, cancel := context.WithTimeout(ctx, xSetupTimeout)
	defer cancel()
	c, err := t.display.Dial(ctx)
	if err != nil {
		return nil, t.unreachable(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	s := &xSetup{order: 'l', major: 11, authName: name, authData: data}
	if _, err := c.Write(s.marshal()); err != nil {
		c.Close()
		return nil, displayErrorf(err, "the X server of display %s (at %s) closed the connection: %v", t.name, t.where(), err)
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		c.Close()
		return nil, displayErrorf(err, "the X server of display %s (at %s) did not answer the connection setup: %v", t.name, t.where(), err)
	}
	n := int(binary.LittleEndian.Uint16(hdr[6:])) * 4
	if n > maxSetupReply {
		c.Close()
		return nil, displayErrorf(nil, "the X server of display %s sent a setup answer of %d bytes", t.name, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		c.Close()
		return nil, displayErrorf(err, "the X server of display %s (at %s) broke off its setup answer: %v", t.name, t.where(), err)
	}
	if hdr[0] != 1 {
		c.Close()
		reason := string(body)
		if hdr[0] == 0 {
			reason = string(body[:min(int(hdr[1]), len(body))])
		}
		return nil, t.refused(trimReason(reason))
	}
	c.SetDeadline(time.Time{})
	return &xconn{c: c}, nil
}

func trimReason(s string) string {
	for len(s) > 0 && (s[len(s)-1] == 0 || s[len(s)-1] == ' ' || s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	return s
}

// request sends one request (its length field filled in) and returns its
// sequence number.
func (x *xconn) request(b []byte) (uint16, error) {
	binary.LittleEndian.PutUint16(b[2:], uint16(len(b)/4))
	x.seq++
	_, err := x.c.Write(b)
	return x.seq, err
}

// xProtocolError is an X error answering one of our requests.
type xProtocolError struct{ code, major, minor byte }

func (e *xProtocolError) Error() string {
	return fmt.Sprintf("X error %d (request %d.%d)", e.code, e.major, e.minor)
}

// reply reads until the reply (or error) to request seq, skipping events,
// within timeout; it returns the reply's 32 bytes and what follows.
func (x *xconn) reply(seq uint16, timeout time.Duration) ([]byte, error) {
	x.c.SetReadDeadline(time.Now().Add(timeout))
	defer x.c.SetReadDeadline(time.Time{})
	for {
		var b [32]byte
		if _, err := io.ReadFull(x.c, b[:]); err != nil {
			return nil, err
		}
		got := binary.LittleEndian.Uint16(b[2:])
		switch b[0] {
		case 0: // error
			if got == seq {
				return nil, &xProtocolError{code: b[1], major: b[10], minor: b[8]}
			}
		case 1: // reply
			extra := int(binary.LittleEndian.Uint32(b[4:])) * 4
			if extra > maxSetupReply {
				return nil, fmt.Errorf("X reply of %d bytes", extra)
			}
			full := make([]byte, 32+extra)
			copy(full, b[:])
			if _, err := io.ReadFull(x.c, full[32:]); err != nil {
				return nil, err
			}
			if got == seq {
				return full, nil
			}
		}
		// An event, or an answer to an earlier request: skip it.
	}
}

// roundTrip sends a request that has a reply and returns it.
func (x *xconn) roundTrip(b []byte) ([]byte, error) {
	seq, err := x.request(b)
	if err != nil {
		return nil, err
	}
	return x.reply(seq, xSetupTimeout)
}

// queryExtension returns the major opcode of extension name (ok false if
// the server does not have it).
func (x *xconn) queryExtension(name string) (byte, bool, error) {
	b := make([]byte, 8+pad4(len(name)))
	b[0] = xQueryExtension
	binary.LittleEndian.PutUint16(b[4:], uint16(len(name)))
	copy(b[8:], name)
	r, err := x.roundTrip(b)
	if err != nil {
		return 0, false, fmt.Errorf("QueryExtension %s: %w", name, err)
	}
	return r[9], r[8] != 0, nil
}

// sync is a round trip (GetInputFocus): every request sent before it has
// been handled.
func (x *xconn) sync() error {
	_, err := x.roundTrip([]byte{xGetInputFocus, 0, 0, 0})
	return err
}

func (x *xconn) Close() error { return x.c.Close() }

// CheckProtectedDisplay is CheckDisplay for the default, protected mode:
// the X server must also have the SECURITY extension, else the error is a
// *DisplayError wrapping ErrNoSecurityExtension. Call it before asking a
// peer.
func CheckProtectedDisplay(ctx context.Context, display, xauthority string) error {
	t, err := localX11Target(display, xauthority)
	if err != nil {
		return err
	}
	x, err := dialX(ctx, t, t.realName, t.realData)
	if err != nil {
		return err
	}
	defer x.Close()
	_, ok, err := x.queryExtension(securityExtension)
	if err != nil {
		return displayErrorf(err, "asking the X server of display %s for its SECURITY extension: %v", t.name, err)
	}
	if !ok {
		return noSecurityError(t)
	}
	return nil
}

func noSecurityError(t *x11Target) *DisplayError {
	return &DisplayError{err: ErrNoSecurityExtension, msg: fmt.Sprintf(
		"the X server of display %s has no SECURITY extension, so an app from a peer cannot be kept from reading and "+
			"controlling the rest of your display; run it with trusted display access only if you trust it with everything on your screen", t.name)}
}

// generateUntrusted asks the target's X server for an untrusted
// MIT-MAGIC-COOKIE-1 authorization (SecurityGenerateAuthorization, the
// server making the cookie) and opens the connection that holds it for the
// session. A server without the extension is ErrNoSecurityExtension in a
// *DisplayError.
func (t *x11Target) generateUntrusted(ctx context.Context) (*untrustedAuth, error) {
	x, err := dialX(ctx, t, t.realName, t.realData)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	stop := context.AfterFunc(ctx, func() { x.c.SetDeadline(time.Now()) })
	defer stop()
	major, ok, err := x.queryExtension(securityExtension)
	if err != nil {
		return nil, displayErrorf(err, "asking the X server of display %s for its SECURITY extension: %v", t.name, err)
	}
	if !ok {
		return nil, noSecurityError(t)
	}
	// QueryVersion 1.0, as xauth does before generating.
	v := make([]byte, 8)
	v[0], v[1] = major, xSecurityQueryVersion
	binary.LittleEndian.PutUint16(v[4:], 1)
	if _, err := x.roundTrip(v); err != nil {
		return nil, displayErrorf(err, "the SECURITY extension of display %s: QueryVersion: %v", t.name, err)
	}
	name := mitMagicCookie
	g := make([]byte, 12+pad4(len(name))+8)
	g[0], g[1] = major, xSecurityGenerateAuthorization
	binary.LittleEndian.PutUint16(g[4:], uint16(len(name)))
	binary.LittleEndian.PutUint16(g[6:], 0) // no data: the server makes the cookie
	binary.LittleEndian.PutUint32(g[8:], xSecurityTimeoutBit|xSecurityTrustLevelBit)
	copy(g[12:], name)
	vals := g[12+pad4(len(name)):]
	binary.LittleEndian.PutUint32(vals, uint32(untrustedTimeout/time.Second))
	binary.LittleEndian.PutUint32(vals[4:], xSecurityUntrusted)
	r, err := x.roundTrip(g)
	if err != nil {
		return nil, displayErrorf(err, "the X server of display %s refused an untrusted authorization (SecurityGenerateAuthorization): %v", t.name, err)
	}
	id := binary.LittleEndian.Uint32(r[8:])
	dlen := int(binary.LittleEndian.Uint16(r[12:]))
	if 32+dlen > len(r) || dlen == 0 || dlen > maxXAuthData {
		return nil, displayErrorf(nil, "the X server of display %s answered SecurityGenerateAuthorization with %d bytes of cookie", t.name, dlen)
	}
	a := &untrustedAuth{name: name, data: append([]byte(nil), r[32:32+dlen]...), id: id, t: t}
	// While x is still open: an X server that resets when its last client
	// leaves (Xvfb without -noreset) would forget the authorization.
	h, err := dialX(ctx, t, a.name, a.data)
	if err != nil {
		a.revoke(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("connecting with the untrusted authorization: %w", err)
	}
	a.holder = h.c
	// It reads what the server sends every client (MappingNotify when a
	// keymap changes), so its output never backs up on the server.
	go io.Copy(io.Discard, h.c)
	return a, nil
}

// revoke removes the authorization from the server (its clients keep their
// connections: they end with the session) and closes the holder.
func (a *untrustedAuth) revoke(ctx context.Context) error {
	if a.holder != nil {
		defer a.holder.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, xSetupTimeout)
	defer cancel()
	x, err := dialX(ctx, a.t, a.t.realName, a.t.realData)
	if err != nil {
		return err
	}
	defer x.Close()
	major, ok, err := x.queryExtension(securityExtension)
	if err != nil || !ok {
		return fmt.Errorf("revoking the untrusted authorization: %v", err)
	}
	b := make([]byte, 8)
	b[0], b[1] = major, xSecurityRevokeAuthorization
	binary.LittleEndian.PutUint32(b[4:], a.id)
	if _, err := x.request(b); err != nil {
		return fmt.Errorf("revoking the untrusted authorization: %w", err)
	}
	if err := x.sync(); err != nil {
		return fmt.Errorf("revoking the untrusted authorization: %w", err)
	}
	return nil
}
