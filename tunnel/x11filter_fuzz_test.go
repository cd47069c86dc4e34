package tunnel

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzX11FilterRequests: the app in the sandbox sends any bytes as its X
// requests; the filter never panics, passes every request it does not
// rewrite unchanged and in order, and what it rewrites keeps its length
// (so the server's sequence numbers stay the app's).
func FuzzX11FilterRequests(f *testing.F) {
	le := binary.LittleEndian
	req := func(op byte, words uint16, body ...byte) []byte {
		b := []byte{op, 0, 0, 0}
		le.PutUint16(b[2:], words)
		return append(b, body...)
	}
	f.Add(req(xOpGetProperty, 6, make([]byte, 20)...))
	f.Add(req(xOpQueryExtension, 4, append([]byte{7, 0, 0, 0}, "MIT-SHM\x00"...)...))
	f.Add(req(xOpSendEvent, 11, make([]byte, 40)...))
	f.Add(req(xOpQueryExtension, 1))
	f.Add(append(req(xOpGetProperty, 0), 6, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		owned := newX11Owned()
		owned.add(idRange{base: 0x400000, mask: 0x1fffff}, []uint32{0x50d})
		fl := &x11Filter{bo: le, owned: owned}
		var out bytes.Buffer
		fl.requests(&out, bytes.NewReader(raw))
		if out.Len() > len(raw) {
			t.Fatalf("the filter wrote %d bytes for %d", out.Len(), len(raw))
		}
		// Request by request, the same lengths.
		got, in := out.Bytes(), raw
		for len(got) >= 4 && len(in) >= 4 {
			if got[2] != in[2] || got[3] != in[3] {
				t.Fatalf("a request's length changed: % x -> % x", in[:4], got[:4])
			}
			if got[0] != in[0] && got[0] != xOpNoOperation {
				t.Fatalf("opcode %d became %d", in[0], got[0])
			}
			n := int(le.Uint16(in[2:])) * 4
			if n == 0 || n > len(got) || n > len(in) {
				break
			}
			got, in = got[n:], in[n:]
		}
	})
}

// FuzzParseSetupReply: a setup reply the filter reads (from the X server,
// but bounded anyway) never panics the parser.
func FuzzParseSetupReply(f *testing.F) {
	b := make([]byte, 40+8+40)
	b[0] = 1
	b[28], b[29] = 1, 1
	f.Add(b)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		parseSetupReply(raw, binary.LittleEndian)
	})
}
