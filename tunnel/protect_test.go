package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// victim is a trusted client on the requester's display: an xterm whose
// input goes to a file, with a secret in a property of its window, and
// the input focus.
type victim struct {
	window string // id, decimal
	typed  string // the file the xterm's input goes to
}

func startVictim(t *testing.T, x *xvfb) *victim {
	t.Helper()
	needBin(t, "xterm")
	needBin(t, "xdotool")
	needBin(t, "xprop")
	v := &victim{typed: filepath.Join(t.TempDir(), "typed")}
	if err := os.WriteFile(v.typed, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("xterm", "-T", "victim", "-e", "sh", "-c", "exec cat >> "+v.typed)
	cmd.Env = x.env()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	x.waitWindow(t, "victim", true, 15*time.Second)
	out, err := x.command("xdotool", "search", "--name", "^victim$").Output()
	if err != nil {
		t.Fatalf("xdotool search: %v", err)
	}
	v.window = strings.Fields(string(out))[0]
	for _, args := range [][]string{
		{"xprop", "-id", v.window, "-f", "EBP_SECRET", "8s", "-set", "EBP_SECRET", "s3cret-of-the-requester"},
		{"xdotool", "windowfocus", "--sync", v.window},
	} {
		if out, err := x.command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	return v
}

func (x *xvfb) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = x.env()
	return cmd
}

// requireSecurity fails (skips outside CI) unless the display has the
// SECURITY extension.
func requireSecurity(t *testing.T, x *xvfb) {
	t.Helper()
	out, err := x.command("xdpyinfo", "-queryExtensions").Output()
	if err != nil {
		t.Fatalf("xdpyinfo: %v", err)
	}
	if !strings.Contains(string(out), "SECURITY") {
		t.Fatal("Xvfb has no SECURITY extension")
	}
}

// TestDisplayProtection is issue 14's probe: a shared app, through a real
// session, tries to screenshot the requester's display, list and read its
// other windows and type into its terminal. In the default mode every
// attempt fails; with trusted display access (the requester's explicit
// choice) they work.
func TestDisplayProtection(t *testing.T) {
	x := startXvfb(t)
	requireSecurity(t, x)
	needBin(t, "xwd")
	needBin(t, "xwininfo")
	v := startVictim(t, x)
	// What the user last selected (xterm puts it there).
	setCutBuffer0(t, x, "selected-secret")

	type attack struct {
		name   string
		script string
		// protected checks the outcome in the default mode, trusted with
		// trusted display access.
		protected, trusted func(status int, out string) string
	}
	attacks := []attack{
		{
			name:   "screenshot of the root window",
			script: "xwd -root -silent | wc -c",
			protected: func(st int, out string) string {
				if n := strings.TrimSpace(out); n != "0" {
					return "xwd -root wrote " + n + " bytes"
				}
				return ""
			},
			trusted: func(st int, out string) string {
				if n := strings.TrimSpace(out); n == "0" || n == "" {
					return "xwd -root wrote nothing"
				}
				return ""
			},
		},
		{
			name:   "screenshot of the victim window",
			script: "xwd -id " + v.window + " -silent | wc -c",
			protected: func(st int, out string) string {
				if n := strings.TrimSpace(out); n != "0" {
					return "xwd -id wrote " + n + " bytes"
				}
				return ""
			},
			trusted: func(st int, out string) string {
				if n := strings.TrimSpace(out); n == "0" || n == "" {
					return "xwd -id wrote nothing"
				}
				return ""
			},
		},
		{
			name:   "list the windows",
			script: "xwininfo -root -tree",
			protected: func(st int, out string) string {
				if strings.Contains(out, `"victim"`) {
					return "the victim's window is listed:\n" + out
				}
				return ""
			},
			trusted: func(st int, out string) string {
				if !strings.Contains(out, `"victim"`) {
					return "the victim's window is not listed:\n" + out
				}
				return ""
			},
		},
		{
			name:   "read the victim's property",
			script: "xprop -id " + v.window + " EBP_SECRET WM_NAME",
			protected: func(st int, out string) string {
				if strings.Contains(out, "s3cret") || strings.Contains(out, "victim") {
					return "read: " + out
				}
				return ""
			},
			trusted: func(st int, out string) string {
				if !strings.Contains(out, "s3cret-of-the-requester") {
					return "not read: " + out
				}
				return ""
			},
		},
		{
			name:   "extensions for input and keylogging",
			script: "xdpyinfo -queryExtensions | grep -E '^ +(XTEST|XInputExtension|RECORD|XKEYBOARD|MIT-SHM|GLX|RENDER)' || true",
			protected: func(st int, out string) string {
				if strings.TrimSpace(out) != "" {
					return "the app sees " + out
				}
				return ""
			},
			trusted: func(st int, out string) string {
				if !strings.Contains(out, "XTEST") {
					return "no XTEST: " + out
				}
				return ""
			},
		},
		{
			name:   "read and write the cut buffer",
			script: "xprop -root -f CUT_BUFFER0 8s -set CUT_BUFFER0 planted; xprop -root CUT_BUFFER0",
			protected: func(st int, out string) string {
				if strings.Contains(out, "selected-secret") {
					return "read the cut buffer: " + out
				}
				if cb := cutBuffer0(x); !strings.Contains(cb, "selected-secret") {
					return "changed the cut buffer: " + cb
				}
				return ""
			},
			trusted: func(st int, out string) string {
				defer setCutBuffer0(t, x, "selected-secret")
				if !strings.Contains(out, "planted") {
					return "could not write and read the cut buffer: " + out
				}
				return ""
			},
		},
		{
			name:   "type into the victim's terminal",
			script: "xdotool type 'echo pwned' && xdotool key Return; sleep 0.5",
			protected: func(st int, out string) string {
				if b, _ := os.ReadFile(v.typed); len(b) > 0 {
					return "the terminal got " + string(b)
				}
				return ""
			},
			trusted: func(st int, out string) string {
				deadline := time.Now().Add(5 * time.Second)
				for {
					b, _ := os.ReadFile(v.typed)
					if strings.Contains(string(b), "echo pwned") {
						os.WriteFile(v.typed, nil, 0o600)
						return ""
					}
					if time.Now().After(deadline) {
						return "the terminal got " + string(b)
					}
					time.Sleep(50 * time.Millisecond)
				}
			},
		},
	}
	modes := []struct {
		name    string
		trusted bool
	}{{"protected (default)", false}, {"trusted", true}}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for _, a := range attacks {
				t.Run(a.name, func(t *testing.T) {
					argv := []string{"sh", "-c", a.script}
					r := newRig(t, rigOptions{command: argv})
					var stdout, stderr bytes.Buffer
					cfg := r.clientConfig(x, ShellJoin(argv))
					cfg.TrustedDisplay = m.trusted
					cfg.Stdout, cfg.Stderr = &stdout, &stderr
					st, err := RunApp(context.Background(), cfg)
					if err != nil {
						t.Fatalf("RunApp: %v", err)
					}
					check := a.protected
					if m.trusted {
						check = a.trusted
					}
					if msg := check(st, stdout.String()); msg != "" {
						t.Errorf("%s (status %d, stderr %q)", msg, st, stderr.String())
					}
					t.Logf("status %d, stderr %q", st, stderr.String())
					waitDone(t, r.fwd, 10*time.Second)
				})
			}
		})
	}
	t.Run("own window works", func(t *testing.T) {
		r := newRig(t, rigOptions{command: []string{"xlogo"}})
		windowUntilCancel(t, x, r, func(ctx context.Context) error {
			_, err := RunApp(ctx, r.clientConfig(x, "xlogo"))
			return err
		})
	})
}

// TestUntrustedAuthorizationLifetime: the session's authorization works
// while the session lasts, and is revoked when it ends (a client holding it
// cannot connect any more).
func TestUntrustedAuthorizationLifetime(t *testing.T) {
	x := startXvfb(t)
	requireSecurity(t, x)
	tg, err := localX11Target(x.display, x.xauthority)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := tg.generateUntrusted(ctx)
	if err != nil {
		t.Fatalf("generateUntrusted: %v", err)
	}
	if len(a.data) != 16 {
		t.Errorf("cookie of %d bytes, want 16", len(a.data))
	}
	c, err := dialX(ctx, tg, a.name, a.data)
	if err != nil {
		t.Fatalf("connecting with the untrusted cookie: %v", err)
	}
	c.Close()
	if err := a.revoke(ctx); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	_, err = dialX(ctx, tg, a.name, a.data)
	var de *DisplayError
	if !errors.As(err, &de) {
		t.Fatalf("connecting after revoke: %v, want a refusal", err)
	}
}

// TestNoSecurityExtension: a display without the SECURITY extension is
// refused in the default mode, saying so, and used in trusted mode.
func TestNoSecurityExtension(t *testing.T) {
	x := startXvfbWith(t, "-extension", "SECURITY")
	out, err := x.command("xdpyinfo", "-queryExtensions").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SECURITY") {
		t.Fatal("Xvfb -extension SECURITY still has it")
	}
	argv := []string{"sh", "-c", "xdpyinfo >/dev/null"}
	for _, trusted := range []bool{false, true} {
		r := newRig(t, rigOptions{command: argv})
		cfg := r.clientConfig(x, ShellJoin(argv))
		cfg.TrustedDisplay = trusted
		st, err := RunApp(context.Background(), cfg)
		switch {
		case !trusted && !errors.Is(err, ErrNoSecurityExtension):
			t.Errorf("protected: %d, %v; want ErrNoSecurityExtension", st, err)
		case !trusted:
			var de *DisplayError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), "no SECURITY extension") {
				t.Errorf("protected: error %q, want a DisplayError naming the missing extension", err)
			}
			r.fwd.Close()
		case err != nil || st != 0:
			t.Errorf("trusted: %d, %v; want 0", st, err)
		}
	}
}

// TestDisplayProtectionBetweenSessions: two protected sessions on one
// display (apps from two peers) cannot read, drive or watch each other's
// windows, though SECURITY alone lets untrusted clients do anything to
// each other: the other app's window is given to the attacker by id, as
// if guessed.
func TestDisplayProtectionBetweenSessions(t *testing.T) {
	x := startXvfbWith(t, "-noreset")
	requireSecurity(t, x)
	needBin(t, "xterm")
	needBin(t, "xdotool")
	typed := filepath.Join(t.TempDir(), "typed")
	if err := os.WriteFile(typed, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	// The other peer's app: an xterm whose input goes to a file, in a
	// protected session of its own, running until the test ends.
	// It takes synthetic key events (SendEvent), which xterm by default
	// ignores, so that their refusal is the filter's.
	argv := []string{"xterm", "-xrm", "XTerm*allowSendEvents: true", "-T", "otherapp", "-e", "sh", "-c", "exec cat >> " + typed}
	other := newRig(t, rigOptions{command: argv})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { RunApp(ctx, other.clientConfig(x, ShellJoin(argv))); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	x.waitWindow(t, "otherapp", true, 15*time.Second)
	out, err := x.command("xdotool", "search", "--sync", "--onlyvisible", "--name", "^otherapp$").Output()
	if err != nil {
		t.Fatalf("xdotool search: %v", err)
	}
	win := strings.Fields(string(out))[0]
	if out, err := x.command("xdotool", "windowfocus", "--sync", win).CombinedOutput(); err != nil {
		t.Fatalf("focusing the other app: %v: %s", err, out)
	}
	// xterm draws in a child of its top-level window.
	out, err = x.command("xwininfo", "-id", win, "-children").Output()
	if err != nil {
		t.Fatalf("xwininfo -children: %v", err)
	}
	var vt100 string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "0x") && !strings.Contains(l, "Window id:") {
			var id uint32
			fmt.Sscanf(f[0], "0x%x", &id)
			vt100 = fmt.Sprint(id)
			break
		}
	}
	if vt100 == "" {
		t.Fatalf("no child window of the other app's window:\n%s", out)
	}

	for _, a := range []struct {
		name, script string
		bad          func(out string) string
	}{
		{"screenshot", "xwd -id " + win + " -silent | wc -c", func(out string) string {
			if n := strings.TrimSpace(out); n != "0" {
				return "xwd wrote " + n + " bytes"
			}
			return ""
		}},
		{"properties", "xprop -id " + win + " WM_NAME", func(out string) string {
			if strings.Contains(out, "otherapp") {
				return "read " + out
			}
			return ""
		}},
		{"list", "xwininfo -root -tree", func(out string) string {
			if strings.Contains(out, "otherapp") {
				return "listed:\n" + out
			}
			return ""
		}},
		{"synthetic keys", attack("keys", win), nil},
		{"watch its keys", attack("watch", win) + " & sleep 0.5; DISPLAY=" + x.display + " XAUTHORITY=" + x.xauthority +
			" xdotool type --delay 20 'typed by the user'; wait", func(out string) string {
			if strings.Contains(out, "KeyPress") {
				return "the attacker saw key presses:\n" + out
			}
			return ""
		}},
		{"draw on it", attack("clear", vt100), nil},
		{"unmap and kill", attack("unmap", win), nil},
	} {
		t.Run(a.name, func(t *testing.T) {
			argv := []string{"sh", "-c", a.script}
			r := newRig(t, rigOptions{command: argv})
			before, _ := x.command("xwd", "-id", win, "-silent").Output()
			var stdout, stderr bytes.Buffer
			cfg := r.clientConfig(x, ShellJoin(argv))
			cfg.Stdout, cfg.Stderr = &stdout, &stderr
			if _, err := RunApp(context.Background(), cfg); err != nil {
				t.Fatalf("RunApp: %v", err)
			}
			if a.bad != nil {
				if msg := a.bad(stdout.String()); msg != "" {
					t.Errorf("%s (stderr %q)", msg, stderr.String())
				}
			}
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if b, _ := os.ReadFile(typed); len(b) > 0 {
					t.Errorf("the other app got typed input: %q", b)
					os.WriteFile(typed, nil, 0o666)
					break
				}
			}
			x.waitWindow(t, "otherapp", true, time.Second)
			if after, _ := x.command("xwd", "-id", win, "-silent").Output(); a.name != "watch its keys" && !bytes.Equal(before, after) {
				t.Errorf("the other app's window changed (%d bytes of xwd before, %d after)", len(before), len(after))
			}
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
	os.WriteFile(typed, nil, 0o666)
	// The user's own typing still reaches the other app (trusted input).
	if out, err := x.command("xdotool", "type", "still mine").CombinedOutput(); err != nil {
		t.Fatalf("xdotool type: %v: %s", err, out)
	}
	x.command("xdotool", "key", "Return").Run()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(typed)
		if strings.Contains(string(b), "still mine") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the user's typing did not reach the other app: %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attackModeEnv makes the test binary a raw X client attacking a window
// of another client (attackMain).
const attackModeEnv = "EBP_TUNNEL_TEST_ATTACK"

// attack is the shell command for attackMain in a session's app.
func attack(action, win string) string {
	self, _ := os.Executable()
	return attackModeEnv + "=1 " + ShellJoin([]string{self, action, win})
}

// attackMain connects to $DISPLAY as the app does and, on window win
// (decimal): "keys" sends it synthetic key presses ("p", Return);
// "watch" selects its key presses and prints "KeyPress" for each one seen
// within 3 s; "clear" clears it to its background; "unmap" unmaps it and
// kills its client.
func attackMain(action, winArg string) int {
	var win uint32
	if _, err := fmt.Sscan(winArg, &win); err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		return 2
	}
	ctx := context.Background()
	t, err := localX11Target(os.Getenv("DISPLAY"), os.Getenv("XAUTHORITY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		return 2
	}
	x, err := dialX(ctx, t, t.realName, t.realData)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		return 2
	}
	defer x.Close()
	le := binary.LittleEndian
	req := func(b []byte) {
		if _, err := x.request(b); err != nil {
			fmt.Fprintln(os.Stderr, "attack:", err)
		}
	}
	switch action {
	case "keys":
		for _, key := range []byte{33, 36} { // p, Return in Xvfb's keymap
			for _, typ := range []byte{2, 3} { // KeyPress, KeyRelease
				b := make([]byte, 44)
				b[0] = xOpSendEvent
				le.PutUint32(b[4:], win)
				le.PutUint32(b[8:], 1|2) // KeyPress, KeyRelease masks
				ev := b[12:]
				ev[0], ev[1] = typ, key
				le.PutUint32(ev[12:], win)
				ev[30] = 1 // same screen
				req(b)
			}
		}
	case "watch":
		b := make([]byte, 16)
		b[0] = xOpChangeWindowAttributes
		le.PutUint32(b[4:], win)
		le.PutUint32(b[8:], 1<<11) // CWEventMask
		le.PutUint32(b[12:], 1)    // KeyPressMask
		req(b)
		x.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			var ev [32]byte
			if _, err := io.ReadFull(x.c, ev[:]); err != nil {
				break
			}
			if ev[0]&0x7f == 2 {
				fmt.Println("KeyPress", ev[1])
			}
			if ev[0] == 1 {
				io.CopyN(io.Discard, x.c, int64(le.Uint32(ev[4:]))*4)
			}
		}
		return 0
	case "clear":
		// ClearArea of the whole window, exposures off: it shows its
		// background only.
		b := make([]byte, 16)
		b[0] = 61
		le.PutUint32(b[4:], win)
		req(b)
	case "unmap":
		b := make([]byte, 8)
		b[0] = 10 // UnmapWindow
		le.PutUint32(b[4:], win)
		req(b)
		k := make([]byte, 8)
		k[0] = 113 // KillClient
		le.PutUint32(k[4:], win)
		req(k)
	}
	if err := x.sync(); err != nil {
		fmt.Fprintln(os.Stderr, "attack: sync:", err)
	}
	return 0
}

func setCutBuffer0(t *testing.T, x *xvfb, v string) {
	t.Helper()
	if out, err := x.command("xprop", "-root", "-f", "CUT_BUFFER0", "8s", "-set", "CUT_BUFFER0", v).CombinedOutput(); err != nil {
		t.Fatalf("setting CUT_BUFFER0: %v: %s", err, out)
	}
}

func cutBuffer0(x *xvfb) string {
	out, _ := x.command("xprop", "-root", "CUT_BUFFER0").Output()
	return string(out)
}

// TestProtectedAppEnv: an app on a protected display runs with
// GDK_RENDERING=image (GTK 3 then sends each frame once instead of reading
// it back), one with trusted access does not, and a value in the
// approved environment is kept.
func TestProtectedAppEnv(t *testing.T) {
	x := startXvfb(t)
	argv := []string{"sh", "-c", `echo "rendering=${GDK_RENDERING-unset}"`}
	for _, tc := range []struct {
		name    string
		trusted bool
		appEnv  []string
		want    string
	}{
		{"protected", false, nil, "rendering=image"},
		{"trusted", true, nil, "rendering=unset"},
		{"protected, set by the host", false, []string{"GDK_RENDERING=similar"}, "rendering=similar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{command: argv, appEnv: tc.appEnv})
			cfg := r.clientConfig(x, ShellJoin(argv))
			cfg.TrustedDisplay = tc.trusted
			var out strings.Builder
			cfg.Stdout = &out
			st, err := RunApp(context.Background(), cfg)
			if err != nil || st != 0 {
				t.Fatalf("status %d, %v", st, err)
			}
			if got := strings.TrimSpace(out.String()); got != tc.want {
				t.Errorf("the app printed %q, want %q", got, tc.want)
			}
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
}
