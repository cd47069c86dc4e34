package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// PinFileName is the name of the pin store file inside the state directory.
const PinFileName = "known_peers.json"

// pinFileVersion is the format version written to the pin store file.
const pinFileVersion = 1

var (
	// ErrKeyChanged means a pinned peer presented a key other than the one
	// pinned for it. The pin is left untouched.
	ErrKeyChanged = errors.New("peer key changed since it was pinned")
	// ErrFingerprintMismatch means a peer not pinned yet presented a key
	// whose fingerprint differs from the one it announced.
	ErrFingerprintMismatch = errors.New("peer key does not match its announced fingerprint")
	// ErrCorruptPinStore means the pin store file could not be understood.
	ErrCorruptPinStore = errors.New("pin store is corrupt")
)

// Status says how a peer relates to the pins known before a contact.
type Status int

const (
	// StatusKnown: the key was already pinned.
	StatusKnown Status = iota
	// StatusNew: first contact; the key has just been pinned.
	StatusNew
	// StatusNewNameClash: first contact with a key that announces the name
	// of another pinned peer. It was pinned as a different, untrusted peer.
	StatusNewNameClash
)

func (s Status) String() string {
	switch s {
	case StatusKnown:
		return "known"
	case StatusNew:
		return "new"
	case StatusNewNameClash:
		return "new (name clash)"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Pin is one known peer.
type Pin struct {
	Fingerprint Fingerprint `json:"fingerprint"`
	// PublicKey is the key in authorized_keys format.
	PublicKey string    `json:"public_key"`
	Name      string    `json:"name"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// NameClash is set when the peer was first seen announcing a name that
	// another pinned peer already used.
	NameClash bool `json:"name_clash,omitempty"`
	// Trusted is set only by an explicit user decision (SetTrusted).
	Trusted bool `json:"trusted"`
}

type pinFile struct {
	Version int   `json:"version"`
	Peers   []Pin `json:"peers"`
}

// PinStore is the set of peers pinned on first contact, kept in a JSON file
// that is replaced atomically on every change. It is safe for concurrent use.
type PinStore struct {
	path string
	now  func() time.Time

	mu   sync.Mutex
	pins map[Fingerprint]Pin
}

// OpenPinStore loads the pin store in stateDir (created 0700 if missing).
// A missing file is an empty store; an unreadable or corrupt file is an
// error wrapping ErrCorruptPinStore, and the file is left as it is.
func OpenPinStore(stateDir string) (*PinStore, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("opening pin store: %w", err)
	}
	s := &PinStore{
		path: filepath.Join(stateDir, PinFileName),
		now:  time.Now,
		pins: make(map[Fingerprint]Pin),
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening pin store: %w", err)
	}
	pins, err := decodePins(data)
	if err != nil {
		return nil, fmt.Errorf("opening pin store %s: %w", s.path, err)
	}
	s.pins = pins
	return s, nil
}

func decodePins(data []byte) (map[Fingerprint]Pin, error) {
	var f pinFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptPinStore, err)
	}
	if f.Version != pinFileVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorruptPinStore, f.Version)
	}
	pins := make(map[Fingerprint]Pin, len(f.Peers))
	for i, p := range f.Peers {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("%w: peer %d: public key: %v", ErrCorruptPinStore, i, err)
		}
		if FingerprintOf(key) != p.Fingerprint {
			return nil, fmt.Errorf("%w: peer %d: fingerprint %q does not match its key", ErrCorruptPinStore, i, p.Fingerprint)
		}
		if _, dup := pins[p.Fingerprint]; dup {
			return nil, fmt.Errorf("%w: peer %s listed twice", ErrCorruptPinStore, p.Fingerprint)
		}
		pins[p.Fingerprint] = p
	}
	return pins, nil
}

// Path returns the file the store is kept in.
func (s *PinStore) Path() string { return s.path }

// Lookup returns the pin for fp.
func (s *PinStore) Lookup(fp Fingerprint) (Pin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[fp]
	return p, ok
}

// Pins returns all pins sorted by name, then fingerprint.
func (s *PinStore) Pins() []Pin {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.pins))
	slices.SortFunc(out, func(a, b Pin) int {
		if a.Name != b.Name {
			return compare(a.Name, b.Name)
		}
		return compare(string(a.Fingerprint), string(b.Fingerprint))
	})
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Verify checks the key a peer presented against the fingerprint it was
// selected by. For a pinned fingerprint the key must be the pinned key,
// otherwise ErrKeyChanged; for an unpinned one the key's fingerprint must be
// the expected one, otherwise ErrFingerprintMismatch. Verify never changes
// the store.
func (s *PinStore) Verify(expected Fingerprint, presented ssh.PublicKey) error {
	got := FingerprintOf(presented)
	s.mu.Lock()
	p, pinned := s.pins[expected]
	s.mu.Unlock()
	if pinned {
		if got != expected || p.PublicKey != authorizedKey(presented) {
			return fmt.Errorf("peer %q pinned as %s presented %s: %w", p.Name, expected, got, ErrKeyChanged)
		}
		return nil
	}
	if got != expected {
		return fmt.Errorf("peer announced %s but presented %s: %w", expected, got, ErrFingerprintMismatch)
	}
	return nil
}

// Observe records contact with a peer presenting key under name: it pins a
// key seen for the first time (flagging a name already used by another
// pinned key) and refreshes name and last-seen time of a known one.
func (s *PinStore) Observe(name string, key ssh.PublicKey) (Pin, Status, error) {
	fp := FingerprintOf(key)
	now := s.now().UTC().Truncate(time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.pins)
	p, known := next[fp]
	status := StatusKnown
	if known {
		p.Name, p.LastSeen = name, now
	} else {
		status = StatusNew
		p = Pin{Fingerprint: fp, PublicKey: authorizedKey(key), Name: name, FirstSeen: now, LastSeen: now}
		for _, other := range s.pins {
			if other.Name == name {
				p.NameClash = true
				status = StatusNewNameClash
				break
			}
		}
	}
	next[fp] = p
	if err := s.save(next); err != nil {
		return Pin{}, 0, fmt.Errorf("pinning peer %q (%s): %w", name, fp, err)
	}
	return p, status, nil
}

// Contact is Verify followed by Observe: the check made when a peer selected
// by its announced fingerprint completes a handshake with key.
func (s *PinStore) Contact(expected Fingerprint, name string, key ssh.PublicKey) (Pin, Status, error) {
	if err := s.Verify(expected, key); err != nil {
		return Pin{}, 0, err
	}
	return s.Observe(name, key)
}

// SetTrusted records the user's decision to trust (or stop trusting) fp.
func (s *PinStore) SetTrusted(fp Fingerprint, trusted bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[fp]
	if !ok {
		return fmt.Errorf("trusting %s: peer is not pinned", fp)
	}
	next := maps.Clone(s.pins)
	p.Trusted = trusted
	next[fp] = p
	if err := s.save(next); err != nil {
		return fmt.Errorf("trusting %s: %w", fp, err)
	}
	return nil
}

// Forget removes the pin for fp; it is the only way to let a peer be pinned
// again with another key.
func (s *PinStore) Forget(fp Fingerprint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pins[fp]; !ok {
		return nil
	}
	next := maps.Clone(s.pins)
	delete(next, fp)
	if err := s.save(next); err != nil {
		return fmt.Errorf("forgetting %s: %w", fp, err)
	}
	return nil
}

// save writes pins to the file and, on success, makes them current.
// The caller holds s.mu.
func (s *PinStore) save(pins map[Fingerprint]Pin) error {
	f := pinFile{Version: pinFileVersion, Peers: slices.Collect(maps.Values(pins))}
	slices.SortFunc(f.Peers, func(a, b Pin) int { return compare(string(a.Fingerprint), string(b.Fingerprint)) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding pin store: %w", err)
	}
	if err := writeFileAtomic(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("writing pin store %s: %w", s.path, err)
	}
	s.pins = pins
	return nil
}

func authorizedKey(k ssh.PublicKey) string {
	return string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(k)))
}
