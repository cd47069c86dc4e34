package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

const (
	// ServiceType is the DNS-SD service type every instance publishes.
	ServiceType = "_ebrainpool._tcp"
	// ProtocolVersion is the version announced in the TXT record.
	ProtocolVersion = 1
	// MaxNameLen bounds the display name in bytes of UTF-8: one DNS label.
	MaxNameLen = 63
	// maxVersion bounds the announced version.
	maxVersion = 999
	// maxTXTEntry is the DNS limit for one TXT string.
	maxTXTEntry = 255
	// maxTXTEntries bounds how many TXT strings a record may have.
	maxTXTEntries = 32
)

// ErrMalformedTXT is wrapped by every TXT decoding error.
var ErrMalformedTXT = errors.New("malformed TXT record")

// ErrInvalidName is returned for a display name that cannot be announced.
var ErrInvalidName = errors.New("invalid display name")

// Announcement is what an instance publishes about itself.
type Announcement struct {
	Version     int
	Fingerprint identity.Fingerprint
	Name        string
}

// ValidateName checks a display name: 1 to MaxNameLen bytes of valid UTF-8
// without control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character %U", ErrInvalidName, r)
		}
	}
	return nil
}

// EncodeTXT returns the TXT strings for a, after validating every value.
// A zero Version means ProtocolVersion.
func EncodeTXT(a Announcement) ([][]byte, error) {
	if a.Version == 0 {
		a.Version = ProtocolVersion
	}
	if a.Version < 1 || a.Version > maxVersion {
		return nil, fmt.Errorf("encoding TXT: version %d out of range", a.Version)
	}
	if _, err := identity.ParseFingerprint(string(a.Fingerprint)); err != nil {
		return nil, fmt.Errorf("encoding TXT: %w", err)
	}
	if err := ValidateName(a.Name); err != nil {
		return nil, fmt.Errorf("encoding TXT: %w", err)
	}
	return [][]byte{
		[]byte("v=" + strconv.Itoa(a.Version)),
		[]byte("fp=" + string(a.Fingerprint)),
		[]byte("name=" + a.Name),
	}, nil
}

// DecodeTXT parses and validates a TXT record. Keys are case-insensitive,
// unknown keys are ignored, and v, fp and name must each appear exactly once
// with a valid value; anything else is an error wrapping ErrMalformedTXT.
func DecodeTXT(txt [][]byte) (Announcement, error) {
	var a Announcement
	if len(txt) > maxTXTEntries {
		return a, fmt.Errorf("%w: %d strings, at most %d", ErrMalformedTXT, len(txt), maxTXTEntries)
	}
	seen := map[string]bool{}
	for _, entry := range txt {
		if len(entry) == 0 {
			continue // an empty TXT record is a single empty string
		}
		if len(entry) > maxTXTEntry {
			return a, fmt.Errorf("%w: string of %d bytes, at most %d", ErrMalformedTXT, len(entry), maxTXTEntry)
		}
		k, v, hasValue := bytes.Cut(entry, []byte("="))
		key := string(bytes.ToLower(k))
		if key == "" {
			return a, fmt.Errorf("%w: empty key", ErrMalformedTXT)
		}
		if key != "v" && key != "fp" && key != "name" {
			continue
		}
		if !hasValue {
			return a, fmt.Errorf("%w: %s has no value", ErrMalformedTXT, key)
		}
		if seen[key] {
			return a, fmt.Errorf("%w: %s given twice", ErrMalformedTXT, key)
		}
		seen[key] = true
		val := string(v)
		switch key {
		case "v":
			n, err := parseVersion(val)
			if err != nil {
				return a, err
			}
			a.Version = n
		case "fp":
			fp, err := identity.ParseFingerprint(val)
			if err != nil {
				return a, fmt.Errorf("%w: fp: %v", ErrMalformedTXT, err)
			}
			a.Fingerprint = fp
		case "name":
			if err := ValidateName(val); err != nil {
				return a, fmt.Errorf("%w: name: %v", ErrMalformedTXT, err)
			}
			a.Name = val
		}
	}
	for _, key := range []string{"v", "fp", "name"} {
		if !seen[key] {
			return a, fmt.Errorf("%w: %s missing", ErrMalformedTXT, key)
		}
	}
	return a, nil
}

func parseVersion(s string) (int, error) {
	if s == "" || len(s) > 3 || s[0] == '0' {
		return 0, fmt.Errorf("%w: v=%.8q", ErrMalformedTXT, s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: v=%.8q", ErrMalformedTXT, s)
		}
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}
