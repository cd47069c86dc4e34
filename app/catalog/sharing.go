package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/ebrainpool/ebrainpool/internal/atomicfile"
)

// Sharing is the user's choice of which apps peers may launch. Nothing is
// shared until the user says so: either every app (All) or a list.
type Sharing struct {
	All    bool     `json:"all"`
	Apps   []string `json:"apps,omitempty"`   // desktop IDs shared when !All
	Except []string `json:"except,omitempty"` // desktop IDs never shared
}

// Shared reports whether an app ID is shared.
func (s Sharing) Shared(id string) bool {
	for _, x := range s.Except {
		if x == id {
			return false
		}
	}
	if s.All {
		return true
	}
	for _, x := range s.Apps {
		if x == id {
			return true
		}
	}
	return false
}

// Set shares or unshares one app.
func (s *Sharing) Set(id string, shared bool) {
	s.Apps = without(s.Apps, id)
	s.Except = without(s.Except, id)
	switch {
	case shared && !s.All:
		s.Apps = append(s.Apps, id)
	case !shared && s.All:
		s.Except = append(s.Except, id)
	}
	sort.Strings(s.Apps)
	sort.Strings(s.Except)
}

func without(list []string, id string) []string {
	var out []string
	for _, x := range list {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// Filter keeps the shared apps.
func (s Sharing) Filter(apps []App) []App {
	var out []App
	for _, a := range apps {
		if s.Shared(a.ID) {
			out = append(out, a)
		}
	}
	return out
}

// LoadSharing reads the setting; a missing file means nothing is shared.
func LoadSharing(path string) (Sharing, error) {
	var s Sharing
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s is corrupt (%v): fix or delete it", path, err)
	}
	return s, nil
}

// SaveSharing writes the setting atomically.
func SaveSharing(path string, s Sharing) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
