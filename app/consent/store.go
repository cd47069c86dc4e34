package consent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// FileStore keeps Rules in a JSON file, written atomically (temporary file
// and rename), so a crash never loses or corrupts the decisions.
type FileStore struct {
	Path   string
	Logger *slog.Logger // for the migration of old rules (default slog.Default())
}

// maxRulesFile bounds what is read back.
const maxRulesFile = 4 << 20

// Load reads the rules; a missing file is empty rules, a corrupt one (or
// one written by a newer version) an error naming the file.
//
// Rules of version 1 remembered apps by their display name, which another
// app (another .desktop file with the same Name) or the same app with
// another command matches. They are migrated once, the old file kept as
// PATH.v1: a remembered allow is dropped (its name cannot say which app
// and command the user allowed, and guessing could allow one the user
// never saw: the next request of that peer and app asks again); a
// remembered deny is kept for the apps of that name (over-denying lets
// nothing run, and the user said no to that name).
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
	b, err := io.ReadAll(io.LimitReader(f, maxRulesFile+1))
	if err != nil {
		return r, err
	}
	if len(b) > maxRulesFile {
		return r, fmt.Errorf("%s is more than the %d bytes allowed", s.Path, maxRulesFile)
	}
	corrupt := func(err error) error {
		return fmt.Errorf("%s is corrupt (%v): fix or delete it to start with no remembered decisions", s.Path, err)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return r, corrupt(err)
	}
	switch {
	case head.Version > RulesVersion:
		return r, fmt.Errorf("%s was written by a newer eBrainPool (rules version %d; this one reads up to %d)", s.Path, head.Version, RulesVersion)
	case head.Version == RulesVersion:
		if err := json.Unmarshal(b, &r); err != nil {
			return r, corrupt(err)
		}
		return r, nil
	}
	var old struct {
		Allowed map[string][]string `json:"allowed"`
		Denied  map[string][]string `json:"denied"`
		Blocked map[string]string   `json:"blocked"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return r, corrupt(err)
	}
	r = Rules{Version: RulesVersion, Denied: map[string][]AppRule{}, Blocked: old.Blocked}
	dropped, kept := 0, 0
	for _, apps := range old.Allowed {
		dropped += len(apps)
	}
	for peer, names := range old.Denied {
		for _, name := range names {
			if name != "" {
				r.Denied[peer] = append(r.Denied[peer], AppRule{Name: name})
				kept++
			}
		}
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Info("consent rules migrated from version 1 (keyed by the app's name): remembered allows dropped, the next request asks again; remembered denies kept for the apps of that name",
		"file", s.Path, "allows_dropped", dropped, "denies_kept", kept, "old_file", s.Path+".v1")
	if err := atomicfile.Write(s.Path+".v1", b, 0o600); err != nil {
		log.Warn("keeping the old consent rules", "err", err)
	} else if err := s.Save(r); err != nil {
		log.Warn("saving the migrated consent rules (they apply now, and are saved with the next change)", "err", err)
	}
	return r, nil
}

// Save writes the rules atomically.
func (s FileStore) Save(r Rules) error {
	r.Version = RulesVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.Path, b, 0o600)
}
