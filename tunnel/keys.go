package tunnel

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

// maxKeyFile bounds the size of a key file we read.
const maxKeyFile = 64 << 10

// LoadOrCreateHostKey loads the OpenSSH-format private key at path, or
// creates an Ed25519 key there (mode 0600) if the file does not exist.
func LoadOrCreateHostKey(path string) (ssh.Signer, error) {
	b, err := readBounded(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("parsing host key %s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading host key %s: %w", path, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating host key: %w", err)
	}
	if err := WritePrivateKey(path, priv, "ebrainpool endpoint host key"); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// WritePrivateKey writes key in OpenSSH format to path with mode 0600,
// failing if the file exists.
func WritePrivateKey(path string, key ed25519.PrivateKey, comment string) error {
	blk, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return fmt.Errorf("encoding key for %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating key file: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(blk)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	return nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxKeyFile+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, err
	}
	if n > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFile)
	}
	return b[:n], nil
}
