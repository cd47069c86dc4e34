package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// IntroducersFile is the path of the peers the user marked as
// introducers.
func (d Dirs) IntroducersFile() string { return filepath.Join(d.State, "introducers.json") }

// Introducer is a peer the user marked as introducer: it is asked for
// the peers it knows, which are listed as introduced by it.
type Introducer struct {
	Fingerprint string    `json:"fingerprint"`
	Name        string    `json:"name"`
	Since       time.Time `json:"since"`
}

type introducersFile struct {
	Version     int          `json:"version"`
	Introducers []Introducer `json:"introducers"`
}

// LoadIntroducers reads the introducers (none without the file).
func LoadIntroducers(path string) ([]Introducer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the introducers: %w", err)
	}
	var f introducersFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("%s is corrupt or from a newer eBrainPool (version %d, %v): fix or delete it (no peer is then an introducer)", path, f.Version, err)
	}
	return f.Introducers, nil
}

// SaveIntroducers writes the introducers atomically (0600).
func SaveIntroducers(path string, list []Introducer) error {
	if list == nil {
		list = []Introducer{}
	}
	b, err := json.MarshalIndent(introducersFile{Version: 1, Introducers: list}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving the introducers: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the introducers: %w", err)
	}
	return nil
}
