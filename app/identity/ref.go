package identity

import (
	"fmt"
	"strings"
)

// shortLen is the number of base32 characters in a short fingerprint
// (80 bits of the digest), without its dashes.
const shortLen = 16

// base32Alphabet is the alphabet of the short form (RFC 4648 base32).
const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// KeyRef is a peer's key as a person gives it: its full fingerprint
// ("SHA256:" and 43 base64 characters) or its short form as `ebrainpool
// id` and Settings show it ("XXXX-XXXX-XXXX-XXXX"; case and dashes do not
// matter). The short form is 80 bits of the key's digest: it names a key
// without ambiguity among peers (a collision takes about 2^80 keys), but
// the key itself must be seen to know its full fingerprint, so a KeyRef is
// checked against a key (Matches), not turned into a Fingerprint.
type KeyRef struct {
	full  Fingerprint // set for a full fingerprint
	short string      // the short form, dashes included; always set
}

// ParseKeyRef reads a full fingerprint or its short form.
func ParseKeyRef(s string) (KeyRef, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, fingerprintPrefix) {
		f, err := ParseFingerprint(s)
		if err != nil {
			return KeyRef{}, err
		}
		return KeyRef{full: f, short: f.Short()}, nil
	}
	short, err := normalizeShort(s)
	if err != nil {
		return KeyRef{}, err
	}
	return KeyRef{short: short}, nil
}

// RefOf is the KeyRef of a full fingerprint.
func RefOf(f Fingerprint) KeyRef { return KeyRef{full: f, short: f.Short()} }

// normalizeShort checks s is a short fingerprint (16 base32 characters,
// dashes anywhere, any case) and returns it as Short writes it.
func normalizeShort(s string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ':
			continue
		case strings.ContainsRune(base32Alphabet, r):
			b.WriteRune(r)
		default:
			return "", fmt.Errorf("%w: %q is neither %q and 43 base64 characters nor the short form XXXX-XXXX-XXXX-XXXX (letters A-Z and digits 2-7)", ErrInvalidFingerprint, s, fingerprintPrefix)
		}
	}
	c := b.String()
	if len(c) != shortLen {
		return "", fmt.Errorf("%w: the short form has 16 characters (XXXX-XXXX-XXXX-XXXX), %q has %d", ErrInvalidFingerprint, s, len(c))
	}
	return c[0:4] + "-" + c[4:8] + "-" + c[8:12] + "-" + c[12:16], nil
}

// IsZero reports whether r names no key.
func (r KeyRef) IsZero() bool { return r.short == "" }

// Full is the full fingerprint when r was given as one, else "".
func (r KeyRef) Full() Fingerprint { return r.full }

// Short is the short form of the key r names.
func (r KeyRef) Short() string { return r.short }

// Matches reports whether f is the key r names.
func (r KeyRef) Matches(f Fingerprint) bool {
	if r.full != "" {
		return f == r.full
	}
	return r.short != "" && f.Short() == r.short
}

// String is the form r was given in: the full fingerprint, or the short
// form.
func (r KeyRef) String() string {
	if r.full != "" {
		return string(r.full)
	}
	return r.short
}
