package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// PeersFile is the path of the peers added by address.
func (d Dirs) PeersFile() string { return filepath.Join(d.State, "added_peers.json") }

// peersFileVersion is the format version of PeersFile.
const peersFileVersion = 1

// AddedPeer is a peer the user added by address (`ebrainpool peer add`,
// "Add peer by address…", --peer): where to reach it and the key the user
// confirmed for it there.
type AddedPeer struct {
	// Address is HOST:PORT as JoinPeerAddress writes it (a host name, an
	// IPv4 address or an IPv6 address in brackets, with its zone for a
	// link-local one); the host name is resolved at each connect.
	Address     string    `json:"address"`
	Fingerprint string    `json:"fingerprint"`
	Name        string    `json:"name"`
	Added       time.Time `json:"added"`
	// LastSeen is the last successful connect (zero: never since added).
	LastSeen time.Time `json:"last_seen"`
}

type peersFile struct {
	Version int         `json:"version"`
	Peers   []AddedPeer `json:"peers"`
}

// LoadPeers reads the added peers (none when the file does not exist).
func LoadPeers(path string) ([]AddedPeer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the added peers: %w", err)
	}
	var f peersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): fix or delete it (the peers added by address are then forgotten)", path, err)
	}
	if f.Version != peersFileVersion {
		return nil, fmt.Errorf("%s: unsupported version %d (written by a newer eBrainPool?)", path, f.Version)
	}
	for _, p := range f.Peers {
		if _, _, err := SplitPeerAddress(p.Address); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return f.Peers, nil
}

// SavePeers writes the added peers atomically (0600).
func SavePeers(path string, peers []AddedPeer) error {
	if peers == nil {
		peers = []AddedPeer{}
	}
	b, err := json.MarshalIndent(peersFile{Version: peersFileVersion, Peers: peers}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving the added peers: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the added peers: %w", err)
	}
	return nil
}

// SplitPeerAddress reads a peer's address as a person types it: HOST or
// HOST:PORT, where HOST is a host name, an IPv4 address or an IPv6
// address (in brackets when a port follows; a link-local one with its
// zone, "[fe80::1%eth0]:42331"). Without a port it is DefaultControlPort.
func SplitPeerAddress(s string) (host string, port int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", 0, errors.New("no peer address given")
	}
	host, portText := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			if strings.HasSuffix(s, "]") { // [v6] without a port
				h, p = s[1:len(s)-1], ""
			} else {
				return "", 0, fmt.Errorf("peer address %q: %w", s, err)
			}
		}
		host, portText = h, p
		if _, err := netip.ParseAddr(host); err != nil {
			return "", 0, fmt.Errorf("peer address %q: only an IPv6 address goes in brackets: %w", s, err)
		}
	case strings.Count(s, ":") > 1: // a bare IPv6 address, no port
		if _, err := netip.ParseAddr(s); err != nil {
			return "", 0, fmt.Errorf("peer address %q: not an IPv6 address (write [ADDRESS]:PORT to give a port): %w", s, err)
		}
	case strings.Contains(s, ":"):
		host, portText, _ = strings.Cut(s, ":")
	}
	port = DefaultControlPort
	if portText != "" {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("peer address %q: the port must be a number from 1 to 65535", s)
		}
		port = n
	}
	if host == "" {
		return "", 0, fmt.Errorf("peer address %q: no host", s)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return "", 0, fmt.Errorf("peer address %q: %q is neither an IP address nor a host name", s, host)
	}
	return host, port, nil
}

// JoinPeerAddress is the canonical HOST:PORT of SplitPeerAddress's parts
// (what net.Dial takes, brackets and zone included).
func JoinPeerAddress(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// NormalizePeerAddress is SplitPeerAddress then JoinPeerAddress.
func NormalizePeerAddress(s string) (string, error) {
	h, p, err := SplitPeerAddress(s)
	if err != nil {
		return "", err
	}
	return JoinPeerAddress(h, p), nil
}

// validHostName accepts DNS names: labels of letters, digits, '-' and
// '_', 1 to 63 bytes each, 253 in all, an optional final dot.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
