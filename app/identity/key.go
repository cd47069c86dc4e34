package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Identity is a user's Ed25519 key pair.
type Identity struct {
	priv   ed25519.PrivateKey
	signer ssh.Signer
}

// LoadOrCreate reads the OpenSSH private key at path, creating a new Ed25519
// key there (mode 0600, parent directories 0700) when the file does not exist.
// comment is stored in a newly created key file. A key file readable by group
// or others is refused, as OpenSSH does.
func LoadOrCreate(path, comment string) (*Identity, error) {
	id, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := create(path, comment); err != nil {
		return nil, err
	}
	return Load(path)
}

// Load reads an existing OpenSSH Ed25519 private key from path.
func Load(path string) (*Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("loading identity key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("loading identity key %s: permissions %04o are too open, want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading identity key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parsing identity key %s: %w", path, err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *k
	case ed25519.PrivateKey:
		priv = k
	default:
		return nil, fmt.Errorf("parsing identity key %s: key type %T is not Ed25519", path, raw)
	}
	return fromPrivate(priv)
}

// FromPrivateKey wraps an existing Ed25519 private key.
func FromPrivateKey(priv ed25519.PrivateKey) (*Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity key: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return fromPrivate(priv)
}

func fromPrivate(priv ed25519.PrivateKey) (*Identity, error) {
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return &Identity{priv: priv, signer: signer}, nil
}

// create writes a new key to path without ever replacing an existing file:
// the key is written to a temporary file and hard-linked into place, so a
// concurrent creator's key wins and ours is discarded.
func create(path, comment string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating identity key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return fmt.Errorf("encoding identity key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating identity key directory: %w", err)
	}
	tmp, err := writeTemp(dir, filepath.Base(path), pem.EncodeToMemory(block))
	if err != nil {
		return fmt.Errorf("writing identity key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("installing identity key %s: %w", path, err)
	}
	return syncDir(dir)
}

// Signer returns an ssh.Signer for the key.
func (id *Identity) Signer() ssh.Signer { return id.signer }

// PublicKey returns the public half of the key.
func (id *Identity) PublicKey() ssh.PublicKey { return id.signer.PublicKey() }

// PrivateKey returns the Ed25519 private key.
func (id *Identity) PrivateKey() ed25519.PrivateKey { return id.priv }

// Fingerprint returns the SHA-256 fingerprint of the public key.
func (id *Identity) Fingerprint() Fingerprint { return FingerprintOf(id.PublicKey()) }
