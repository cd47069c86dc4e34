package identity

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// fingerprintPrefix is the algorithm tag OpenSSH puts in front of a SHA-256
// fingerprint.
const fingerprintPrefix = "SHA256:"

// FingerprintLen is the exact length of a valid fingerprint string:
// "SHA256:" followed by 43 characters of unpadded standard base64.
const FingerprintLen = len(fingerprintPrefix) + 43

// ErrInvalidFingerprint is returned when a string is not a SHA-256
// fingerprint in OpenSSH format.
var ErrInvalidFingerprint = errors.New("invalid fingerprint")

// Fingerprint is the OpenSSH SHA-256 fingerprint of a public key, for example
// "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".
type Fingerprint string

// FingerprintOf returns the fingerprint of key.
func FingerprintOf(key ssh.PublicKey) Fingerprint {
	return Fingerprint(ssh.FingerprintSHA256(key))
}

// ParseFingerprint checks that s is exactly a SHA-256 fingerprint in OpenSSH
// format and returns it.
func ParseFingerprint(s string) (Fingerprint, error) {
	if _, err := Fingerprint(s).hash(); err != nil {
		return "", err
	}
	return Fingerprint(s), nil
}

// hash decodes the 32-byte SHA-256 digest from f.
func (f Fingerprint) hash() ([]byte, error) {
	s := string(f)
	if len(s) != FingerprintLen || !strings.HasPrefix(s, fingerprintPrefix) {
		return nil, fmt.Errorf("%w: want %q and 43 base64 characters, got %d bytes", ErrInvalidFingerprint, fingerprintPrefix, len(s))
	}
	h, err := base64.RawStdEncoding.Strict().DecodeString(s[len(fingerprintPrefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidFingerprint, err)
	}
	if len(h) != sha256.Size {
		return nil, fmt.Errorf("%w: digest is %d bytes, want %d", ErrInvalidFingerprint, len(h), sha256.Size)
	}
	return h, nil
}

// Valid reports whether f is a well-formed fingerprint.
func (f Fingerprint) Valid() bool {
	_, err := f.hash()
	return err == nil
}

// String returns the fingerprint in OpenSSH format.
func (f Fingerprint) String() string { return string(f) }

// Short returns a form of the fingerprint that people can compare aloud:
// the first 80 bits of the digest as four groups of four base32 characters,
// for example "K3QX-7YBD-M2PA-TQ5E". It returns "" for an invalid fingerprint.
func (f Fingerprint) Short() string {
	h, err := f.hash()
	if err != nil {
		return ""
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:10])
	return enc[0:4] + "-" + enc[4:8] + "-" + enc[8:12] + "-" + enc[12:16]
}
