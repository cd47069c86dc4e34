package control

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzReadMsg: the control channel's framing and JSON decoding take any
// bytes from a peer: they refuse or return a typed message, never panic,
// and never read past the one frame.
func FuzzReadMsg(f *testing.F) {
	frame := func(s string) []byte {
		b := make([]byte, 4+len(s))
		binary.BigEndian.PutUint32(b, uint32(len(s)))
		copy(b[4:], s)
		return b
	}
	f.Add(frame(`{"type":"hello","versions":[1]}`))
	f.Add(frame(`{"type":"launch","app":"org.gnome.Calculator"}`))
	f.Add(frame(`{"type":""}`))
	f.Add(frame(`not json`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := bytes.NewReader(raw)
		m, err := readMsg(r)
		if err != nil {
			return
		}
		if m.Type == "" {
			t.Fatal("a message without a type was accepted")
		}
		used := len(raw) - r.Len()
		if want := 4 + int(binary.BigEndian.Uint32(raw)); used != want {
			t.Fatalf("read %d bytes of a %d-byte frame", used, want)
		}
		var buf bytes.Buffer
		if err := writeMsg(&buf, m); err != nil {
			t.Fatalf("an accepted message does not encode: %v", err)
		}
		if _, err := readMsg(&buf); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
