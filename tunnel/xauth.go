package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Xauthority address families (X11/Xauth.h).
const (
	FamilyInternet  uint16 = 0
	FamilyInternet6 uint16 = 6
	FamilyLocal     uint16 = 256
	FamilyWild      uint16 = 65535
)

// mitMagicCookie is the only X authorization protocol tunnel handles.
const mitMagicCookie = "MIT-MAGIC-COOKIE-1"

// maxXauthField bounds each field of an Xauthority entry and maxXauthFile
// the whole file, so a corrupt file cannot make us allocate much.
const (
	maxXauthField = 4096
	maxXauthFile  = 1 << 20
)

// XauthEntry is one entry of an Xauthority file.
type XauthEntry struct {
	Family  uint16
	Address []byte
	Number  string // display number, decimal
	Name    string // authorization protocol, e.g. MIT-MAGIC-COOKIE-1
	Data    []byte
}

// ParseXauthority decodes the binary Xauthority format: a sequence of
// entries, each a big-endian uint16 family followed by four
// length-prefixed (uint16) fields: address, number, name, data.
func ParseXauthority(r io.Reader) ([]XauthEntry, error) {
	br := bufio.NewReader(io.LimitReader(r, maxXauthFile))
	var out []XauthEntry
	for {
		var fam [2]byte
		if _, err := io.ReadFull(br, fam[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("reading xauth entry %d family: %w", len(out), err)
		}
		var fields [4][]byte
		for i := range fields {
			f, err := readXauthField(br)
			if err != nil {
				return out, fmt.Errorf("reading xauth entry %d field %d: %w", len(out), i, err)
			}
			fields[i] = f
		}
		out = append(out, XauthEntry{
			Family:  binary.BigEndian.Uint16(fam[:]),
			Address: fields[0],
			Number:  string(fields[1]),
			Name:    string(fields[2]),
			Data:    fields[3],
		})
	}
}

func readXauthField(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > maxXauthField {
		return nil, fmt.Errorf("field of %d bytes exceeds %d", n, maxXauthField)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// MarshalXauthority encodes entries in the binary Xauthority format.
func MarshalXauthority(entries []XauthEntry) ([]byte, error) {
	var out []byte
	for i, e := range entries {
		out = binary.BigEndian.AppendUint16(out, e.Family)
		for _, f := range [][]byte{e.Address, []byte(e.Number), []byte(e.Name), e.Data} {
			if len(f) > 0xffff {
				return nil, fmt.Errorf("xauth entry %d: field of %d bytes too long", i, len(f))
			}
			out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
			out = append(out, f...)
		}
	}
	return out, nil
}

// WriteXauthority writes entries to path (mode 0600), replacing it atomically.
func WriteXauthority(path string, entries []XauthEntry) error {
	b, err := MarshalXauthority(entries)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".xauth-*")
	if err != nil {
		return fmt.Errorf("writing xauthority %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing xauthority %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing xauthority %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing xauthority %s: %w", path, err)
	}
	return nil
}

// findCookie picks the MIT-MAGIC-COOKIE-1 entry for display d the way Xlib
// (libXau) does: the first entry, in file order, whose number matches (an
// entry without a number matches every display: mutter writes its
// Xwayland cookie so) and whose family/address matches the connection
// (wild matches anything).
func findCookie(entries []XauthEntry, d Display, hostname string) ([]byte, bool) {
	num := fmt.Sprint(d.Number)
	for _, e := range entries {
		if e.Name != mitMagicCookie || (e.Number != "" && e.Number != num) {
			continue
		}
		if e.Family == FamilyWild {
			return e.Data, true
		}
		if d.isLocal() {
			if e.Family == FamilyLocal && string(e.Address) == hostname {
				return e.Data, true
			}
			continue
		}
		// TCP display: libxcb uses FamilyLocal for loopback peers.
		if d.loopback() && e.Family == FamilyLocal && string(e.Address) == hostname {
			return e.Data, true
		}
		if ip := d.ip(); ip != nil {
			if v4 := ip.To4(); v4 != nil && e.Family == FamilyInternet && string(e.Address) == string(v4) {
				return e.Data, true
			}
			if ip.To4() == nil && e.Family == FamilyInternet6 && string(e.Address) == string(ip.To16()) {
				return e.Data, true
			}
		}
	}
	return nil, false
}
