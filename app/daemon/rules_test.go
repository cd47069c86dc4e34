package daemon

import (
	"strings"
	"testing"
)

// unblock and forget find the peer among the blocked or ruled ones, which
// need not be around: by fingerprint, short form, name or prefix.
func TestMatchPeer(t *testing.T) {
	peers := map[string]string{
		"SHA256:AAAAbobbobbobbob": "bob",
		"SHA256:BBBBcarolcarol":   "carol",
		"SHA256:BBBCcarl":         "Carl",
	}
	for _, tc := range []struct {
		q, want, err string
	}{
		{"SHA256:AAAAbobbobbobbob", "SHA256:AAAAbobbobbobbob", ""},
		{"bob", "SHA256:AAAAbobbobbobbob", ""},
		{"CARL", "SHA256:BBBCcarl", ""},
		{"AAAAb", "SHA256:AAAAbobbobbobbob", ""},
		{"BBB", "", "is not blocked"}, // too short for a prefix
		{"BBBB", "SHA256:BBBBcarolcarol", ""},
		{"SHA256:BBB", "", "matches 2 peers"},
		{"dave", "", `"dave" is not blocked`},
		{" ", "", "no peer given"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			got, err := matchPeer(tc.q, peers, "%q is not blocked")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("matchPeer(%q) = %q, %v; want an error with %q", tc.q, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("matchPeer(%q) = %q, %v; want %q", tc.q, got, err, tc.want)
			}
		})
	}
}
