package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// The phrases that tell a Wayland user's display problems apart: the
// message for one must say none of the others'.
var waylandProblems = map[string]string{
	"no Xwayland":    "has no Xwayland",
	"no session":     "no graphical session",
	"unreachable":    "not reachable",
	"xauth missing":  "does not exist",
	"no cookie":      "holds no MIT-MAGIC-COOKIE-1 cookie",
	"cookie refused": "refused the cookie",
}

// A requester whose desktop is Wayland with Xwayland, as GNOME runs it
// (weston here): the daemon has the session's DISPLAY, XAUTHORITY (the
// cookie file under XDG_RUNTIME_DIR), WAYLAND_DISPLAY and XDG_RUNTIME_DIR,
// and no Xvfb. The window of an app from a peer appears on that desktop;
// a session without Xwayland, or with a DISPLAY or XAUTHORITY that does
// not work, is told so by `ebrainpool run` before the peer is asked.
func TestRunAppOnWaylandDesktop(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xlogo", "xwininfo", "xwd", "xdpyinfo")
	host := newNode(t, true)
	req := newNode(t, false)
	w := testenv.StartWayland(t, req.u.UID, req.u.GID)
	shareApp(t, host, "xlogo", "X Logo", "xlogo")
	startDaemon(t, host)

	t.Run("allowed: the window appears on the Wayland desktop", func(t *testing.T) {
		n := &node{u: req.u.With(w.Env()...), x: w.X()}
		startDaemon(t, n, "--peer", host.peerArg("bob"))
		if _, err := os.Stat(filepath.Join(n.u.Home, ".Xauthority")); err == nil {
			t.Fatal("the requester has a ~/.Xauthority; the test needs the cookie under XDG_RUNTIME_DIR to be the only one")
		}
		// Xwayland (Debian 12's 22.1) has no SECURITY extension, so an app
		// cannot be confined there: with xpra installed the default launch
		// runs it on an isolated display (its window shown through xpra);
		// without, it is refused before the peer is asked, saying why. It
		// runs with the trusted display access the user chooses for it.
		_, xpraErr := exec.LookPath("xpra")
		if out, _ := w.X().Command("xdpyinfo", "-queryExtensions").Output(); strings.Contains(string(out), "SECURITY") {
			t.Log("this Xwayland has the SECURITY extension")
		} else if xpraErr == nil {
			run := n.u.Command(t.Context(), "run", "bob", "xlogo")
			var out strings.Builder
			run.Stdout, run.Stderr = &out, &out
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			host.u.MustRun(t, "allow", waitPending(t, host))
			took := w.WaitWindowShown(t, "xlogo", 60*time.Second)
			t.Logf("isolated by default on Xwayland: xlogo's window (xpra's) shown %s after the answer", took.Round(time.Millisecond))
			endOnlySession(t, n, "outgoing", "")
			run.Wait()
			if !strings.Contains(out.String(), "display: isolated") {
				t.Fatalf("the default launch on Xwayland without SECURITY does not say it is isolated:\n%s", out.String())
			}
		} else {
			r := n.u.Run(t, "run", "bob", "xlogo")
			if r.Code != cli.ExitNoDisplay || !strings.Contains(r.Stderr, "has no SECURITY extension") {
				t.Fatalf("a protected launch on Xwayland without SECURITY: want exit %d saying so, got\n%s", cli.ExitNoDisplay, r)
			}
			if r := host.u.MustRun(t, "pending", "--json"); strings.TrimSpace(r.Stdout) != "[]" {
				t.Fatalf("the peer was asked: %s", r.Stdout)
			}
		}
		run := startRun(t, n.u, "bob", "xlogo", "--trusted-display")
		host.u.MustRun(t, "allow", waitPending(t, host))
		took := w.WaitWindowShown(t, "xlogo", 30*time.Second)
		t.Logf("xlogo's window shown on the Wayland desktop (Xwayland %s, managed by weston, its pixels on weston's output) %s after the answer", w.Display, took.Round(time.Millisecond))

		// Only the cookie under XDG_RUNTIME_DIR lets an X client in: Xwayland
		// runs with -auth that file and refuses a client without it.
		args := w.XwaylandArgs()
		if i := slices.Index(args, "-auth"); i < 0 || i+1 >= len(args) || args[i+1] != w.XAuthority {
			t.Fatalf("Xwayland's command line %q lacks -auth %s", args, w.XAuthority)
		}
		noCookie := w.X().Command("xdpyinfo")
		noCookie.Env = append(noCookie.Env, "XAUTHORITY=/dev/null")
		if out, err := noCookie.CombinedOutput(); err == nil {
			t.Fatalf("Xwayland let in an X client without the cookie:\n%s", out)
		}
		// The app in the host's sandbox has a cookie of its own, not that one.
		start, _ := host.u.SubIDs(t)
		pids := xlogoPids(start + 1000)
		if len(pids) != 1 {
			t.Fatalf("xlogo processes as the host's guest: %v", pids)
		}
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pids[0]))
		var xauth string
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, "XAUTHORITY="); ok {
				xauth = v
			}
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/root%s", pids[0], xauth))
		if err != nil {
			t.Fatalf("the app's Xauthority (XAUTHORITY=%q): %v", xauth, err)
		}
		entries, err := tunnel.ParseXauthority(f)
		f.Close()
		if err != nil || len(entries) == 0 {
			t.Fatalf("the app's Xauthority %s: %d entries, %v", xauth, len(entries), err)
		}
		for _, e := range entries {
			if string(e.Data) == string(w.Cookie) {
				t.Fatalf("the requester's Xwayland cookie reached the host's sandbox (%s)", xauth)
			}
		}
		endOnlySession(t, n, "outgoing", "")
		run.Wait()
		waitGone(t, start+1000)
	})

	// Xauthority files that do not let the daemon in.
	d, err := tunnel.ParseDisplay(w.Display)
	if err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	stale := make([]byte, 16)
	copy(stale, "an old session's")
	writeAuth := func(name string, entries ...tunnel.XauthEntry) string {
		p := filepath.Join(w.RuntimeDir, name)
		if err := tunnel.WriteXauthority(p, entries); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, req.u.UID, req.u.GID)
		return p
	}
	other := strconv.Itoa(d.Number + 1)
	otherDisplay := writeAuth("xauth_KDE123", // as KWin writes it, for another display
		tunnel.XauthEntry{Family: tunnel.FamilyLocal, Address: []byte(hostname), Number: other, Name: "MIT-MAGIC-COOKIE-1", Data: stale},
		tunnel.XauthEntry{Family: tunnel.FamilyWild, Number: other, Name: "MIT-MAGIC-COOKIE-1", Data: stale})
	oldSession := writeAuth(".mutter-Xwaylandauth.OLD123", // as mutter writes it, another cookie
		tunnel.XauthEntry{Family: tunnel.FamilyLocal, Address: []byte(hostname), Name: "MIT-MAGIC-COOKIE-1", Data: stale},
		tunnel.XauthEntry{Family: tunnel.FamilyWild, Address: []byte(hostname), Name: "MIT-MAGIC-COOKIE-1", Data: stale})
	missing := filepath.Join(w.RuntimeDir, ".mutter-Xwaylandauth.GONE00")
	free := freeXDisplay(t)
	session := w.SessionEnv()
	tests := []struct {
		name    string
		env     []string
		problem string
		want    []string
	}{
		{"Wayland without Xwayland: DISPLAY unset", session, "no Xwayland",
			[]string{"this Wayland session (WAYLAND_DISPLAY=" + w.WaylandDisplay + ")", "X11", "xwayland package", "enable X11 apps"}},
		{"no graphical session: DISPLAY and WAYLAND_DISPLAY unset", nil, "no session",
			[]string{"neither DISPLAY nor WAYLAND_DISPLAY is set", "from your desktop session"}},
		{"nothing listens on DISPLAY", append(slices.Clone(session), "DISPLAY="+free, "XAUTHORITY="+w.XAuthority), "unreachable",
			[]string{"display " + free, "/tmp/.X11-unix/X" + strings.TrimPrefix(free, ":")}},
		{"XAUTHORITY names a missing file", append(slices.Clone(session), "DISPLAY="+w.Display, "XAUTHORITY="+missing), "xauth missing",
			[]string{"display " + w.Display, missing}},
		{"XAUTHORITY holds no cookie for the display", append(slices.Clone(session), "DISPLAY="+w.Display, "XAUTHORITY="+otherDisplay), "no cookie",
			[]string{otherDisplay, "for display " + w.Display}},
		{"XAUTHORITY holds another session's cookie", append(slices.Clone(session), "DISPLAY="+w.Display, "XAUTHORITY="+oldSession), "cookie refused",
			[]string{oldSession, "display " + w.Display}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &node{u: req.u.With(tc.env...)}
			startDaemon(t, n, "--peer", host.peerArg("bob"))
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			out, err := n.u.Command(ctx, "run", "bob", "xlogo").CombinedOutput()
			took := time.Since(t0)
			msg := string(out)
			if err == nil {
				t.Fatalf("ebrainpool run succeeded:\n%s", msg)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitNoDisplay {
				t.Errorf("ebrainpool run: %v, want exit status %d (no display)", err, cli.ExitNoDisplay)
			}
			for _, s := range append(tc.want, waylandProblems[tc.problem]) {
				if !strings.Contains(msg, s) {
					t.Errorf("ebrainpool run's error lacks %q:\n%s", s, msg)
				}
			}
			for p, phrase := range waylandProblems {
				if p != tc.problem && strings.Contains(msg, phrase) {
					t.Errorf("ebrainpool run's error says %q (%s), but the problem is %s:\n%s", phrase, p, tc.problem, msg)
				}
			}
			// The display was checked before asking: the peer was never asked.
			if strings.Contains(msg, "could not reach") {
				t.Errorf("ebrainpool run's error says the peer could not be reached, but it was never contacted:\n%s", msg)
			}
			if p := strings.TrimSpace(host.u.MustRun(t, "pending", "--json").Stdout); p != "[]" && p != "null" {
				t.Errorf("the host was asked: pending %s", p)
			}
			if took > 10*time.Second {
				t.Errorf("ebrainpool run took %s to fail", took)
			}
			t.Logf("%s(in %s)", msg, took.Round(time.Millisecond))
		})
	}
}

// freeXDisplay is a display number nothing listens on.
func freeXDisplay(t *testing.T) string {
	t.Helper()
	for n := 700; n < 900; n++ {
		d, _ := tunnel.ParseDisplay(fmt.Sprintf(":%d", n))
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		if c, err := d.Dial(t.Context()); err == nil {
			c.Close()
			continue
		}
		return fmt.Sprintf(":%d", n)
	}
	t.Fatal("no free display number in :700-:899")
	return ""
}
