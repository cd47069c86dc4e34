package tunnel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// guestMountModeEnv switches the test binary into the privileged stage
// (GuestMountMain, as `ebrainpool guest-mount`), running itself in
// endpoint mode as the guest.
const guestMountModeEnv = "EBP_TUNNEL_TEST_GUESTMOUNT"

type guestMountSpec struct {
	Home     string
	UID, GID int
	Shares   []MountSpec
}

func guestMountMain(specJSON string) int {
	var spec guestMountSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "guest-mount mode:", err)
		return 2
	}
	self, _ := os.Executable()
	code, err := GuestMountMain(GuestMountConfig{Home: spec.Home, UID: spec.UID, GID: spec.GID, Shares: spec.Shares, Argv: []string{self}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest-mount mode:", err)
		return 3
	}
	return code
}

// worldDir is a directory every user may enter (the guest's home and
// the endpoint's files: the guest is uid 1000 here).
func worldDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "ebp-share-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// mountsOf lists the FUSE share mounts in pid's mount namespace.
func mountsOf(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, FuseType) {
			out = append(out, l)
		}
	}
	return out
}

// A session that brings files, end to end without a container: the
// privileged stage mounts each share in a mount namespace of its own,
// the endpoint (as uid 1000) serves them with sshfs over files channels
// from the client's SFTP server; the app edits a file and a folder, a
// read-only folder refuses writes; afterwards nothing is left: no mount,
// no mount point, no sshfs.
func TestSharesMountedWithSSHFS(t *testing.T) {
	home, bin, hostKey, client := mountRig(t)

	// The requester's side.
	req := t.TempDir()
	notes := filepath.Join(req, "notes.txt")
	os.WriteFile(notes, []byte("line 1\n"), 0o644)
	os.WriteFile(filepath.Join(req, "secret.txt"), []byte("SECRET\n"), 0o600)
	pics := filepath.Join(req, "Pictures")
	os.Mkdir(pics, 0o755)
	os.WriteFile(filepath.Join(pics, "cat.txt"), []byte("meow\n"), 0o644)
	docs := filepath.Join(req, "Docs")
	os.Mkdir(docs, 0o755)
	os.WriteFile(filepath.Join(docs, "ro.txt"), []byte("keep\n"), 0o644)
	shares := []Share{
		{Name: "alice's files", Files: []string{notes}},
		{Name: "alice's Pictures", Dir: pics},
		{Name: "alice's Docs", Dir: docs, ReadOnly: true},
	}
	script := `set -e
f="$HOME/alice's files"; p="$HOME/alice's Pictures"; d="$HOME/alice's Docs"
echo "line 2" >> "$f/notes.txt"
ls -a "$f" > "$p/listing.txt"
cat "$p/cat.txt" > "$p/copy.txt"
mkdir "$p/new"; echo dog > "$p/new/dog.txt.tmp"; mv "$p/new/dog.txt.tmp" "$p/new/dog.txt"
if (echo x >> "$d/ro.txt") 2>/dev/null; then echo "wrote to a read-only share"; exit 1; fi
if (touch "$f/other.txt") 2>/dev/null; then echo "made a file beside the shared one"; exit 1; fi
cat "$d/ro.txt" > "$p/ro-copy.txt"
grep -c "$FUSE_TYPE" /proc/self/mountinfo
`
	var mounts []MountSpec
	for _, sh := range shares {
		mounts = append(mounts, MountSpec{Name: sh.Name, ReadOnly: sh.ReadOnly})
	}
	mspec, _ := json.Marshal(guestMountSpec{Home: home, UID: 1000, GID: 1000, Shares: mounts})
	espec, _ := json.Marshal(endpointSpec{HostKey: hostKey.path, AuthorizedKey: authorizedLine(client.signer.PublicKey()),
		Command: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin", "FUSE_TYPE=" + FuseType, "HOME=" + home}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stage := make(chan *exec.Cmd, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f, _ := c.(*net.TCPConn).File()
		c.Close()
		cmd := exec.Command(bin)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &logWriter{tb: t, prefix: "endpoint: "}
		cmd.Env = []string{"PATH=/usr/bin:/bin", guestMountModeEnv + "=" + string(mspec), endpointModeEnv + "=" + string(espec)}
		cmd.Start()
		f.Close()
		stage <- cmd
	}()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := ClientConfig{Addr: ln.Addr().String(), HostKey: hostKey.signer.PublicKey(), Identity: client.signer,
		Command: ShellJoin([]string{"/bin/sh", "-c", script}), NoX11: true, Shares: shares,
		Stdout: &out, Stderr: &out, Logger: testLogger(t)}
	code, err := RunApp(ctx, cfg)
	if err != nil || code != 0 {
		t.Fatalf("RunApp: %d, %v\n%s", code, err, out.String())
	}
	cmd := <-stage
	cmd.Wait()
	if got := strings.TrimSpace(out.String()); got != "3" {
		t.Errorf("the app saw %q share mounts, want 3", got)
	}
	check := func(p, want string) {
		t.Helper()
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	check(notes, "line 1\nline 2\n")
	check(filepath.Join(pics, "listing.txt"), "notes.txt\n")
	check(filepath.Join(pics, "copy.txt"), "meow\n")
	check(filepath.Join(pics, "new", "dog.txt"), "dog\n")
	check(filepath.Join(docs, "ro.txt"), "keep\n")
	check(filepath.Join(pics, "ro-copy.txt"), "keep\n")
	check(filepath.Join(req, "secret.txt"), "SECRET\n")
	// Nothing left: the mount points removed, no mount here, no sshfs.
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("left in the guest's home: %v", ents)
	}
	if m := mountsOf(os.Getpid()); len(m) != 0 {
		t.Errorf("share mounts visible outside the session: %v", m)
	}
	if n := processesNamed("sshfs"); n != 0 {
		t.Errorf("%d sshfs processes left", n)
	}
}

// processesNamed counts processes whose comm is name.
func processesNamed(name string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			n++
		}
	}
	return n
}

var _ = io.EOF
var _ = syscall.SIGKILL

// A privileged stage killed in the middle of a session (SIGKILL, as a
// forward's teardown does when SIGTERM is not enough) leaves no mount and
// no process: the endpoint dies with it, the app and sshfs with the
// endpoint's PID namespace; the mount point it left is removed by the
// next stage.
func TestSharesKilledStageLeavesNothing(t *testing.T) {
	home, bin, hostKey, client := mountRig(t)
	req := t.TempDir()
	os.WriteFile(filepath.Join(req, "a.txt"), []byte("a\n"), 0o644)
	marker := fmt.Sprintf("ebp-kill-%d", time.Now().UnixNano())
	// The app and a child of its own that leaves its process group.
	script := `cat "$HOME/x/a.txt" >/dev/null; setsid sleep 300 & echo up; exec sleep 300`
	mspec, _ := json.Marshal(guestMountSpec{Home: home, UID: 1000, GID: 1000, Shares: []MountSpec{{Name: "x"}}})
	espec, _ := json.Marshal(endpointSpec{HostKey: hostKey.path, AuthorizedKey: authorizedLine(client.signer.PublicKey()),
		Command: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin", "HOME=" + home, markerEnv + "=" + marker}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	stage := make(chan *exec.Cmd, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f, _ := c.(*net.TCPConn).File()
		c.Close()
		cmd := exec.Command(bin)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &logWriter{tb: t, prefix: "endpoint: "}
		cmd.Env = []string{"PATH=/usr/bin:/bin", guestMountModeEnv + "=" + string(mspec), endpointModeEnv + "=" + string(espec)}
		cmd.Start()
		f.Close()
		stage <- cmd
	}()
	up := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := RunApp(ctx, ClientConfig{Addr: ln.Addr().String(), HostKey: hostKey.signer.PublicKey(), Identity: client.signer,
			Command: ShellJoin([]string{"/bin/sh", "-c", script}), NoX11: true,
			Shares: []Share{{Name: "x", Files: []string{filepath.Join(req, "a.txt")}}},
			Stdout: writerFunc(func(p []byte) {
				select {
				case <-up:
				default:
					close(up)
				}
			}), Logger: testLogger(t)})
		done <- err
	}()
	cmd := <-stage
	select {
	case <-up:
	case <-time.After(30 * time.Second):
		t.Fatal("the app did not start")
	}
	// Both run (a process in the middle of an exec can show no
	// environment for a moment).
	for deadline := time.Now().Add(10 * time.Second); len(markedProcesses(marker)) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d app processes, want 2", len(markedProcesses(marker)))
		}
	}
	if m := mountsOf(os.Getpid()); len(m) != 0 {
		t.Errorf("the share's mount shows outside the session while it runs: %v", m)
	}
	cmd.Process.Kill()
	cmd.Wait()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := markedProcesses(marker)
		if len(left) == 0 && processesNamed("sshfs") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after the stage was killed: app processes %v, %d sshfs", left, processesNamed("sshfs"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No process has the mount any more: its namespace is gone.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil && len(mountsOf(pid)) > 0 {
			t.Errorf("process %d still has a share mount: %v", pid, mountsOf(pid))
		}
	}
	// The mount point it left is removed by the next stage.
	if _, err := os.Stat(filepath.Join(home, "x")); err != nil {
		t.Fatalf("the killed stage's mount point: %v (expected it left)", err)
	}
	run := exec.Command(bin)
	run.Env = []string{"PATH=/usr/bin:/bin", guestMountModeEnv + "=" + mustJSON(guestMountSpec{Home: home, UID: 1000, GID: 1000}), endpointModeEnv + "=x"}
	run.Run() // its endpoint ("x") fails at once: what counts is the removal before
	if _, err := os.Stat(filepath.Join(home, "x")); err == nil {
		t.Error("the next stage did not remove the mount point left behind")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

// mountRig is what the share mount tests need as root: the guest's home
// (uid 1000's), a copy of this test binary as the endpoint every user can
// run, and the host's and the client's keys.
func mountRig(t *testing.T) (home, bin string, hostKey, client keyPair) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root under CI")
		}
		t.Skip("needs root (mounts)")
	}
	needBin(t, "sshfs")
	dir := worldDir(t)
	home = filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	// The guest's home as liblxc leaves a container's mounts: shared (a
	// share mounted in a plain copy of the namespace would show here).
	if err := unix.Mount("tmpfs", home, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,uid=1000,gid=1000,size=16m"); err != nil {
		t.Fatalf("the guest's home: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(home, unix.MNT_DETACH) })
	if err := unix.Mount("", home, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("making the guest's home shared: %v", err)
	}
	self, _ := os.Executable()
	bin = filepath.Join(dir, "endpoint")
	data, _ := os.ReadFile(self)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	hostKey, client = newKeyPair(t, dir, "host_key"), newKeyPair(t, dir, "id")
	os.Chmod(hostKey.path, 0o644)
	return home, bin, hostKey, client
}
