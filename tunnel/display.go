package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DisplayError is why the windows of apps from peers cannot be shown on
// the local display: no X server, one that cannot be reached, or one that
// refuses our authorization. Its message is written for the user and names
// what is wrong (the variable, the display, the file).
type DisplayError struct {
	msg string
	err error
}

func (e *DisplayError) Error() string { return e.msg }

// Unwrap is the underlying error, if any (e.g. the socket's).
func (e *DisplayError) Unwrap() error { return e.err }

func displayErrorf(err error, format string, a ...any) *DisplayError {
	return &DisplayError{msg: fmt.Sprintf(format, a...), err: err}
}

// CheckDisplay checks that the windows of apps from peers can be shown on
// display (default $DISPLAY) with the authorization in xauthority
// (default $XAUTHORITY, else ~/.Xauthority): it connects to the X server
// as the X11 relay will, with the same cookie, and returns a *DisplayError
// saying what is missing or wrong. Call it before asking a peer, so nobody
// is asked to allow an app whose window cannot appear. On a Wayland
// desktop that starts Xwayland on demand (GNOME), the connection starts
// it.
func CheckDisplay(ctx context.Context, display, xauthority string) error {
	t, err := localX11Target(display, xauthority)
	if err != nil {
		return err
	}
	return t.probe(ctx)
}

// noDisplayError is the error for an empty DISPLAY; wayland is
// $WAYLAND_DISPLAY.
func noDisplayError(wayland string) *DisplayError {
	if wayland != "" {
		return displayErrorf(nil, "this Wayland session (WAYLAND_DISPLAY=%s) has no Xwayland: DISPLAY is not set, and apps from peers are X11 apps, "+
			"which need Xwayland (X11 apps support) to show their windows; install the xwayland package (Debian, Ubuntu: sudo apt install xwayland) "+
			"or enable X11 apps (Xwayland) in your desktop's settings, log in again and start eBrainPool from that session", wayland)
	}
	return displayErrorf(nil, "there is no graphical session to show the window in: neither DISPLAY nor WAYLAND_DISPLAY is set; "+
		"start eBrainPool (the desktop app or `ebrainpool daemon`) from your desktop session, or with DISPLAY set to your X display (e.g. DISPLAY=:0)")
}

// xauthFile names the Xauthority file and where its path came from.
func (t *x11Target) xauthFile() string {
	if t.xauthDefault {
		return fmt.Sprintf("the Xauthority file %s (the default: XAUTHORITY is not set)", t.xauth)
	}
	return fmt.Sprintf("the Xauthority file %s (XAUTHORITY)", t.xauth)
}

// where is the socket or address the display is reached at.
func (t *x11Target) where() string {
	if t.display.isLocal() {
		return t.display.Socket
	}
	return net.JoinHostPort(t.display.Host, strconv.Itoa(6000+t.display.Number))
}

// probe connects to the X server with the target's real authorization and
// reads its answer to the connection setup, again if the server was
// resetting (see dialX).
func (t *x11Target) probe(ctx context.Context) error {
	for i := 0; ; i++ {
		err := t.probeOnce(ctx)
		if err == nil || i == 3 || ctx.Err() != nil || !resetting(err) {
			return err
		}
		time.Sleep(time.Duration(50<<i) * time.Millisecond)
	}
}

func (t *x11Target) probeOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, xSetupTimeout)
	defer cancel()
	c, err := t.display.Dial(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		return t.unreachable(err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	s := &xSetup{order: 'l', major: 11, authName: t.realName, authData: t.realData}
	_, err = c.Write(s.marshal())
	var hdr [8]byte
	if err == nil {
		_, err = io.ReadFull(c, hdr[:1])
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		if ctx.Err() != nil {
			return displayErrorf(ctx.Err(), "the X server of display %s (at %s) accepted the connection but did not answer within %s", t.name, t.where(), xSetupTimeout)
		}
		return displayErrorf(err, "the X server of display %s (at %s) closed the connection without answering (%v)", t.name, t.where(), err)
	}
	// The first byte is the answer: Success (1), or Failed (0) or
	// Authenticate (2) with a reason: Failed has its length in byte 1,
	// Authenticate pads it with NULs. The additional data's length, in
	// 4-byte units, is in bytes 6-7 (little endian, as we asked).
	if hdr[0] == 1 {
		return nil
	}
	io.ReadFull(c, hdr[1:])
	body := make([]byte, min(int(binary.LittleEndian.Uint16(hdr[6:]))*4, 4096))
	n, _ := io.ReadFull(c, body)
	body = body[:n]
	var reason string
	switch hdr[0] {
	case 0:
		reason = string(body[:min(int(hdr[1]), len(body))])
	case 2:
		reason = strings.TrimRight(string(body), "\x00")
	default:
		reason = fmt.Sprintf("unknown answer %d", hdr[0])
	}
	return t.refused(strings.TrimSpace(reason))
}

// unreachable explains a failed connection to the X server.
func (t *x11Target) unreachable(err error) *DisplayError {
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		errors.As(err, &errno)
		return displayErrorf(err, "the X server of display %s is not reachable: nothing listens at %s (%v); "+
			"check that it runs and that eBrainPool was started with the DISPLAY of your desktop session", t.name, t.where(), errno)
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		return displayErrorf(err, "the X server of display %s is not reachable: connecting to %s timed out", t.name, t.where())
	case errors.As(err, &errno):
		return displayErrorf(err, "the X server of display %s is not reachable: connecting to %s: %v", t.name, t.where(), errno)
	}
	return displayErrorf(err, "the X server of display %s is not reachable: %v", t.name, err)
}

// refused explains the X server's refusal; reason is what it said.
func (t *x11Target) refused(reason string) *DisplayError {
	lower := strings.ToLower(reason)
	authorization := strings.Contains(lower, "authoriz") || strings.Contains(lower, "protocol") ||
		strings.Contains(lower, "cookie") || strings.Contains(lower, "key")
	const advice = "start eBrainPool from your desktop session, so that it has the session's DISPLAY and XAUTHORITY"
	switch {
	case reason == "":
		return displayErrorf(nil, "the X server of display %s refused the connection without saying why", t.name)
	case !authorization:
		return displayErrorf(nil, "the X server of display %s refused the connection: %q", t.name, reason)
	case t.realName != "":
		return displayErrorf(nil, "the X server of display %s refused the cookie for it in %s (it answered %q); %s", t.name, t.xauthFile(), reason, advice)
	case t.xauth == "":
		return displayErrorf(nil, "the X server of display %s requires a cookie (it answered %q), and there is no Xauthority file to take it from: "+
			"XAUTHORITY is not set and there is no home directory; %s", t.name, reason, advice)
	case t.xauthMissing:
		return displayErrorf(nil, "the X server of display %s requires a cookie (it answered %q), and %s does not exist; %s", t.name, reason, t.xauthFile(), advice)
	default:
		return displayErrorf(nil, "the X server of display %s requires a cookie (it answered %q), and %s holds no %s cookie for display %s; %s",
			t.name, reason, t.xauthFile(), mitMagicCookie, t.name, advice)
	}
}
