package discovery

import (
	"bytes"
	"testing"
)

// FuzzDecodeTXT: whatever a host on the LAN announces, the decoder either
// refuses it or returns an announcement that encodes back to the same
// values; it never panics.
func FuzzDecodeTXT(f *testing.F) {
	f.Add([]byte("v=1\x00fp=SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\x00name=alice"))
	f.Add([]byte("V=1\x00FP=SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\x00Name=bob's laptop\x00extra=x"))
	f.Add([]byte("v=1\x00v=2"))
	f.Add([]byte("\x00\x00="))
	f.Fuzz(func(t *testing.T, raw []byte) {
		txt := bytes.Split(raw, []byte{0})
		a, err := DecodeTXT(txt)
		if err != nil {
			return
		}
		enc, err := EncodeTXT(a)
		if err != nil {
			t.Fatalf("a decoded announcement does not encode: %+v: %v", a, err)
		}
		b, err := DecodeTXT(enc)
		if err != nil || b != a {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", a, enc, b, err)
		}
	})
}
