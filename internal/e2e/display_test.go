package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// displayProbe is the shared app of the display test: it attacks the
// requester's display from the host's sandbox and exits with a bit for each
// attack that worked: 1 a screenshot of the root, 2 the victim's window
// listed, 4 its secret property read, 8 text typed with XTEST.
const displayProbe = `#!/bin/sh
worked=0
n=$(xwd -root -silent 2>/dev/null | wc -c); [ "$n" -gt 0 ] && worked=$((worked | 1))
xwininfo -root -tree 2>/dev/null | grep -q '"ebp-victim"' && worked=$((worked | 2))
xprop -name ebp-victim EBP_SECRET 2>/dev/null | grep -q s3cret && worked=$((worked | 4))
xdotool type 'echo pwned' 2>/dev/null && xdotool key Return 2>/dev/null && worked=$((worked | 8))
sleep 0.5
exit $worked
`

// Issue 14, finding 1, through the whole product: the requester's daemon,
// the host's daemon and consent, a real sandbox, the endpoint in it and
// the client process. A shared app tries to screenshot the requester's
// display, list its windows, read a victim window's property and type
// into the victim xterm: in the default mode every attempt fails (and run
// says the display is protected); after `run --trusted-display` they work
// (and run says so), until --protected-display. With --isolated-display
// the app runs on an X server of its own in the sandbox (xpra): its
// screenshot and typing work there, and the victim is untouched.
func TestDisplayProtectionThroughSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xterm", "xwd", "xwininfo", "xprop", "xdotool", "xpra")
	probe := "/usr/local/bin/ebp-test-display-probe"
	if err := os.WriteFile(probe, []byte(displayProbe), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(probe) })
	host := newNode(t, true)
	req := newNode(t, false)
	req.startDisplay(t)
	shareApp(t, host, "ebp-probe", "Display probe", probe)
	shareApp(t, host, "xlogo", "X Logo", "/usr/bin/xlogo")
	startDaemon(t, host)
	startDaemon(t, req, "--peer", host.peerArg("bob"))

	// The victim: a terminal of the requester's, its input going to a
	// file, with a secret in a property of its window, focused.
	typed := filepath.Join(t.TempDir(), "typed")
	os.WriteFile(typed, nil, 0o666)
	victim := req.x.Command("xterm", "-T", "ebp-victim", "-e", "sh", "-c", "exec cat >> "+typed)
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })
	out, err := req.x.Command("xdotool", "search", "--sync", "--onlyvisible", "--name", "^ebp-victim$").Output()
	if err != nil {
		t.Fatalf("the victim's window: %v", err)
	}
	win := strings.Fields(string(out))[0]
	for _, args := range [][]string{
		{"xprop", "-id", win, "-f", "EBP_SECRET", "8s", "-set", "EBP_SECRET", "s3cret"},
		{"xdotool", "windowfocus", "--sync", win},
	} {
		if out, err := req.x.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}

	// The first launch is asked for and allowed with --remember.
	first := true
	for _, m := range []struct {
		name  string
		flags []string
		want  int // the attacks that work
		says  string
		// reach: the attacks reach the requester's display (isolated:
		// they work, on the sandbox's own X server only).
		reach bool
	}{
		{"protected (default)", nil, 0, "display: protected: the app sees and controls only its own windows", false},
		{"trusted", []string{"--trusted-display"}, 1 | 2 | 4 | 8, "display: TRUSTED: the app can see your whole screen", true},
		{"still trusted (remembered)", nil, 1 | 2 | 4 | 8, "display: TRUSTED", true},
		{"protected again", []string{"--protected-display"}, 0, "display: protected", false},
		// The isolated display: the screenshot and the typing work on the
		// sandbox's own X server; the victim is neither listed, read nor
		// typed into.
		{"isolated", []string{"--isolated-display"}, 1 | 8, "display: isolated: the app draws on a display of its own in the sandbox", false},
		{"still isolated (remembered)", nil, 1 | 8, "display: isolated", false},
		{"protected after isolated", []string{"--protected-display"}, 0, "display: protected", false},
	} {
		t.Run(m.name, func(t *testing.T) {
			res := make(chan testenv.Result, 1)
			go func() { res <- req.u.Run(t, append(append([]string{"run"}, m.flags...), "bob", "ebp-probe")...) }()
			if first {
				id := waitPending(t, host)
				host.u.MustRun(t, "allow", "--remember", id)
				first = false
			}
			var r testenv.Result
			select {
			case r = <-res:
			case <-time.After(90 * time.Second):
				t.Fatal("run did not end")
			}
			if r.Code != m.want {
				t.Errorf("run exited %d, want %d (the attacks that worked: 1 screenshot, 2 window list, 4 property, 8 typing)\n%s", r.Code, m.want, r)
			}
			if !strings.Contains(r.Stderr, m.says) {
				t.Errorf("run does not say %q:\n%s", m.says, r.Stderr)
			}
			b, _ := os.ReadFile(typed)
			if got := strings.Contains(string(b), "echo pwned"); got != m.reach {
				t.Errorf("typed into the victim: %v (it has %q)", got, b)
			}
			os.WriteFile(typed, nil, 0o666)
		})
	}

	// Its window, drawn on the sandbox's X server, appears here through
	// xpra's client, and leaves when the session is ended.
	t.Run("isolated: the window appears here", func(t *testing.T) {
		run := req.u.Command(t.Context(), "run", "--isolated-display", "bob", "xlogo")
		var runOut strings.Builder
		run.Stdout, run.Stderr = &runOut, &runOut
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		host.u.MustRun(t, "allow", waitPending(t, host))
		took := req.x.WaitWindow(t, "xlogo", true, 60*time.Second)
		t.Logf("xlogo's window after %v", took)
		endOnlySession(t, req, "outgoing", "")
		run.Wait()
		if !strings.Contains(runOut.String(), "display: isolated") {
			t.Errorf("run does not say the display is isolated:\n%s", runOut.String())
		}
	})
}
