package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"path/filepath"
	"strings"
)

// MaxIconBytes bounds an icon sent to a peer.
const MaxIconBytes = 256 << 10

// ErrNoIcon means no icon was found for the app.
var ErrNoIcon = errors.New("no icon")

// IconPNG finds the app's icon as a PNG of about want pixels: an absolute
// Icon path, else as the freedesktop icon theme specification says (the
// current theme, the themes it inherits, hicolor, then the pixmaps
// directories; PNG, SVG rendered at want, XPM converted); an app without
// one gets the theme's generic application icon (application-x-executable).
func IconPNG(app App, dataDirs []string, want int) ([]byte, error) {
	s := newIconSearch(dataDirs)
	current := currentIconTheme()
	var candidates []string
	switch {
	case filepath.IsAbs(app.Icon):
		candidates = append(candidates, app.Icon)
	case app.Icon != "":
		name := app.Icon
		for _, ext := range iconExts {
			name = strings.TrimSuffix(name, ext)
		}
		if p := s.find(name, want, current); p != "" {
			candidates = append(candidates, p)
		}
	}
	if p := s.find(GenericAppIcon, want, current); p != "" {
		candidates = append(candidates, p)
	}
	var errs []error
	for _, p := range candidates {
		b, err := iconFile(p, want)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%s: icon %q: %w", app.ID, app.Icon, errors.Join(append([]error{ErrNoIcon}, errs...)...))
}

// GenericAppIcon is the icon theme name of a generic application.
const GenericAppIcon = "application-x-executable"

// better prefers the smallest size >= want, else the largest below it.
func better(sz, cur, want int) bool {
	switch {
	case sz >= want && cur >= want:
		return sz < cur
	case sz >= want:
		return true
	case cur >= want:
		return false
	}
	return sz > cur
}

// readPNG reads a file that must be a valid PNG within MaxIconBytes.
func readPNG(p string) ([]byte, error) {
	b, err := readBounded(p)
	if err != nil {
		return nil, err
	}
	if err := ValidPNG(b); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// ValidPNG checks that b is a PNG of sane dimensions (as received from a
// peer: bounded before it is ever drawn).
func ValidPNG(b []byte) error {
	if len(b) > MaxIconBytes {
		return fmt.Errorf("icon larger than %d bytes", MaxIconBytes)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a PNG: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > 1024 || cfg.Height > 1024 {
		return fmt.Errorf("icon size %dx%d out of range", cfg.Width, cfg.Height)
	}
	_, err = png.Decode(bytes.NewReader(b))
	return err
}
