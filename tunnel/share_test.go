package tunnel

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

// logBuffer collects a share server's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveShareForTest serves sh to an SFTP client over a pipe.
func serveShareForTest(t *testing.T, sh Share) (*sftp.Client, *logBuffer) {
	t.Helper()
	a, b := net.Pipe()
	logs := &logBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- ServeShare(a, sh, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	c, err := sftp.NewClientPipe(b, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		b.Close()
		<-done
	})
	return c, logs
}

// sharedTree is a requester's home with a shared folder in it and
// things outside it.
func sharedTree(t *testing.T) (home, shared string) {
	home = t.TempDir()
	shared = filepath.Join(home, "Pictures")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(shared, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(home, "secret.txt"), []byte("SECRET"), 0o600))
	must(os.WriteFile(filepath.Join(shared, "cat.txt"), []byte("meow"), 0o644))
	must(os.WriteFile(filepath.Join(shared, "sub", "dog.txt"), []byte("woof"), 0o644))
	must(os.Symlink("../secret.txt", filepath.Join(shared, "up")))
	must(os.Symlink(filepath.Join(home, "secret.txt"), filepath.Join(shared, "abs")))
	must(os.Symlink(home, filepath.Join(shared, "homedir")))
	must(os.Symlink("sub/dog.txt", filepath.Join(shared, "inside")))
	must(syscall.Mkfifo(filepath.Join(shared, "fifo"), 0o644))
	ln, err := net.Listen("unix", filepath.Join(shared, "sock"))
	must(err)
	t.Cleanup(func() { ln.Close() })
	return home, shared
}

func TestShareFolderConfined(t *testing.T) {
	home, shared := sharedTree(t)
	c, logs := serveShareForTest(t, Share{Name: "alice's Pictures", Dir: shared})

	// What is listed: regular files and directories, a symlink inside
	// the folder as what it points to; nothing leading out, no FIFO or
	// socket.
	fis, err := c.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name())
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "cat.txt inside sub" {
		t.Fatalf("listing: %s", got)
	}
	if b := readAll(t, c, "/inside"); b != "woof" {
		t.Fatalf("symlink inside: %q", b)
	}
	fi, err := c.Stat("/cat.txt")
	if err != nil || fi.Sys().(*sftp.FileStat).UID != ShareOwner[0] {
		t.Fatalf("stat: %v %+v", err, fi)
	}

	// Escapes: each refused, and logged.
	for _, p := range []string{"/up", "/abs", "/homedir/secret.txt", "/../secret.txt", "/sub/../../secret.txt", "/fifo", "/sock"} {
		if f, err := c.Open(p); err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			t.Errorf("opened %s: %q", p, b)
		}
		if _, err := c.Stat(p); err == nil {
			t.Errorf("stat %s worked", p)
		}
	}
	if _, err := c.ReadDir("/homedir"); err == nil {
		t.Error("listed a directory out of the folder")
	}
	for _, p := range []string{"/up", "/abs", "/homedir", "/fifo", "/sock"} {
		if !strings.Contains(logs.String(), "path="+p) {
			t.Errorf("refusal of %s not logged:\n%s", p, logs)
		}
	}
	// Writing through a symlink out, creating links, renaming out.
	if f, err := c.OpenFile("/abs", os.O_WRONLY|os.O_TRUNC); err == nil {
		f.Close()
		t.Error("opened a symlink out for writing")
	}
	if f, err := c.OpenFile("/homedir/new.txt", os.O_WRONLY|os.O_CREATE); err == nil {
		f.Close()
		t.Error("created a file through a symlink out")
	}
	if err := c.Symlink("/etc/passwd", "/planted"); err == nil {
		t.Error("made a symlink")
	}
	if err := c.Link("/cat.txt", "/hard"); err == nil {
		t.Error("made a hard link")
	}
	if err := c.PosixRename("/cat.txt", "/homedir/stolen.txt"); err == nil {
		t.Error("renamed into a directory out of the folder")
	}
	if err := c.PosixRename("/cat.txt", "/../stolen.txt"); err != nil {
		t.Errorf("a rename to /../x is a rename to /x: %v", err)
	} else if _, err := os.Stat(filepath.Join(shared, "stolen.txt")); err != nil {
		t.Errorf("renamed where? %v", err)
	}
	if err := c.Remove("/up"); err == nil {
		if _, err := os.Lstat(filepath.Join(home, "secret.txt")); err != nil {
			t.Fatal("removed the secret through a symlink")
		}
	}
	if b, _ := os.ReadFile(filepath.Join(home, "secret.txt")); string(b) != "SECRET" {
		t.Fatalf("secret changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(home, "stolen.txt")); err == nil {
		t.Fatal("a file left the folder")
	}

	// Inside: read-write as usual, an atomic save included.
	f, err := c.OpenFile("/sub/new.txt", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("draft"))
	f.Close()
	if err := c.PosixRename("/sub/new.txt", "/sub/dog.txt"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "sub", "dog.txt")); string(b) != "draft" {
		t.Fatalf("after the save: %q", b)
	}
	if err := c.Mkdir("/made"); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate("/sub/dog.txt", 2); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "sub", "dog.txt")); string(b) != "dr" {
		t.Fatalf("after truncate: %q", b)
	}
	if err := c.Chmod("/sub/dog.txt", 0o4755); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(shared, "sub", "dog.txt")); fi.Mode()&os.ModeSetuid != 0 {
		t.Fatal("set-uid bit set through a share")
	}
	if _, err := c.StatVFS("/"); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, c *sftp.Client, p string) string {
	t.Helper()
	f, err := c.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func TestShareFolderReadOnly(t *testing.T) {
	_, shared := sharedTree(t)
	c, logs := serveShareForTest(t, Share{Name: "ro", Dir: shared, ReadOnly: true})
	if b := readAll(t, c, "/cat.txt"); b != "meow" {
		t.Fatalf("read: %q", b)
	}
	if fi, err := c.Stat("/cat.txt"); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("stat: %v %v", err, fi.Mode())
	}
	if f, err := c.OpenFile("/cat.txt", os.O_WRONLY); err == nil {
		f.Close()
		t.Error("opened for writing")
	}
	if f, err := c.OpenFile("/new.txt", os.O_WRONLY|os.O_CREATE); err == nil {
		f.Close()
		t.Error("created a file")
	}
	for name, op := range map[string]func() error{
		"remove": func() error { return c.Remove("/cat.txt") },
		"rename": func() error { return c.PosixRename("/cat.txt", "/dog.txt") },
		"mkdir":  func() error { return c.Mkdir("/d") },
		"chmod":  func() error { return c.Chmod("/cat.txt", 0o777) },
	} {
		if err := op(); err == nil {
			t.Errorf("%s worked", name)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(shared, "cat.txt")); string(b) != "meow" {
		t.Fatalf("changed: %q", b)
	}
	if !strings.Contains(logs.String(), "read-only") {
		t.Errorf("refusals not logged:\n%s", logs)
	}
}

func TestShareFiles(t *testing.T) {
	home, shared := sharedTree(t)
	notes := filepath.Join(home, "notes.txt")
	os.WriteFile(notes, []byte("line 1\n"), 0o644)
	other := filepath.Join(shared, "notes.txt") // the same base name
	os.WriteFile(other, []byte("other\n"), 0o644)
	c, logs := serveShareForTest(t, Share{Name: "alice's files", Files: []string{notes, other}})
	fis, err := c.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	if len(fis) != 2 || fis[0].Name() != "notes.txt" || fis[1].Name() != "notes (2).txt" {
		t.Fatalf("listing: %v", fis)
	}
	f, err := c.OpenFile("/notes.txt", os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	f.Seek(7, io.SeekStart)
	f.Write([]byte("line 2\n"))
	f.Close()
	if b, _ := os.ReadFile(notes); string(b) != "line 1\nline 2\n" {
		t.Fatalf("after the write: %q", b)
	}
	for _, p := range []string{"/secret.txt", "/Pictures/cat.txt", "/../secret.txt", "/new.txt"} {
		if _, err := c.Stat(p); err == nil {
			t.Errorf("stat %s worked", p)
		}
		if f, err := c.OpenFile(p, os.O_RDWR|os.O_CREATE); err == nil {
			f.Close()
			t.Errorf("opened %s", p)
		}
	}
	if err := c.Remove("/notes.txt"); err == nil {
		t.Error("removed a shared file")
	}
	if err := c.PosixRename("/notes.txt", "/x.txt"); err == nil {
		t.Error("renamed a shared file")
	}
	if _, err := os.Stat(filepath.Join(home, "new.txt")); err == nil {
		t.Fatal("created a file beside the shared ones")
	}
	// The file replaced by a symlink to the secret after it was chosen.
	os.Remove(notes)
	os.Symlink(filepath.Join(home, "secret.txt"), notes)
	if f, err := c.Open("/notes.txt"); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		t.Fatalf("read the swapped file: %q", b)
	}
	if !strings.Contains(logs.String(), "replaced") {
		t.Errorf("the swap was not logged:\n%s", logs)
	}
	if _, err := newShareFS(Share{Name: "x", Files: []string{filepath.Join(shared, "fifo")}}, slog.Default()); err == nil {
		t.Error("shared a FIFO")
	}
	if err := errors.Unwrap(nil); err != nil {
		t.Fatal(err)
	}
}
