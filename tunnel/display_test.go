package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"golang.org/x/crypto/ssh"
)

// The phrases that tell the kinds of display errors apart: a message of
// one kind must contain none of the others'.
var displayErrorKinds = map[string]string{
	"no Xwayland":        "has no Xwayland",
	"no session":         "no graphical session",
	"unreachable":        "not reachable",
	"xauth missing":      "does not exist",
	"no cookie":          "holds no MIT-MAGIC-COOKIE-1 cookie",
	"cookie refused":     "refused the cookie",
	"not a display name": "is not an X display name",
	"invalid xauthority": "is not a valid Xauthority file",
	"refused (other)":    "refused the connection",
	"no xauthority file": "there is no Xauthority file",
}

// checkDisplayMessage fails t unless err is a *DisplayError of kind whose
// message holds every string of want and no other kind's phrase.
func checkDisplayMessage(t *testing.T, err error, kind string, want ...string) {
	t.Helper()
	var de *DisplayError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want a *DisplayError", err, err)
	}
	msg := err.Error()
	for _, w := range append(want, displayErrorKinds[kind]) {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
	for k, phrase := range displayErrorKinds {
		if k != kind && strings.Contains(msg, phrase) {
			t.Errorf("message says %q (%s), but the problem is %s:\n%s", phrase, k, kind, msg)
		}
	}
	t.Logf("%s", msg)
}

// The message functions, for every state the local display can be in.
func TestDisplayErrorMessages(t *testing.T) {
	xvfbSocket, _ := ParseDisplay(":57")
	target := func(mod func(*x11Target)) *x11Target {
		x := &x11Target{display: xvfbSocket, name: ":57", xauth: "/run/user/1000/.mutter-Xwaylandauth.AbC123"}
		mod(x)
		return x
	}
	const noAuth = "Authorization required, but no authorization protocol specified"
	tests := []struct {
		name string
		err  *DisplayError
		kind string
		want []string
	}{
		{"Wayland without Xwayland", noDisplayError("wayland-0"), "no Xwayland",
			[]string{"Wayland session", "WAYLAND_DISPLAY=wayland-0", "DISPLAY is not set", "X11", "xwayland package", "enable X11 apps"}},
		{"no graphical session", noDisplayError(""), "no session",
			[]string{"neither DISPLAY nor WAYLAND_DISPLAY is set", "from your desktop session", "DISPLAY set"}},
		{"nothing listens", target(func(*x11Target) {}).unreachable(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}),
			"unreachable", []string{"display :57", "/tmp/.X11-unix/X57", "nothing listens", "no such file or directory"}},
		{"connection refused over TCP", (&x11Target{display: Display{Number: 3, Host: "127.0.0.1"}, name: "127.0.0.1:3"}).unreachable(
			&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
			"unreachable", []string{"display 127.0.0.1:3", "127.0.0.1:6003", "connection refused"}},
		{"XAUTHORITY names a missing file", target(func(x *x11Target) { x.xauthMissing = true }).refused(noAuth), "xauth missing",
			[]string{"display :57", "the Xauthority file /run/user/1000/.mutter-Xwaylandauth.AbC123 (XAUTHORITY)", "requires a cookie", noAuth}},
		{"default ~/.Xauthority missing", target(func(x *x11Target) { x.xauth, x.xauthDefault, x.xauthMissing = "/home/a/.Xauthority", true, true }).refused(noAuth),
			"xauth missing", []string{"/home/a/.Xauthority (the default: XAUTHORITY is not set)"}},
		{"no cookie for the display", target(func(*x11Target) {}).refused(noAuth), "no cookie",
			[]string{"/run/user/1000/.mutter-Xwaylandauth.AbC123", "for display :57", "requires a cookie"}},
		{"cookie refused", target(func(x *x11Target) { x.realName, x.realData = mitMagicCookie, []byte("0123456789abcdef") }).refused("Invalid MIT-MAGIC-COOKIE-1 key"),
			"cookie refused", []string{"display :57", "/run/user/1000/.mutter-Xwaylandauth.AbC123", "Invalid MIT-MAGIC-COOKIE-1 key"}},
		{"no Xauthority file at all", target(func(x *x11Target) { x.xauth = "" }).refused(noAuth), "no xauthority file",
			[]string{"XAUTHORITY is not set and there is no home directory"}},
		{"refused without a reason", target(func(*x11Target) {}).refused(""), "refused (other)",
			[]string{"display :57", "without saying why"}},
		// A refusal that is not about authorization blames no file.
		{"server full", target(func(x *x11Target) { x.xauthMissing = true }).refused("Maximum number of clients reached"), "refused (other)",
			[]string{"display :57", "Maximum number of clients reached"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDisplayMessage(t, tc.err, tc.kind, tc.want...)
			if tc.kind == "refused (other)" && strings.Contains(tc.err.Error(), "Xauthority") {
				t.Errorf("a refusal not about authorization names the Xauthority file: %s", tc.err)
			}
		})
	}
}

// Xauthority files as GNOME (mutter) and KDE (KWin) write them for
// Xwayland: mutter's entries have no display number, which libXau takes
// as any display.
func TestFindCookieWaylandDesktops(t *testing.T) {
	cookie := []byte("0123456789abcdef")
	mutter := []XauthEntry{
		{Family: FamilyLocal, Address: []byte("myhost"), Name: mitMagicCookie, Data: cookie},
		{Family: FamilyWild, Address: []byte("myhost"), Name: mitMagicCookie, Data: cookie},
	}
	kwin := []XauthEntry{
		{Family: FamilyLocal, Address: []byte("myhost"), Number: "1", Name: mitMagicCookie, Data: cookie},
		{Family: FamilyWild, Number: "1", Name: mitMagicCookie, Data: cookie},
	}
	mutterLocalOnly := mutter[:1]
	tests := []struct {
		name    string
		entries []XauthEntry
		display string
		host    string
		found   bool
	}{
		{"mutter :0", mutter, ":0", "myhost", true},
		{"mutter :1024 (under GDM)", mutter, ":1024", "myhost", true},
		{"mutter, another host name: the wild entry", mutter, ":0", "other", true},
		{"mutter's local entry, another host name", mutterLocalOnly, ":0", "other", false},
		{"kwin :1", kwin, ":1", "myhost", true},
		{"kwin, another display", kwin, ":2", "myhost", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDisplay(tc.display)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := findCookie(tc.entries, d, tc.host)
			if ok != tc.found || (ok && string(got) != string(cookie)) {
				t.Errorf("findCookie = %q, %v; want found=%v", got, ok, tc.found)
			}
		})
	}
}

// freeDisplay is a display number nothing listens on.
func freeDisplay(t *testing.T) string {
	t.Helper()
	for n := 700; n < 900; n++ {
		d, _ := ParseDisplay(fmt.Sprintf(":%d", n))
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		if c, err := d.Dial(context.Background()); err == nil {
			c.Close()
			continue
		}
		return fmt.Sprintf(":%d", n)
	}
	t.Fatal("no free display number in :700-:899")
	return ""
}

// writeXauth writes a FamilyWild entry for display number num.
func writeXauth(t *testing.T, num int, cookie []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "Xauthority")
	if err := WriteXauthority(p, []XauthEntry{{Family: FamilyWild, Number: strconv.Itoa(num), Name: mitMagicCookie, Data: cookie}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// CheckDisplay against a real X server that requires a cookie (Xvfb with
// -auth), in each state a user's session can leave DISPLAY and XAUTHORITY.
func TestCheckDisplay(t *testing.T) {
	x := startXvfb(t)
	home := t.TempDir() // no .Xauthority in it
	free := freeDisplay(t)
	wrong := make([]byte, 16)
	rand.Read(wrong)
	otherDisplay := writeXauth(t, x.number+1, wrong)
	wrongCookie := writeXauth(t, x.number, wrong)
	missing := filepath.Join(t.TempDir(), ".mutter-Xwaylandauth.GONE12")
	tests := []struct {
		name                string
		display, xauthority string // "" (unset) or the value
		wayland             string // WAYLAND_DISPLAY
		kind                string // "" for no error
		want                []string
	}{
		{name: "the display and its cookie", display: x.display, xauthority: x.xauthority},
		{name: "Wayland session without Xwayland", wayland: "wayland-0", kind: "no Xwayland", want: []string{"WAYLAND_DISPLAY=wayland-0"}},
		{name: "no graphical session", kind: "no session"},
		{name: "nothing listens on the display", display: free, xauthority: x.xauthority, wayland: "wayland-0", kind: "unreachable", want: []string{"display " + free}},
		{name: "XAUTHORITY names a missing file", display: x.display, xauthority: missing, wayland: "wayland-0", kind: "xauth missing", want: []string{missing + " (XAUTHORITY)", "display " + x.display}},
		{name: "XAUTHORITY unset, no ~/.Xauthority", display: x.display, kind: "xauth missing", want: []string{filepath.Join(home, ".Xauthority") + " (the default"}},
		{name: "no cookie for this display", display: x.display, xauthority: otherDisplay, kind: "no cookie", want: []string{otherDisplay, "for display " + x.display}},
		{name: "a stale cookie", display: x.display, xauthority: wrongCookie, kind: "cookie refused", want: []string{wrongCookie, "Invalid MIT-MAGIC-COOKIE-1 key"}},
		{name: "XAUTHORITY is a directory", display: x.display, xauthority: home, kind: "invalid xauthority", want: []string{home}},
		{name: "DISPLAY is not a display name", display: "wayland-0", kind: "not a display name", want: []string{"DISPLAY=wayland-0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv("DISPLAY", tc.display)
			t.Setenv("XAUTHORITY", tc.xauthority)
			t.Setenv("WAYLAND_DISPLAY", tc.wayland)
			// From the environment, as the daemon passes it on.
			err := CheckDisplay(context.Background(), "", "")
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("CheckDisplay: %v", err)
				}
				return
			}
			checkDisplayMessage(t, err, tc.kind, tc.want...)
		})
	}
}

// RunApp checks the display before it connects to the endpoint: a display
// it cannot use fails with the display's error, and the endpoint is never
// dialed.
func TestRunAppChecksDisplayFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialed atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			c.Close()
		}
	}()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	free := freeDisplay(t)
	tests := []struct {
		name    string
		display string
		wayland string
		kind    string
	}{
		{"Wayland without Xwayland", "", "wayland-1", "no Xwayland"},
		{"nothing listens on the display", free, "", "unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DISPLAY", "")
			t.Setenv("WAYLAND_DISPLAY", tc.wayland)
			_, err := RunApp(context.Background(), ClientConfig{
				Addr: ln.Addr().String(), HostKey: signer.PublicKey(), Identity: signer, Command: "xlogo",
				Display: tc.display, XAuthority: "/nonexistent", HandshakeTimeout: 5 * time.Second,
			})
			checkDisplayMessage(t, err, tc.kind)
		})
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("RunApp dialed the endpoint %d times with an unusable display", n)
	}
}

// CheckDisplay on a real Wayland desktop: weston with Xwayland started on
// demand by the first X client, its cookie in a file under
// XDG_RUNTIME_DIR written as mutter writes it.
func TestCheckDisplayXwayland(t *testing.T) {
	w := testenv.StartWayland(t, os.Getuid(), os.Getgid())
	if args := w.XwaylandArgs(); args != nil {
		t.Fatalf("Xwayland runs before any X client connected: %q", args)
	}
	t0 := time.Now()
	if err := CheckDisplay(context.Background(), w.Display, w.XAuthority); err != nil {
		t.Fatalf("CheckDisplay on Xwayland %s with %s: %v", w.Display, w.XAuthority, err)
	}
	t.Logf("CheckDisplay started Xwayland on %s and got in, in %s", w.Display, time.Since(t0).Round(time.Millisecond))
	args := w.XwaylandArgs()
	if i := slices.Index(args, "-auth"); i < 0 || i+1 >= len(args) || args[i+1] != w.XAuthority {
		t.Fatalf("Xwayland's command line %q lacks -auth %s", args, w.XAuthority)
	}
	// Xwayland really requires that cookie.
	missing := filepath.Join(w.RuntimeDir, ".mutter-Xwaylandauth.OLD999")
	t.Run("XAUTHORITY names a missing file", func(t *testing.T) {
		checkDisplayMessage(t, CheckDisplay(context.Background(), w.Display, missing), "xauth missing", missing, "display "+w.Display)
	})
	t.Run("a cookie of another session", func(t *testing.T) {
		wrong := make([]byte, 16)
		rand.Read(wrong)
		d, _ := ParseDisplay(w.Display)
		p := writeXauth(t, d.Number, wrong)
		checkDisplayMessage(t, CheckDisplay(context.Background(), w.Display, p), "cookie refused", p)
	})
}
