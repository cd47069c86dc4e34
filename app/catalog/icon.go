package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MaxIconBytes bounds an icon sent to a peer.
const MaxIconBytes = 256 << 10

// ErrNoIcon means no PNG icon was found for the app.
var ErrNoIcon = errors.New("no PNG icon")

// IconPNG finds the app's icon as PNG: an absolute Icon path, else the
// hicolor theme's fixed-size PNG closest to (and preferably not below) want
// pixels, else /usr/share/pixmaps. Vector and XPM icons are not converted.
func IconPNG(app App, dataDirs []string, want int) ([]byte, error) {
	if app.Icon == "" {
		return nil, fmt.Errorf("%s: %w", app.ID, ErrNoIcon)
	}
	var candidates []string
	if filepath.IsAbs(app.Icon) {
		candidates = append(candidates, app.Icon)
	} else {
		name := strings.TrimSuffix(app.Icon, ".png")
		type sized struct {
			path string
			size int
		}
		var best *sized
		for _, d := range dataDirs {
			dirs, _ := filepath.Glob(filepath.Join(d, "icons/hicolor/*x*/apps"))
			for _, dir := range dirs {
				sz, err := strconv.Atoi(strings.SplitN(filepath.Base(filepath.Dir(dir)), "x", 2)[0])
				if err != nil {
					continue
				}
				p := filepath.Join(dir, name+".png")
				if _, err := os.Stat(p); err != nil {
					continue
				}
				if best == nil || better(sz, best.size, want) {
					best = &sized{p, sz}
				}
			}
		}
		if best != nil {
			candidates = append(candidates, best.path)
		}
		for _, d := range dataDirs {
			candidates = append(candidates, filepath.Join(d, "pixmaps", name+".png"))
		}
	}
	for _, p := range candidates {
		b, err := readPNG(p)
		if err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: icon %q: %w", app.ID, app.Icon, ErrNoIcon)
}

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
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxIconBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxIconBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, MaxIconBytes)
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
