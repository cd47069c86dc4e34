package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// `ebrainpool allow --remember` (CLI, D-Bus Answer, daemon, consent)
// remembers the app by its desktop ID and command: the same app runs again
// without a prompt; another shared app with the same name asks, and so
// does the same app once its command changed.
func TestAllowRememberIsForTheApp(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "xlogo", "xwininfo")
	host := newNode(t, true)
	req := newNode(t, false)
	req.startDisplay(t)
	shareApp(t, host, "ebp-logo-a", "Shared Logo", "xlogo")
	shareApp(t, host, "ebp-logo-b", "Shared Logo", "xlogo -fg red")
	startDaemon(t, host)
	startDaemon(t, req, "--peer", host.peerArg("bob"))

	// runDetached runs `run --detach bob APP` and returns its result once
	// it exits (within the consent timeout if nobody answers).
	runDetached := func(app string) (*exec.Cmd, <-chan string) {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		run := req.u.Command(ctx, "run", "--detach", "bob", app)
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan string, 1)
		go func() { run.Wait(); cancel(); done <- out.String() }()
		return run, done
	}
	pendingApp := func(id string) string {
		var reqs []map[string]any
		json.Unmarshal([]byte(host.u.MustRun(t, "pending", "--json").Stdout), &reqs)
		for _, r := range reqs {
			if r["id"] == id {
				return fmt.Sprint(r["app"])
			}
		}
		return ""
	}

	// A: asked, allowed with --remember.
	run, done := runDetached("ebp-logo-a")
	id := waitPending(t, host)
	if name := pendingApp(id); name != "Shared Logo" {
		t.Errorf("the prompt names the app %q, want its display name", name)
	}
	host.u.MustRun(t, "allow", "--remember", id)
	if out := <-done; run.ProcessState.ExitCode() != 0 || !strings.Contains(out, "running") {
		t.Fatalf("run A after allow --remember: exit %d\n%s", run.ProcessState.ExitCode(), out)
	}
	req.x.WaitWindow(t, "xlogo", true, 20*time.Second)
	endOnlySession(t, req, "outgoing", "running")

	// A again: no prompt.
	run, done = runDetached("ebp-logo-a")
	select {
	case out := <-done:
		if run.ProcessState.ExitCode() != 0 || !strings.Contains(out, "running") {
			t.Fatalf("run A again: exit %d\n%s", run.ProcessState.ExitCode(), out)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("run A again did not start without an answer (pending: %s)", host.u.MustRun(t, "pending", "--json").Stdout)
	}
	req.x.WaitWindow(t, "xlogo", true, 20*time.Second)
	endOnlySession(t, req, "outgoing", "running")

	denied := func(what, app string) {
		t.Helper()
		run, done := runDetached(app)
		host.u.MustRun(t, "deny", waitPending(t, host))
		if out := <-done; run.ProcessState.ExitCode() != cli.ExitDenied {
			t.Fatalf("%s: exit %d, want %d (denied)\n%s", what, run.ProcessState.ExitCode(), cli.ExitDenied, out)
		}
	}
	// B has A's name: it asks.
	denied("B, named as A", "ebp-logo-b")

	// A with a changed command asks again (once the daemon rescanned its
	// applications: at most every 10s).
	entry := filepath.Join(host.u.Home, ".local/share/applications", "ebp-logo-a.desktop")
	if err := os.WriteFile(entry, []byte("[Desktop Entry]\nType=Application\nName=Shared Logo\nExec=xlogo -bg blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(11 * time.Second)
	denied("A with a changed command", "ebp-logo-a")

	// What the host remembered: A by ID and its first command.
	b, err := os.ReadFile(filepath.Join(host.u.Home, ".local/state/ebrainpool/consent.json"))
	if err != nil {
		t.Errorf("the host's consent rules: %v", err)
	} else if !strings.Contains(string(b), `"id": "ebp-logo-a"`) || !strings.Contains(string(b), `"command": "xlogo"`) {
		t.Errorf("consent.json: %s", b)
	}
}
