package tunnel

import (
	"context"
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

// GrantConfig configures a manual grant: a forward plus what the
// requester needs to reach it with stock OpenSSH.
type GrantConfig struct {
	Forward ForwardConfig
	// HostKey is the endpoint's public host key, to pin.
	HostKey ssh.PublicKey
	// Command is the approved command's argv.
	Command []string
	// KnownHostsFile is the path the requester will store the pin line
	// in (shown in the command; default "ebrainpool_known_hosts").
	KnownHostsFile string
}

// Grant is an open manual grant.
type Grant struct {
	*Forward
	// KnownHosts is the line to put in KnownHostsFile.
	KnownHosts string
	// SSHCommand is the command the requester runs.
	SSHCommand string
}

// OpenGrant opens the forward and builds the pin line and ssh command.
func OpenGrant(ctx context.Context, cfg GrantConfig) (*Grant, error) {
	if cfg.HostKey == nil || len(cfg.Command) == 0 {
		return nil, errors.New("grant: HostKey and Command are required")
	}
	if cfg.KnownHostsFile == "" {
		cfg.KnownHostsFile = "ebrainpool_known_hosts"
	}
	f, err := OpenForward(ctx, cfg.Forward)
	if err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	host := f.Addr().IP.String()
	port := f.Addr().Port
	return &Grant{
		Forward:    f,
		KnownHosts: KnownHostsLine(host, port, cfg.HostKey),
		SSHCommand: OpenSSHCommand(host, port, cfg.KnownHostsFile, ShellJoin(cfg.Command)),
	}, nil
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
