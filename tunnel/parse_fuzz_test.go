package tunnel

import (
	"bytes"
	"testing"
)

// FuzzReadXSetup: an X11 client in the sandbox sends any bytes as its
// connection setup; the parser bounds them, refuses or returns a setup that
// marshals and parses back to itself, and never panics.
func FuzzReadXSetup(f *testing.F) {
	f.Add((&xSetup{order: 'l', major: 11, authName: mitMagicCookie, authData: bytes.Repeat([]byte{7}, 16)}).marshal())
	f.Add((&xSetup{order: 'B', major: 11}).marshal())
	f.Add([]byte("l\x00\x0b\x00\x00\x00\xff\xff\xff\xff\x00\x00"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := bytes.NewReader(raw)
		s, err := readXSetup(r)
		if err != nil {
			return
		}
		if len(s.authName) > maxXAuthName || len(s.authData) > maxXAuthData {
			t.Fatalf("authorization of %d+%d bytes accepted", len(s.authName), len(s.authData))
		}
		again, err := readXSetup(bytes.NewReader(s.marshal()))
		if err != nil || again.order != s.order || again.major != s.major || again.minor != s.minor ||
			again.authName != s.authName || !bytes.Equal(again.authData, s.authData) {
			t.Fatalf("round trip: %+v -> %+v, %v", s, again, err)
		}
		if err := s.checkAndReplace([]byte("fake"), mitMagicCookie, []byte("real")); err == nil && string(s.authData) != "real" {
			t.Fatal("checkAndReplace accepted but did not replace")
		}
	})
}

// FuzzParseXauthority: an Xauthority file is parsed with every field
// bounded; what it returns marshals and parses back to the same entries.
func FuzzParseXauthority(f *testing.F) {
	good, _ := MarshalXauthority([]XauthEntry{{Family: 256, Address: []byte("host"), Number: "0", Name: mitMagicCookie, Data: bytes.Repeat([]byte{1}, 16)}})
	f.Add(good)
	wild, _ := MarshalXauthority([]XauthEntry{{Family: 0xffff, Name: mitMagicCookie, Data: []byte("x")}})
	f.Add(wild)
	f.Add([]byte{0x01, 0x00, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		es, err := ParseXauthority(bytes.NewReader(raw))
		if err != nil {
			return
		}
		b, err := MarshalXauthority(es)
		if err != nil {
			t.Fatalf("parsed entries do not marshal: %v", err)
		}
		again, err := ParseXauthority(bytes.NewReader(b))
		if err != nil || len(again) != len(es) {
			t.Fatalf("round trip: %d entries -> %d, %v", len(es), len(again), err)
		}
		for _, e := range es {
			findCookie([]XauthEntry{e}, Display{Number: 0, Socket: "/tmp/.X11-unix/X0"}, "host")
		}
	})
}
