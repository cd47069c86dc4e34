package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

const testFP = identity.Fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")

func txt(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, e := range s {
		out[i] = []byte(e)
	}
	return out
}

func TestEncodeDecodeTXT(t *testing.T) {
	tests := []struct {
		name string
		ann  Announcement
		ok   bool
	}{
		{"plain", Announcement{Fingerprint: testFP, Name: "Alice"}, true},
		{"unicode name", Announcement{Fingerprint: testFP, Name: "Zoë's Rechner – 会議室"}, true},
		{"63 bytes", Announcement{Fingerprint: testFP, Name: strings.Repeat("a", 63)}, true},
		{"name with =", Announcement{Fingerprint: testFP, Name: "a=b"}, true},
		{"64 bytes", Announcement{Fingerprint: testFP, Name: strings.Repeat("a", 64)}, false},
		{"empty name", Announcement{Fingerprint: testFP}, false},
		{"control char", Announcement{Fingerprint: testFP, Name: "a\nb"}, false},
		{"invalid utf8", Announcement{Fingerprint: testFP, Name: "a\xffb"}, false},
		{"bad fingerprint", Announcement{Fingerprint: "SHA256:short", Name: "A"}, false},
		{"version 0 means current", Announcement{Version: 0, Fingerprint: testFP, Name: "A"}, true},
		{"version too big", Announcement{Version: 1000, Fingerprint: testFP, Name: "A"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := EncodeTXT(tt.ann)
			if (err == nil) != tt.ok {
				t.Fatalf("EncodeTXT err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			got, err := DecodeTXT(rec)
			if err != nil {
				t.Fatalf("DecodeTXT(%q): %v", rec, err)
			}
			want := tt.ann
			if want.Version == 0 {
				want.Version = ProtocolVersion
			}
			if got != want {
				t.Errorf("round trip = %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecodeTXT(t *testing.T) {
	fp := "fp=" + string(testFP)
	tests := []struct {
		name string
		rec  [][]byte
		want Announcement // zero means malformed
	}{
		{"valid", txt("v=1", fp, "name=Bob"), Announcement{1, testFP, "Bob"}},
		{"any order, upper-case keys, extras", txt("NAME=Bob", "x-future=1", "flag", fp, "V=2"), Announcement{2, testFP, "Bob"}},
		{"empty strings skipped", txt("", "v=1", fp, "name=Bob"), Announcement{1, testFP, "Bob"}},
		{"missing v", txt(fp, "name=Bob"), Announcement{}},
		{"missing fp", txt("v=1", "name=Bob"), Announcement{}},
		{"missing name", txt("v=1", fp), Announcement{}},
		{"empty record", nil, Announcement{}},
		{"v no value", txt("v", fp, "name=Bob"), Announcement{}},
		{"v empty", txt("v=", fp, "name=Bob"), Announcement{}},
		{"v zero", txt("v=0", fp, "name=Bob"), Announcement{}},
		{"v leading zero", txt("v=01", fp, "name=Bob"), Announcement{}},
		{"v negative", txt("v=-1", fp, "name=Bob"), Announcement{}},
		{"v huge", txt("v=99999999999999999999", fp, "name=Bob"), Announcement{}},
		{"v letters", txt("v=one", fp, "name=Bob"), Announcement{}},
		{"duplicate fp", txt("v=1", fp, fp, "name=Bob"), Announcement{}},
		{"duplicate name differing case", txt("v=1", fp, "name=Bob", "Name=Eve"), Announcement{}},
		{"fp wrong algorithm", txt("v=1", "fp=MD5:aa:bb", "name=Bob"), Announcement{}},
		{"fp truncated", txt("v=1", fp[:len(fp)-1], "name=Bob"), Announcement{}},
		{"fp oversized", txt("v=1", fp+strings.Repeat("A", 100), "name=Bob"), Announcement{}},
		{"name empty", txt("v=1", fp, "name="), Announcement{}},
		{"name oversized", txt("v=1", fp, "name="+strings.Repeat("é", 32)), Announcement{}},
		{"name control", txt("v=1", fp, "name=Bob\x00"), Announcement{}},
		{"name bad utf8", txt("v=1", fp, "name=\xc3"), Announcement{}},
		{"empty key", txt("=x", "v=1", fp, "name=Bob"), Announcement{}},
		{"string over 255 bytes", txt("v=1", fp, "name=Bob", "junk="+strings.Repeat("x", 300)), Announcement{}},
		{"too many strings", txt(append([]string{"v=1", fp, "name=Bob"}, strings.Split(strings.Repeat("k=v,", 40), ",")...)...), Announcement{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTXT(tt.rec)
			if tt.want == (Announcement{}) {
				if !errors.Is(err, ErrMalformedTXT) {
					t.Fatalf("DecodeTXT = %+v, %v; want ErrMalformedTXT", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DecodeTXT = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
