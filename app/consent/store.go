package consent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// FileStore keeps Rules in a JSON file, written atomically (temporary file
// and rename), so a crash never loses or corrupts the decisions.
type FileStore struct{ Path string }

// maxRulesFile bounds what is read back.
const maxRulesFile = 4 << 20

// Load reads the rules; a missing file is empty rules, a corrupt one an
// error naming the file.
func (s FileStore) Load() (Rules, error) {
	var r Rules
	f, err := os.Open(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return r, err
	}
	if st.Size() > maxRulesFile {
		return r, fmt.Errorf("%s is %d bytes, more than the %d allowed", s.Path, st.Size(), maxRulesFile)
	}
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return r, fmt.Errorf("%s is corrupt (%v): fix or delete it to start with no remembered decisions", s.Path, err)
	}
	return r, nil
}

// Save writes the rules atomically.
func (s FileStore) Save(r Rules) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.Path, b, 0o600)
}
