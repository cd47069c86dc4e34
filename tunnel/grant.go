package tunnel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KnownHostsLine is the known_hosts line that pins key for host:port.
func KnownHostsLine(host string, port int, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))}, key)
}

// OpenSSHCommand is the stock OpenSSH command line a requester without
// eBrainPool runs for a manual grant.
func OpenSSHCommand(host string, port int, knownHostsFile, command string) string {
	return fmt.Sprintf("ssh -X -p %d -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes %s@%s %s",
		port, ShellJoin([]string{knownHostsFile}), GuestUser, host, command)
}

// ParseAuthorizedKey parses one authorized_keys-format public key line.
func ParseAuthorizedKey(line string) (ssh.PublicKey, error) {
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil, fmt.Errorf("parsing authorized key: %w", err)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("parsing authorized key: exactly one key expected")
	}
	return k, nil
}

// ReadAuthorizedKeyFile reads a single public key from a file.
func ReadAuthorizedKeyFile(path string) (ssh.PublicKey, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	k, err := ParseAuthorizedKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteKnownHosts writes a known_hosts file holding line (mode 0600).
func WriteKnownHosts(path, line string) error {
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing known hosts %s: %w", path, err)
	}
	return nil
}
