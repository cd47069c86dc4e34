package identity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPinStore(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPinStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	alice, mallory, bob := newKey(t), newKey(t), newKey(t)

	t.Run("first contact pins", func(t *testing.T) {
		p, st, err := s.Contact(FingerprintOf(alice), "Alice", alice)
		if err != nil {
			t.Fatal(err)
		}
		if st != StatusNew || p.Fingerprint != FingerprintOf(alice) || p.Trusted {
			t.Errorf("got %v %+v, want new untrusted pin", st, p)
		}
		if _, ok := s.Lookup(FingerprintOf(alice)); !ok {
			t.Error("not pinned")
		}
	})
	t.Run("second contact is known", func(t *testing.T) {
		_, st, err := s.Contact(FingerprintOf(alice), "Alice", alice)
		if err != nil || st != StatusKnown {
			t.Fatalf("got %v, %v; want known", st, err)
		}
	})
	t.Run("same name other key is a different untrusted peer", func(t *testing.T) {
		if err := s.SetTrusted(FingerprintOf(alice), true); err != nil {
			t.Fatal(err)
		}
		p, st, err := s.Contact(FingerprintOf(mallory), "Alice", mallory)
		if err != nil {
			t.Fatal(err)
		}
		if st != StatusNewNameClash || !p.NameClash || p.Trusted {
			t.Errorf("got %v %+v, want untrusted name clash", st, p)
		}
		a, _ := s.Lookup(FingerprintOf(alice))
		if !a.Trusted || a.PublicKey != authorizedKey(alice) {
			t.Errorf("original pin changed: %+v", a)
		}
		if n := len(s.Pins()); n != 2 {
			t.Errorf("%d pins, want 2", n)
		}
	})
	t.Run("pinned peer with another key is ErrKeyChanged", func(t *testing.T) {
		before, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Contact(FingerprintOf(alice), "Alice", bob)
		if !errors.Is(err, ErrKeyChanged) {
			t.Fatalf("err = %v, want ErrKeyChanged", err)
		}
		after, _ := os.ReadFile(s.Path())
		if string(before) != string(after) {
			t.Error("pin file changed after a key change was refused")
		}
		if _, ok := s.Lookup(FingerprintOf(bob)); ok {
			t.Error("the changed key was pinned")
		}
	})
	t.Run("unpinned peer with mismatching key", func(t *testing.T) {
		err := s.Verify(FingerprintOf(newKey(t)), bob)
		if !errors.Is(err, ErrFingerprintMismatch) {
			t.Fatalf("err = %v, want ErrFingerprintMismatch", err)
		}
	})
	t.Run("reopen keeps pins", func(t *testing.T) {
		s2, err := OpenPinStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(s2.Pins()) != 2 {
			t.Errorf("reopened store has %d pins, want 2", len(s2.Pins()))
		}
		if err := s2.Verify(FingerprintOf(alice), mallory); !errors.Is(err, ErrKeyChanged) {
			t.Errorf("after reopen err = %v, want ErrKeyChanged", err)
		}
	})
	t.Run("forget allows a new pin", func(t *testing.T) {
		if err := s.Forget(FingerprintOf(mallory)); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Lookup(FingerprintOf(mallory)); ok {
			t.Error("still pinned")
		}
	})
}

func TestPinStoreAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPinStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Observe("A", newKey(t)); err != nil {
		t.Fatal(err)
	}
	ino := func() uint64 {
		fi, err := os.Stat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("pin file mode %04o, want 0600", fi.Mode().Perm())
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	first := ino()
	if _, _, err := s.Observe("B", newKey(t)); err != nil {
		t.Fatal(err)
	}
	if ino() == first {
		t.Error("pin file was rewritten in place, not replaced by rename")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only %s", len(entries), PinFileName)
	}

	// A failed write leaves both the file and the in-memory store unchanged.
	s.path = filepath.Join(dir, "missing-dir", PinFileName)
	if _, _, err := s.Observe("C", newKey(t)); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if len(s.Pins()) != 2 {
		t.Errorf("failed write changed the in-memory store: %d pins", len(s.Pins()))
	}
}

func TestPinStoreCorrupt(t *testing.T) {
	good := FingerprintOf(newKey(t))
	other := newKey(t)
	tests := []struct {
		name string
		data string
	}{
		{"not json", "{{{"},
		{"truncated", `{"version":1,"peers":[`},
		{"wrong version", `{"version":99,"peers":[]}`},
		{"unknown field", `{"version":1,"peers":[],"x":1}`},
		{"bad key", `{"version":1,"peers":[{"fingerprint":"` + string(good) + `","public_key":"ssh-ed25519 AAAA"}]}`},
		{"fingerprint mismatch", `{"version":1,"peers":[{"fingerprint":"` + string(good) + `","public_key":"` + authorizedKey(other) + `"}]}`},
		{"binary", "\x00\xff\xfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, PinFileName)
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenPinStore(dir)
			if !errors.Is(err, ErrCorruptPinStore) {
				t.Fatalf("err = %v, want ErrCorruptPinStore", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			data, _ := os.ReadFile(path)
			if string(data) != tt.data {
				t.Error("corrupt file was modified")
			}
		})
	}
}
