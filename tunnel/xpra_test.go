package tunnel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireXpra fails (skips outside CI) without xpra.
func requireXpra(tb testing.TB) {
	tb.Helper()
	needBin(tb, "xpra")
}

// TestIsolatedDisplay is issue 14's probe in the isolated mode: the app,
// through a real session (our endpoint and client, xpra on both sides),
// tries to screenshot the requester's display, list and read its other
// windows and type into its terminal; it sees only the X server of its
// own session, and the victim is untouched. Its own window appears on
// the requester's display, drawn by xpra's client.
func TestIsolatedDisplay(t *testing.T) {
	requireXpra(t)
	x := startXvfb(t)
	needBin(t, "xwd")
	needBin(t, "xwininfo")
	v := startVictim(t, x)
	setCutBuffer0(t, x, "selected-secret")

	out := filepath.Join(t.TempDir(), "probe")
	script := strings.Join([]string{
		"exec > " + out + " 2>&1",
		"echo DISPLAY=$DISPLAY",
		"echo root-bytes: $(xwd -root -silent | wc -c)",
		"echo tree:; xwininfo -root -tree",
		"echo prop:; xprop -id " + v.window + " EBP_SECRET WM_NAME",
		"echo cut:; xprop -root CUT_BUFFER0",
		"xprop -root -f CUT_BUFFER0 8s -set CUT_BUFFER0 planted",
		"xdotool type 'echo pwned'; xdotool key Return",
		"sleep 0.5",
		"exit 3",
	}, "; ")
	argv := []string{"sh", "-c", script}
	r := newRig(t, rigOptions{command: argv})
	cfg := r.clientConfig(x, ShellJoin(argv))
	cfg.IsolatedDisplay = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := RunApp(ctx, cfg)
	if err != nil {
		t.Fatalf("RunApp: %v", err)
	}
	if st != 3 {
		t.Errorf("exit status %d, want the app's 3", st)
	}
	b, _ := os.ReadFile(out)
	got := string(b)
	t.Logf("status %d; the app's probes:\n%s", st, got)
	if !strings.Contains(got, "root-bytes:") {
		t.Fatalf("the probes did not run: %q", got)
	}
	for _, bad := range []string{`"victim"`, "s3cret", "selected-secret"} {
		if strings.Contains(got, bad) {
			t.Errorf("the app saw %s on the requester's display", bad)
		}
	}
	if strings.Contains(got, "DISPLAY="+x.display+"\n") {
		t.Errorf("the app was given the requester's display %s", x.display)
	}
	if b, _ := os.ReadFile(v.typed); len(b) > 0 {
		t.Errorf("the victim's terminal got %q", b)
	}
	if cb := cutBuffer0(x); !strings.Contains(cb, "selected-secret") {
		t.Errorf("the cut buffer was changed: %s", cb)
	}
	waitDone(t, r.fwd, 10*time.Second)

	t.Run("own window appears and ends with the session", func(t *testing.T) {
		r := newRig(t, rigOptions{command: []string{"xlogo"}})
		windowUntilCancel(t, x, r, func(ctx context.Context) error {
			cfg := r.clientConfig(x, "xlogo")
			cfg.IsolatedDisplay = true
			_, err := RunApp(ctx, cfg)
			return err
		})
	})
	for _, app := range []struct{ name, bin, window string }{
		{"OpenGL", "glxgears", "glxgears"},
		{"GTK4", "gtk4-widget-factory", "GTK Widget Factory"},
	} {
		t.Run(app.name+" works", func(t *testing.T) {
			needBin(t, app.bin)
			r := newRig(t, rigOptions{command: []string{app.bin}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := make(chan error, 1)
			go func() {
				cfg := r.clientConfig(x, app.bin)
				cfg.IsolatedDisplay = true
				_, err := RunApp(ctx, cfg)
				res <- err
			}()
			x.waitWindow(t, app.window, true, 30*time.Second)
			cancel()
			if err := <-res; !errors.Is(err, context.Canceled) {
				t.Errorf("session after cancel: %v, want context.Canceled", err)
			}
			x.waitWindow(t, app.window, false, 10*time.Second)
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
}

// TestIsolatedDisplayNoXpraOnHost: a host without xpra refuses the
// isolated display, and the requester says what the host needs.
func TestIsolatedDisplayNoXpraOnHost(t *testing.T) {
	requireXpra(t)
	x := startXvfb(t)
	// The host's PATH has no xpra.
	r := newRig(t, rigOptions{command: []string{"xlogo"}, appEnv: []string{"PATH=/nonexistent"}})
	cfg := r.clientConfig(x, "xlogo")
	cfg.IsolatedDisplay = true
	_, err := RunApp(context.Background(), cfg)
	if !errors.Is(err, ErrHostNoIsolated) {
		t.Fatalf("RunApp on a host without xpra: %v, want %v", err, ErrHostNoIsolated)
	}
	t.Logf("said: %v", err)
	waitDone(t, r.fwd, 10*time.Second)
}

// TestIsolatedDisplayCrash: when either side's process dies mid-session
// (the requester's xpra client, or the endpoint in the sandbox), the
// session ends and nothing of it runs on: the rig's cleanup checks that no
// process of the app's (xpra's server, its Xvfb, the app) survives.
func TestIsolatedDisplayCrash(t *testing.T) {
	requireXpra(t)
	x := startXvfb(t)
	for _, tc := range []struct {
		name string
		kill func(t *testing.T, r *rig) []int
	}{
		{"the requester's xpra client", func(t *testing.T, r *rig) []int {
			return processesWith(t, processTree(os.Getpid()), "attach")
		}},
		{"the endpoint", func(t *testing.T, r *rig) []int {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]int(nil), r.pids...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{command: []string{"xlogo"}})
			res := make(chan error, 1)
			go func() {
				cfg := r.clientConfig(x, "xlogo")
				cfg.IsolatedDisplay = true
				_, err := RunApp(context.Background(), cfg)
				res <- err
			}()
			x.waitWindow(t, "xlogo", true, 30*time.Second)
			pids := tc.kill(t, r)
			if len(pids) == 0 {
				t.Fatal("no process to kill")
			}
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			select {
			case err := <-res:
				t.Logf("the session ended: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("the session did not end")
			}
			x.waitWindow(t, "xlogo", false, 10*time.Second)
			waitDone(t, r.fwd, 10*time.Second)
		})
	}
}

// processesWith are the pids whose command line holds word.
func processesWith(t *testing.T, pids []int, word string) []int {
	t.Helper()
	var out []int
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if strings.Contains(string(b), "xpra") && strings.Contains(string(b), word) {
			out = append(out, p)
		}
	}
	return out
}
