package tunnel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestParseDisplay(t *testing.T) {
	tests := []struct {
		in      string
		want    Display
		wantErr bool
	}{
		{in: ":0", want: Display{Number: 0, Socket: "/tmp/.X11-unix/X0"}},
		{in: ":12.1", want: Display{Number: 12, Screen: 1, Socket: "/tmp/.X11-unix/X12"}},
		{in: "unix:3", want: Display{Number: 3, Socket: "/tmp/.X11-unix/X3"}},
		{in: "/run/user/1000/X:4", want: Display{Number: 4, Socket: "/run/user/1000/X"}},
		{in: "localhost:10.0", want: Display{Number: 10, Host: "localhost"}},
		{in: "192.0.2.7:1", want: Display{Number: 1, Host: "192.0.2.7"}},
		{in: "[::1]:2", want: Display{Number: 2, Host: "::1"}},
		{in: "nocolon", wantErr: true},
		{in: ":x", wantErr: true},
		{in: ":-1", wantErr: true},
		{in: "host::0", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDisplay(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestXauthorityMadeByXauth parses files written by the real xauth tool.
func TestXauthorityMadeByXauth(t *testing.T) {
	xauth := needBin(t, "xauth")
	host, _ := os.Hostname()
	path := filepath.Join(t.TempDir(), "xa")
	for _, args := range [][]string{
		{"add", ":7", ".", "00112233445566778899aabbccddeeff"},
		{"add", "127.0.0.1:9", ".", "ffeeddccbbaa99887766554433221100"},
		{"add", "192.0.2.1:3", ".", "0102030405060708090a0b0c0d0e0f10"},
	} {
		if out, err := exec.Command(xauth, append([]string{"-f", path}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("xauth %v: %v: %s", args, err, out)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ParseXauthority(f)
	if err != nil || len(entries) != 3 {
		t.Fatalf("ParseXauthority: %d entries, %v", len(entries), err)
	}
	tests := []struct {
		display string
		cookie  string
		found   bool
	}{
		{":7", "00112233445566778899aabbccddeeff", true},
		{"unix:7.0", "00112233445566778899aabbccddeeff", true},
		{":8", "", false},
		// xauth stores a loopback TCP display as FamilyLocal + hostname.
		{"localhost:9", "ffeeddccbbaa99887766554433221100", true},
		{"192.0.2.1:3", "0102030405060708090a0b0c0d0e0f10", true},
		{"192.0.2.2:3", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.display, func(t *testing.T) {
			d, err := ParseDisplay(tc.display)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := findCookie(entries, d, host)
			if ok != tc.found || hex.EncodeToString(got) != tc.cookie {
				t.Errorf("findCookie = %x, %v; want %s, %v", got, ok, tc.cookie, tc.found)
			}
		})
	}
	// Our writer round-trips, and xauth reads what we write.
	ours := filepath.Join(t.TempDir(), "ours")
	want := []XauthEntry{{Family: FamilyWild, Number: "10", Name: mitMagicCookie, Data: []byte{1, 2, 3, 4}}}
	if err := WriteXauthority(ours, want); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xauth, "-f", ours, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MIT-MAGIC-COOKIE-1  01020304") {
		t.Errorf("xauth list of our file: %v: %s", err, out)
	}
	if st, err := os.Stat(ours); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("xauthority mode: %v %v", st.Mode(), err)
	}
}

func TestParseXauthorityBounds(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		n    int
		bad  bool
	}{
		{"empty", nil, 0, false},
		{"truncated", []byte{0xff, 0xff, 0, 4, 'a'}, 0, true},
		{"oversized field", []byte{0xff, 0xff, 0xff, 0xff}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseXauthority(bytes.NewReader(tc.in))
			if (err != nil) != tc.bad || len(got) != tc.n {
				t.Errorf("got %d entries, %v", len(got), err)
			}
		})
	}
}

func TestXSetup(t *testing.T) {
	fake := []byte("0123456789abcdef")
	real := []byte("REALREALREALREAL")
	tests := []struct {
		name    string
		setup   *xSetup
		raw     []byte
		readErr bool
		authErr bool
	}{
		{name: "little endian", setup: &xSetup{order: 'l', major: 11, authName: mitMagicCookie, authData: fake}},
		{name: "big endian", setup: &xSetup{order: 'B', major: 11, authName: mitMagicCookie, authData: fake}},
		{name: "wrong cookie", setup: &xSetup{order: 'l', major: 11, authName: mitMagicCookie, authData: []byte("0123456789abcdeX")}, authErr: true},
		{name: "short cookie", setup: &xSetup{order: 'l', major: 11, authName: mitMagicCookie, authData: fake[:15]}, authErr: true},
		{name: "no auth", setup: &xSetup{order: 'l', major: 11}, authErr: true},
		{name: "other protocol", setup: &xSetup{order: 'l', major: 11, authName: "XDM-AUTHORIZATION-1", authData: fake}, authErr: true},
		{name: "bad byte order", raw: []byte{'x', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}, readErr: true},
		{name: "oversized auth", raw: []byte{'l', 0, 11, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0}, readErr: true},
		{name: "truncated", raw: []byte{'l', 0, 11, 0, 0, 0, 18, 0, 16, 0, 0, 0, 'M'}, readErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw
			if tc.setup != nil {
				raw = tc.setup.marshal()
			}
			s, err := readXSetup(bytes.NewReader(raw))
			if (err != nil) != tc.readErr {
				t.Fatalf("readXSetup: %v", err)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(s.marshal(), raw) {
				t.Errorf("marshal round trip differs")
			}
			err = s.checkAndReplace(fake, mitMagicCookie, real)
			if (err != nil) != tc.authErr {
				t.Fatalf("checkAndReplace: %v", err)
			}
			if err != nil {
				return
			}
			out, err := readXSetup(bytes.NewReader(s.marshal()))
			if err != nil || out.order != tc.setup.order || out.major != 11 || !bytes.Equal(out.authData, real) {
				t.Errorf("rewritten setup %+v, %v", out, err)
			}
		})
	}
}

func TestShellJoin(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"xlogo"}, "xlogo"},
		{[]string{"x11perf", "-prop"}, "x11perf -prop"},
		{[]string{"sh", "-c", "exit 3"}, "sh -c 'exit 3'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"a", ""}, "a ''"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := ShellJoin(tc.argv); got != tc.want {
				t.Errorf("ShellJoin(%q) = %q, want %q", tc.argv, got, tc.want)
			}
			out, err := exec.Command("sh", "-c", "printf '%s\\n' "+ShellJoin(tc.argv)).Output()
			if err != nil || string(out) != strings.Join(tc.argv, "\n")+"\n" {
				t.Errorf("sh splits %q into %q (%v)", ShellJoin(tc.argv), out, err)
			}
		})
	}
}

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "host_key")
	k1, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	if k1.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s", k1.PublicKey().Type())
	}
	k2, err := LoadOrCreateHostKey(path)
	if err != nil || !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Errorf("reloaded key differs: %v", err)
	}
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(keygen, "-y", "-f", path).Output()
		if err != nil || !strings.HasPrefix(string(out), "ssh-ed25519 ") {
			t.Errorf("ssh-keygen -y: %v %s", err, out)
		}
	}
	os.WriteFile(filepath.Join(filepath.Dir(path), "bad"), []byte("nope"), 0o600)
	if _, err := LoadOrCreateHostKey(filepath.Join(filepath.Dir(path), "bad")); err == nil {
		t.Error("a corrupt key file was accepted")
	}
}

func TestGrantStrings(t *testing.T) {
	k, err := LoadOrCreateHostKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	line := KnownHostsLine("192.0.2.5", 40022, k.PublicKey())
	if !strings.HasPrefix(line, "[192.0.2.5]:40022 ssh-ed25519 ") {
		t.Errorf("known hosts line %q", line)
	}
	cmd := OpenSSHCommand("192.0.2.5", 40022, "/tmp/kh", "xlogo")
	want := "ssh -X -p 40022 -o UserKnownHostsFile=/tmp/kh -o StrictHostKeyChecking=yes guest@192.0.2.5 xlogo"
	if cmd != want {
		t.Errorf("got %q, want %q", cmd, want)
	}
}

// TestForwardLifecycle checks the forward alone with an in-process handoff.
func TestForwardLifecycle(t *testing.T) {
	echo := HandoffFunc(func(ctx context.Context, c *net.TCPConn) error {
		b := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(b)
		c.Write(b[:n])
		return err
	})
	t.Run("one session then closed", func(t *testing.T) {
		f, err := OpenForward(context.Background(), ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: echo, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		b := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(b); err != nil || string(b) != "ping" {
			t.Fatalf("echo: %q %v", b, err)
		}
		c.Close()
		waitDone(t, f, 5*time.Second)
		if f.Err() != nil {
			t.Errorf("Err = %v", f.Err())
		}
		if c, err := net.Dial("tcp", f.Addr().String()); err == nil {
			c.Close()
			t.Error("listener still open after the session")
		}
	})
	t.Run("close cancels the session", func(t *testing.T) {
		var cancelled atomic.Bool
		block := HandoffFunc(func(ctx context.Context, c *net.TCPConn) error {
			<-ctx.Done()
			cancelled.Store(true)
			return ctx.Err()
		})
		f, err := OpenForward(context.Background(), ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: block, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(100 * time.Millisecond)
		f.Close()
		if !cancelled.Load() || !errors.Is(f.Err(), context.Canceled) {
			t.Errorf("after Close: cancelled=%v Err=%v", cancelled.Load(), f.Err())
		}
	})
	t.Run("close before a session", func(t *testing.T) {
		f, err := OpenForward(context.Background(), ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: echo, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !errors.Is(f.Err(), ErrForwardClosed) {
			t.Errorf("Err = %v, want ErrForwardClosed", f.Err())
		}
	})
	t.Run("bad config", func(t *testing.T) {
		if _, err := OpenForward(context.Background(), ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1)}); err == nil {
			t.Error("forward without AllowFrom/Handoff opened")
		}
	})
}
