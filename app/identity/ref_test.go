package identity

import (
	"errors"
	"strings"
	"testing"
)

func newFingerprint(t *testing.T) Fingerprint { return FingerprintOf(newKey(t)) }

// The short form people read aloud (what `ebrainpool id` prints on its
// second line) names a key wherever a fingerprint does.
func TestParseKeyRef(t *testing.T) {
	fp, other := newFingerprint(t), newFingerprint(t)
	short := fp.Short()
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"the full fingerprint", string(fp), true},
		{"the short form as id shows it", short, true},
		{"lower case", strings.ToLower(short), true},
		{"without dashes", strings.ReplaceAll(short, "-", ""), true},
		{"with spaces around", "  " + short + "\n", true},
		{"too short", short[:14], false},
		{"too long", short + "A", false},
		{"not base32 (0, 1, 8 and 9 are not used)", "0189-" + short[5:], false},
		{"a broken full fingerprint", string(fp)[:20], false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseKeyRef(tt.in)
			if !tt.ok {
				if err == nil || !errors.Is(err, ErrInvalidFingerprint) {
					t.Fatalf("ParseKeyRef(%q) = %v, %v; want ErrInvalidFingerprint", tt.in, r, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeyRef(%q): %v", tt.in, err)
			}
			if !r.Matches(fp) || r.Matches(other) {
				t.Errorf("ParseKeyRef(%q): Matches(its key) = %v, Matches(another) = %v", tt.in, r.Matches(fp), r.Matches(other))
			}
			if r.Short() != short {
				t.Errorf("Short() = %q, want %q", r.Short(), short)
			}
		})
	}
	if r, _ := ParseKeyRef(short); r.Full() != "" || r.String() != short {
		t.Errorf("a short ref: Full() = %q, String() = %q", r.Full(), r.String())
	}
	if r := RefOf(fp); r.Full() != fp || !r.Matches(fp) || r.IsZero() {
		t.Errorf("RefOf: %+v", r)
	}
	if !(KeyRef{}).IsZero() || (KeyRef{}).Matches(fp) {
		t.Error("the zero KeyRef matches a key")
	}
}
