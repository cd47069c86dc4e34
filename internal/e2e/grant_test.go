package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/internal/testenv"
	"github.com/ebrainpool/ebrainpool/tunnel"
	"golang.org/x/crypto/ssh"
)

// requesterKey writes an ed25519 key pair for a requester with only OpenSSH.
func requesterKey(t testing.TB) (priv, pub string, signer ssh.Signer) {
	t.Helper()
	dir, _ := os.MkdirTemp("", "ebp-key-")
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(k, "requester")
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "id"), filepath.Join(dir, "id.pub")
	os.WriteFile(priv, pem.EncodeToMemory(block), 0o600)
	signer, _ = ssh.NewSignerFromKey(k)
	os.WriteFile(pub, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	return priv, pub, signer
}

func TestGrantForStockOpenSSH(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ssh", "xlogo", "xwininfo")
	host := testenv.NewUser(t, binary, true)
	x := testenv.StartXvfb(t, 0, 0)
	priv, pub, signer := requesterKey(t)
	peer := string(identity.FingerprintOf(signer.PublicKey()))

	grant := host.Command(t.Context(), "grant", "--key", pub, "--app", "xlogo", "--listen", "127.0.0.1")
	out, _ := grant.StdoutPipe()
	var stderr strings.Builder
	grant.Stderr = &stderr
	if err := grant.Start(); err != nil {
		t.Fatal(err)
	}
	defer grant.Process.Kill()
	sc := bufio.NewScanner(out)
	var lines []string
	for len(lines) < 4 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 4 || !strings.HasPrefix(lines[3], "ssh -X -p ") {
		t.Fatalf("grant printed %q; stderr: %s", lines, stderr.String())
	}
	known := filepath.Join(t.TempDir(), "ebrainpool_known_hosts")
	os.WriteFile(known, []byte(lines[1]+"\n"), 0o600)
	port := strings.Fields(lines[3])[3]

	// Exactly what the printed command does, plus the key to use.
	ssh := x.Command("ssh", "-X", "-p", port, "-i", priv, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile="+known,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "guest@127.0.0.1", "xlogo")
	var sshOut strings.Builder
	ssh.Stdout, ssh.Stderr = &sshOut, &sshOut
	if err := ssh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ssh output:\n%s\ngrant stderr:\n%s", sshOut.String(), stderr.String())
		}
	})
	took := x.WaitWindow(t, "xlogo", true, 20*time.Second)
	t.Logf("stock ssh -X: window mapped %s after connecting", took.Round(time.Millisecond))
	start, _ := host.SubIDs(t)
	if len(xlogoPids(start+1000)) != 1 {
		t.Fatal("xlogo does not run as the guest of the host user's sandbox")
	}
	// A second connection is refused: the grant serves one session.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, _ := c.Read(make([]byte, 64)); n > 0 {
			t.Error("a second connection got an SSH banner")
		}
		c.Close()
	}
	// Ending the session closes the window and the grant; the sandbox stops.
	ssh.Process.Signal(syscall.SIGTERM)
	ssh.Wait()
	x.WaitWindow(t, "xlogo", false, 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- grant.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("grant: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("grant still runs after the session ended")
	}
	waitGone(t, start+1000)
	if st := containerState(t, host, peer); st != "STOPPED" {
		t.Fatalf("sandbox after the grant: %s", st)
	}
}

func containerState(t *testing.T, u *testenv.User, peer string) string {
	r := u.MustRun(t, "sandbox", "list")
	for _, line := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == peer {
			return f[2]
		}
	}
	return "missing"
}

// stockSSHD prepares OpenSSH's sshd inside the peer's sandbox (config and
// keys in the guest's home) and returns a Handoff that starts `sshd -i`
// through attach with the socket on stdin/stdout, as the endpoint is, and
// the sshd host key.
func stockSSHD(t testing.TB, u *testenv.User, peer string, client ssh.PublicKey) (tunnel.Handoff, ssh.PublicKey) {
	t.Helper()
	script := fmt.Sprintf(`set -e
mkdir -p ~/.ssh ~/sshd
ssh-keygen -q -t ed25519 -N '' -f ~/sshd/host_key <<< y >/dev/null 2>&1 || true
echo '%s' > ~/.ssh/authorized_keys
printf 'HostKey /home/guest/sshd/host_key\nAuthorizedKeysFile /home/guest/.ssh/authorized_keys\nUsePAM no\nStrictModes no\nX11Forwarding yes\nX11UseLocalhost yes\nPidFile none\nLogLevel ERROR\n' > ~/sshd/config
cat ~/sshd/host_key.pub`, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(client))))
	r := u.MustRun(t, "sandbox", "exec", peer, "--", "/bin/bash", "-c", script)
	hk, err := tunnel.ParseAuthorizedKey(r.Stdout)
	if err != nil {
		t.Fatalf("sshd host key: %v (%q)", err, r.Stdout)
	}
	h := tunnel.HandoffFunc(func(ctx context.Context, conn *net.TCPConn) error {
		f, err := conn.File()
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := u.Command(ctx, "sandbox", "exec", peer, "--", "/usr/sbin/sshd", "-i", "-e", "-f", "/home/guest/sshd/config")
		cmd.Stdin, cmd.Stdout = f, f
		return cmd.Run()
	})
	return h, hk
}

func TestGoClientAgainstStockSSHDInSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "sshd", "ssh-keygen", "xlogo", "xauth")
	host := testenv.NewUser(t, binary, true)
	x := testenv.StartXvfb(t, 0, 0)
	_, _, signer := requesterKey(t)
	peer := "stock-sshd"
	host.MustRun(t, "sandbox", "start", peer)
	handoff, hostKey := stockSSHD(t, host, peer, signer.PublicKey())
	fwd, err := tunnel.OpenForward(t.Context(), tunnel.ForwardConfig{ListenIP: net.IPv4(127, 0, 0, 1), AllowFrom: net.IPv4(127, 0, 0, 1), Handoff: handoff})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out strings.Builder
	go func() {
		_, err := tunnel.RunApp(ctx, tunnel.ClientConfig{Addr: "127.0.0.1:" + strconv.Itoa(fwd.Addr().Port), HostKey: hostKey, Identity: signer,
			Command: "xlogo", Display: x.Display, XAuthority: x.XAuthority, Stdout: &out, Stderr: &out})
		done <- err
	}()
	took := x.WaitWindow(t, "xlogo", true, 20*time.Second)
	t.Logf("Go client against sshd -i in the sandbox: window mapped after %s", took.Round(time.Millisecond))
	start, _ := host.SubIDs(t)
	if len(xlogoPids(start+1000)) != 1 {
		t.Fatal("xlogo does not run in the sandbox")
	}
	cancel()
	<-done
	x.WaitWindow(t, "xlogo", false, 10*time.Second)
	_ = exec.Command
}
