package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/cli"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// The test apps of the files tests: scripts in /usr/local/bin (the host's
// /usr is the sandbox's), shared from desktop entries.
var fileApps = map[string]string{
	// Opens a file (%f): appends a line, tries to read what is beside
	// it and the requester's secret, lists its folder.
	"ebp-test-append": `#!/bin/sh
f="$1"; d=$(dirname "$f")
echo "edited in the sandbox" >> "$f"
for p in "$d/secret.txt" "$d/../secret.txt" "$SECRET" "$d/../../secret.txt"; do
	if cat "$p" >/dev/null 2>&1; then echo "LEAK $p" >> "$f"; fi
done
echo "listing: $(ls -A "$d" | tr '\n' ' ')" >> "$f"
`,
	// Works in a folder brought read-write (* 's Pictures) and one
	// brought read-only (* 's Docs); exits 3 when a change that should
	// have been refused worked.
	"ebp-test-folder": `#!/bin/sh
bad=0
for p in "$HOME"/*"'s Pictures"; do
	[ -d "$p" ] || continue
	echo "from the sandbox" > "$p/new.txt" || exit 4
	mkdir "$p/made" && mv "$p/new.txt" "$p/made/new.txt" || exit 4
	cat "$p/up" >/dev/null 2>&1 && bad=1                 # a symlink out of the folder
	cat "$p/../../secret.txt" >/dev/null 2>&1 && bad=1
	ln -s "$SECRET" "$p/planted" 2>/dev/null && bad=1    # a symlink planted by the app
	ln "$p/cat.txt" "$p/hard" 2>/dev/null && bad=1
	perl -e 'rename($ARGV[0], $ARGV[1]) or exit 1' "$p/cat.txt" "$HOME/stolen.txt" && bad=1  # across the boundary
	perl -e 'rename($ARGV[0], $ARGV[1]) or exit 1' "$HOME/.profile-missing" "$p/in.txt" 2>/dev/null && bad=1
	ls -A "$p" > "$p/listing.txt"
done
for d in "$HOME"/*"'s Docs"; do
	[ -d "$d" ] || continue
	cat "$d/keep.txt" >/dev/null || exit 4
	(echo x >> "$d/keep.txt") 2>/dev/null && bad=1
	(echo x > "$d/new.txt") 2>/dev/null && bad=1
	rm -f "$d/keep.txt" 2>/dev/null; [ -e "$d/keep.txt" ] || bad=1
done
[ $bad = 0 ] || exit 3
`,
	// Opens a file and keeps running.
	"ebp-test-hold": `#!/bin/sh
cat "$1" >/dev/null
exec sleep 600
`,
}

func installFileApps(t *testing.T, host *node, secret string) {
	t.Helper()
	for name, script := range fileApps {
		p := filepath.Join("/usr/local/bin", name)
		script = strings.Replace(script, "#!/bin/sh\n", "#!/bin/sh\nSECRET='"+secret+"'\n", 1)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	dir := filepath.Join(host.u.Home, ".local/share/applications")
	os.MkdirAll(dir, 0o755)
	entries := map[string]string{
		"ebp-append": "Name=Appender\nExec=/usr/local/bin/ebp-test-append %f\nMimeType=text/plain;\n",
		"ebp-hold":   "Name=Holder\nExec=/usr/local/bin/ebp-test-hold %U\nMimeType=text/markdown;\n",
		"ebp-folder": "Name=Folder worker\nExec=/usr/local/bin/ebp-test-folder\n",
	}
	for id, e := range entries {
		if err := os.WriteFile(filepath.Join(dir, id+".desktop"), []byte("[Desktop Entry]\nType=Application\n"+e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("chown", "-R", host.u.Name+":", filepath.Join(host.u.Home, ".local")).Run()
	host.u.MustRun(t, "share", "ebp-append", "ebp-hold", "ebp-folder")
}

// writeAs writes a file of the user's.
func writeAs(t *testing.T, u *testenv.User, rel, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(u.Home, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	exec.Command("chown", "-R", u.Name+":", filepath.Join(u.Home, strings.Split(rel, "/")[0])).Run()
	return p
}

// shareMountHolders are the processes that have a share mount in their
// mount namespace.
func shareMountHolders() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if strings.Contains(string(b), tunnel.FuseType) {
			out = append(out, pid)
		}
	}
	return out
}

func commOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// waitNothingLeft waits until no process has a share mount and no sshfs
// or test app runs.
func waitNothingLeft(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []string
		for _, pid := range shareMountHolders() {
			left = append(left, fmt.Sprintf("%d %s (has a share mount)", pid, commOf(pid)))
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
				continue
			}
			if c := commOf(pid); c == "sshfs" || strings.HasPrefix(c, "ebp-test-") {
				left = append(left, fmt.Sprintf("%d %s", pid, c))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: left behind: %s", what, strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// guestHome lists the guest's home of peer's sandbox on host.
func guestHome(t *testing.T, host *node, peer string) string {
	t.Helper()
	return host.u.MustRun(t, "sandbox", "exec", peer, "--", "/bin/ls", "-A", "/home/guest").Stdout
}

// A opens its own files with B's apps: the file is edited in place, only
// it is visible; folders read-write and read-only; escapes refused; the
// mounts exist only for the session; a killed client or endpoint leaves
// nothing behind; `open` picks apps by type.
func TestOpenFilesWithPeersApp(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "sshfs", "perl")
	host := newNode(t, true)
	req := newNode(t, false)
	req.startDisplay(t)
	secret := writeAs(t, req.u, "secret.txt", "SECRET\n", 0o644)
	installFileApps(t, host, secret)
	startDaemon(t, host)
	startDaemon(t, req, "--peer", host.peerArg("bob"))
	peer := req.fp

	t.Run("open a file: the line is in A's file, nothing else is visible", func(t *testing.T) {
		notes := writeAs(t, req.u, "notes.txt", "line 1\n", 0o644)
		run := req.u.Command(t.Context(), "open", "--app", "ebp-append", notes)
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		host.u.MustRun(t, "allow", waitPending(t, host))
		if err := run.Wait(); err != nil {
			t.Fatalf("open: %v\n%s", err, out.String())
		}
		b, _ := os.ReadFile(notes)
		if got := string(b); !strings.HasPrefix(got, "line 1\nedited in the sandbox\n") || strings.Contains(got, "LEAK") ||
			!strings.Contains(got, "listing: notes.txt \n") {
			t.Fatalf("A's file after the app:\n%s\n(open said:\n%s)", got, out.String())
		}
		if b, _ := os.ReadFile(secret); string(b) != "SECRET\n" {
			t.Fatalf("the secret changed: %q", b)
		}
		if !strings.Contains(out.String(), "opening notes.txt with Appender of bob") {
			t.Errorf("the progress does not say what is shared:\n%s", out.String())
		}
		waitNothingLeft(t, "after the app exited")
		if h := guestHome(t, host, peer); strings.Contains(h, "'s files") {
			t.Errorf("the mount point is left in the guest's home: %q", h)
		}
	})

	t.Run("folders read-write and read-only, escapes refused", func(t *testing.T) {
		pics := filepath.Join(req.u.Home, "Pictures")
		writeAs(t, req.u, "Pictures/cat.txt", "meow\n", 0o644)
		os.Symlink("../secret.txt", filepath.Join(pics, "up"))
		writeAs(t, req.u, "Docs/keep.txt", "keep\n", 0o644)
		before := listTree(t, req.u.Home)
		run := req.u.Command(t.Context(), "run", "--folder", pics, "--folder", filepath.Join(req.u.Home, "Docs")+":ro", "bob", "ebp-folder")
		var out strings.Builder
		run.Stdout, run.Stderr = &out, &out
		run.Start()
		host.u.MustRun(t, "allow", waitPending(t, host))
		if err := run.Wait(); err != nil {
			t.Fatalf("run --folder: %v (exit status 3: a change that should have been refused worked)\n%s", err, out.String())
		}
		if b, _ := os.ReadFile(filepath.Join(pics, "made", "new.txt")); string(b) != "from the sandbox\n" {
			t.Errorf("the file written in the read-write folder: %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(pics, "listing.txt")); strings.Contains(string(b), "up") || !strings.Contains(string(b), "cat.txt") {
			t.Errorf("the app's listing of the folder: %q (the symlink out is not shown)", b)
		}
		for _, p := range []string{"Pictures/planted", "Pictures/hard", "Pictures/in.txt", "Docs/new.txt"} {
			if _, err := os.Lstat(filepath.Join(req.u.Home, p)); err == nil {
				t.Errorf("%s was made", p)
			}
		}
		after := listTree(t, req.u.Home)
		for p, v := range before {
			if after[p] != v {
				t.Errorf("%s changed: %q -> %q", p, v, after[p])
			}
		}
		if !strings.Contains(out.String(), "bringing Pictures/, Docs/ (read-only)") {
			t.Errorf("the progress does not say what is shared:\n%s", out.String())
		}
		waitNothingLeft(t, "after the app exited")
		if h := guestHome(t, host, peer); strings.Contains(h, "Pictures") || strings.Contains(h, "stolen") {
			t.Errorf("left in the guest's home: %q", h)
		}
	})

	// The first asks (and is remembered: consent's rate limit allows 3
	// prompts per peer in 20 s), the next run without a prompt.
	asked := false
	holdSession := func(t *testing.T) (*exec.Cmd, *strings.Builder) {
		t.Helper()
		doc := writeAs(t, req.u, "doc.md", "# doc\n", 0o644)
		run := req.u.Command(t.Context(), "open", "--app", "ebp-hold", doc)
		out := &strings.Builder{}
		run.Stdout, run.Stderr = out, out
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		if !asked {
			host.u.MustRun(t, "allow", "--remember", waitPending(t, host))
			asked = true
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(shareMountHolders()) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the session's mount did not appear:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		return run, out
	}

	t.Run("the mount is the session's only, and gone when it ends", func(t *testing.T) {
		run, out := holdSession(t)
		// Only the session's own processes have it: not the sandbox's init,
		// not another process in the same sandbox, not another peer's
		// sandbox.
		start, count := host.u.SubIDs(t)
		for _, pid := range shareMountHolders() {
			var st syscall.Stat_t
			syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st)
			if c := commOf(pid); int(st.Uid) != start+1000 && c != "ebrainpool" || int(st.Uid) < start || int(st.Uid) >= start+count {
				t.Errorf("process %d %s (uid %d) has the share mount", pid, c, st.Uid)
			}
		}
		if h := host.u.MustRun(t, "sandbox", "exec", peer, "--", "/bin/sh", "-c", "cat /home/guest/*/doc.md 2>/dev/null; grep -c "+tunnel.FuseType+" /proc/self/mountinfo; true"); strings.Contains(h.Stdout, "# doc") || strings.TrimSpace(h.Stdout) != "0" {
			t.Errorf("another process of the sandbox sees the file: %q", h.Stdout)
		}
		// Another peer's sandbox on the host: nothing of A's there.
		host.u.MustRun(t, "sandbox", "start", "another-peer")
		if o := host.u.MustRun(t, "sandbox", "exec", "another-peer", "--", "/bin/sh", "-c", "ls -A /home/guest; cat /home/guest/*/doc.md 2>/dev/null; grep -c "+tunnel.FuseType+" /proc/self/mountinfo; true"); strings.Contains(o.Stdout, "'s ") || strings.Contains(o.Stdout, "# doc") || !strings.HasSuffix(strings.TrimSpace(o.Stdout), "0") {
			t.Errorf("another peer's sandbox sees A's files: %q", o.Stdout)
		}
		host.u.MustRun(t, "sandbox", "stop", "another-peer")
		endOnlySessionNoWindow(t, req)
		run.Wait()
		_ = out
		waitNothingLeft(t, "after the session was ended")
	})

	t.Run("a killed client leaves nothing behind", func(t *testing.T) {
		run, _ := holdSession(t)
		killed := killProcs(t, req.u.UID, "x11-client")
		if killed == 0 {
			t.Fatal("no client process to kill")
		}
		run.Wait()
		waitNothingLeft(t, "after the client was killed")
	})

	t.Run("a killed endpoint leaves nothing behind", func(t *testing.T) {
		run, _ := holdSession(t)
		start, _ := host.u.SubIDs(t)
		if killProcs(t, start, "guest-mount") == 0 {
			t.Fatal("no endpoint to kill")
		}
		run.Wait()
		waitNothingLeft(t, "after the endpoint was killed")
		// The next session removes the mount point the killed one left
		// (an empty directory), and its own when it ends.
		t.Logf("guest's home after the kill: %q", guestHome(t, host, peer))
		run, _ = holdSession(t)
		endOnlySessionNoWindow(t, req)
		run.Wait()
		waitNothingLeft(t, "after the next session")
		if h := guestHome(t, host, peer); strings.Contains(h, "'s files") {
			t.Errorf("a mount point is left in the guest's home: %q", h)
		}
	})

	t.Run("a share that cannot be mounted: the requester is told why", func(t *testing.T) {
		// The session's mount point, seen while it runs, then a file of
		// that name left in the guest's home in its place.
		run, _ := holdSession(t)
		var name string
		for _, l := range strings.Split(guestHome(t, host, peer), "\n") {
			if strings.HasSuffix(l, "'s files") {
				name = l
			}
		}
		endOnlySessionNoWindow(t, req)
		run.Wait()
		waitNothingLeft(t, "after the session")
		if name == "" {
			t.Fatal("no mount point seen in the guest's home during the session")
		}
		host.u.MustRun(t, "sandbox", "exec", peer, "--", "/bin/sh", "-c", `echo x > "/home/guest/$1"`, "sh", name)
		defer host.u.MustRun(t, "sandbox", "exec", peer, "--", "/bin/rm", "-f", "/home/guest/"+name)
		doc := writeAs(t, req.u, "doc.md", "# doc\n", 0o644)
		r := req.u.Run(t, "open", "--app", "ebp-hold", doc)
		if r.Code == 0 || !strings.Contains(r.Stderr, "bringing your files into your sandbox on this host failed") ||
			!strings.Contains(r.Stderr, "is not a folder") || !strings.Contains(r.Stderr, "move it away in the sandbox") {
			t.Fatalf("open with a file in the way of the share: %s", r)
		}
		t.Logf("the requester is told:\n%s", r.Stderr)
		waitNothingLeft(t, "after the refused launch")
	})

	t.Run("open picks apps by type", func(t *testing.T) {
		notes := writeAs(t, req.u, "notes.txt", "x\n", 0o644)
		r := req.u.Run(t, "open", "--list", notes)
		if r.Code != 0 || !strings.Contains(r.Stdout, "ebp-append") || strings.Contains(r.Stdout, "ebp-hold") || strings.Contains(r.Stdout, "ebp-folder") {
			t.Errorf("open --list notes.txt: %s", r)
		}
		md := writeAs(t, req.u, "two.md", "x\n", 0o644)
		r = req.u.Run(t, "open", "--list", md)
		if r.Code != 0 || !strings.Contains(r.Stdout, "ebp-append") || !strings.Contains(r.Stdout, "ebp-hold") {
			t.Errorf("open --list two.md (text/markdown is text/plain too): %s", r)
		}
		if r := req.u.Run(t, "open", md); r.Code != cli.ExitUsage || !strings.Contains(r.Stderr, "choose one with --peer and --app") {
			t.Errorf("open with two candidates: %s", r)
		}
		blob := writeAs(t, req.u, "blob.bin", "\x00\x01\x02\x03", 0o644)
		if r := req.u.Run(t, "open", blob); r.Code != cli.ExitNotShared || !strings.Contains(r.Stderr, "no app shared by any peer opens blob.bin") {
			t.Errorf("open of a file no app opens: %s", r)
		}
	})
}

// endOnlySessionNoWindow ends n's only session.
func endOnlySessionNoWindow(t *testing.T, n *node) {
	t.Helper()
	ids := n.u.MustRun(t, "sessions").Stdout
	lines := strings.Split(strings.TrimSpace(ids), "\n")
	if len(lines) != 2 {
		t.Fatalf("sessions of %s: %s", n.u.Name, ids)
	}
	n.u.MustRun(t, "end", strings.Fields(lines[1])[0])
}

// killProcs SIGKILLs the processes of uid whose command line has word.
func killProcs(t *testing.T, uid int, word string) int {
	t.Helper()
	n := 0
	for _, pid := range testenv.PidsOfUIDs(uid, uid) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), word) {
			syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// listTree maps each file below dir to its content (a symlink to its
// target).
func listTree(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.Contains(p, "/.") {
			return nil
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			out[p] = "-> " + l
		} else if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}
