package catalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fyne-io/oksvg"
	"github.com/srwiley/rasterx"
)

// Icons as the freedesktop icon theme specification finds them: the
// user's current theme, the themes it inherits, then hicolor; in each, the
// directory whose size matches (then the closest); PNG, SVG and XPM; then
// the pixmaps directories. An SVG is rendered and an XPM converted, so a
// peer always gets a bounded PNG.

// iconExts are the file types looked up, in the spec's order.
var iconExts = []string{".png", ".svg", ".xpm"}

// themeDir is one directory of an icon theme (its index.theme section).
type themeDir struct {
	path                      string // relative to the theme
	size, min, max, threshold int
	scale                     int
	kind                      string // Fixed, Scalable, Threshold
}

// iconTheme is a theme's index: its directories and what it inherits.
type iconTheme struct {
	dirs     []themeDir
	inherits []string
}

// iconSearch is where icons are looked up for one IconPNG.
type iconSearch struct {
	bases   []string // base directories: ~/.icons, DATA/icons, pixmaps last
	pixmaps []string
	themes  map[string]*iconTheme
}

func newIconSearch(dataDirs []string) *iconSearch {
	s := &iconSearch{themes: map[string]*iconTheme{}}
	if home, err := os.UserHomeDir(); err == nil {
		s.bases = append(s.bases, filepath.Join(home, ".icons"))
	}
	for _, d := range dataDirs {
		s.bases = append(s.bases, filepath.Join(d, "icons"))
		s.pixmaps = append(s.pixmaps, filepath.Join(d, "pixmaps"))
	}
	s.pixmaps = append(s.pixmaps, "/usr/share/pixmaps")
	return s
}

// currentIconTheme is the user's icon theme: $EBP_ICON_THEME (tests), else
// GTK's setting (gtk-4.0, gtk-3.0 settings.ini), else "" (hicolor only).
func currentIconTheme() string {
	if t := os.Getenv("EBP_ICON_THEME"); t != "" {
		return t
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cfg = filepath.Join(home, ".config")
		}
	}
	for _, v := range []string{"gtk-4.0", "gtk-3.0"} {
		b, err := os.ReadFile(filepath.Join(cfg, v, "settings.ini"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, val, ok := strings.Cut(line, "=")
			if ok && strings.TrimSpace(k) == "gtk-icon-theme-name" {
				return strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return ""
}

// theme loads a theme's index.theme from the first base directory that
// has it; a theme directory without one (hicolor in a bare prefix) is
// read from its NxN and scalable directories.
func (s *iconSearch) theme(name string) *iconTheme {
	if t, ok := s.themes[name]; ok {
		return t
	}
	t := &iconTheme{}
	s.themes[name] = t
	for _, b := range s.bases {
		f, err := os.Open(filepath.Join(b, name, "index.theme"))
		if err != nil {
			continue
		}
		*t = parseIndexTheme(io.LimitReader(f, 1<<20))
		f.Close()
		return t
	}
	seen := map[string]bool{}
	for _, b := range s.bases {
		subs, _ := filepath.Glob(filepath.Join(b, name, "*", "*"))
		for _, sub := range subs {
			rel, _ := filepath.Rel(filepath.Join(b, name), sub)
			if seen[rel] {
				continue
			}
			size := filepath.Dir(rel)
			d := themeDir{path: rel, scale: 1, threshold: 2}
			if size == "scalable" {
				d.kind, d.size, d.min, d.max = "Scalable", 48, 1, 512
			} else if n, err := strconv.Atoi(strings.SplitN(size, "x", 2)[0]); err == nil {
				d.kind, d.size = "Fixed", n
			} else {
				continue
			}
			seen[rel] = true
			t.dirs = append(t.dirs, d)
		}
	}
	return t
}

// parseIndexTheme reads an index.theme.
func parseIndexTheme(r io.Reader) iconTheme {
	var t iconTheme
	sections := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			cur = map[string]string{}
			sections[line[1:len(line)-1]] = cur
		case cur != nil:
			if k, v, ok := strings.Cut(line, "="); ok {
				cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	head := sections["Icon Theme"]
	list := func(v string) []string {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	t.inherits = list(head["Inherits"])
	for _, name := range append(list(head["Directories"]), list(head["ScaledDirectories"])...) {
		sec := sections[name]
		if sec == nil {
			continue
		}
		num := func(k string, def int) int {
			if n, err := strconv.Atoi(sec[k]); err == nil {
				return n
			}
			return def
		}
		d := themeDir{path: name, size: num("Size", 0), scale: num("Scale", 1), threshold: num("Threshold", 2), kind: sec["Type"]}
		if d.size <= 0 {
			continue
		}
		if d.kind == "" {
			d.kind = "Threshold"
		}
		d.min, d.max = num("MinSize", d.size), num("MaxSize", d.size)
		t.dirs = append(t.dirs, d)
	}
	return t
}

// matches is the spec's DirectoryMatchesSize (scale 1).
func (d themeDir) matches(size int) bool {
	if d.scale != 1 {
		return false
	}
	switch d.kind {
	case "Fixed":
		return d.size == size
	case "Scalable":
		return d.min <= size && size <= d.max
	}
	return d.size-d.threshold <= size && size <= d.size+d.threshold
}

// distance is the spec's DirectorySizeDistance (scale 1).
func (d themeDir) distance(size int) int {
	switch d.kind {
	case "Scalable":
		if size < d.min {
			return d.min - size
		}
		if size > d.max {
			return size - d.max
		}
		return 0
	case "Threshold":
		if size < d.size-d.threshold {
			return d.min - size
		}
		if size > d.size+d.threshold {
			return size - d.max
		}
		return 0
	}
	return int(math.Abs(float64(d.size - size)))
}

// find looks name up at size: in each theme of the chain (the current
// one, what it inherits, hicolor), then in the pixmaps directories.
func (s *iconSearch) find(name string, size int, current string) string {
	chain := []string{}
	seen := map[string]bool{}
	var add func(string)
	add = func(t string) {
		if t == "" || t == "hicolor" || seen[t] || len(chain) > 16 {
			return
		}
		seen[t] = true
		chain = append(chain, t)
		for _, p := range s.theme(t).inherits {
			add(p)
		}
	}
	add(current)
	chain = append(chain, "hicolor") // always, and last
	for _, tn := range chain {
		if p := s.findIn(tn, name, size); p != "" {
			return p
		}
	}
	for _, dir := range append(append([]string(nil), s.bases...), s.pixmaps...) {
		for _, ext := range iconExts {
			if p := filepath.Join(dir, name+ext); isFile(p) {
				return p
			}
		}
	}
	return ""
}

// findIn is the spec's LookupIcon in one theme.
func (s *iconSearch) findIn(theme, name string, size int) string {
	t := s.theme(theme)
	for _, d := range t.dirs {
		if !d.matches(size) {
			continue
		}
		if p := s.fileIn(theme, d, name); p != "" {
			return p
		}
	}
	best, bestDist := "", math.MaxInt
	for _, d := range t.dirs {
		dist := d.distance(size)
		if dist >= bestDist {
			continue
		}
		if p := s.fileIn(theme, d, name); p != "" {
			best, bestDist = p, dist
		}
	}
	return best
}

func (s *iconSearch) fileIn(theme string, d themeDir, name string) string {
	for _, b := range s.bases {
		for _, ext := range iconExts {
			if p := filepath.Join(b, theme, d.path, name+ext); isFile(p) {
				return p
			}
		}
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// iconFile reads an icon file as a bounded PNG: a PNG as it is, an SVG
// rendered at size, an XPM converted.
func iconFile(p string, size int) ([]byte, error) {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".png":
		return readPNG(p)
	case ".svg", ".xpm":
	default:
		// An absolute Icon= path without a known extension: a PNG or
		// nothing.
		return readPNG(p)
	}
	b, err := readBounded(p)
	if err != nil {
		return nil, err
	}
	var img image.Image
	if strings.EqualFold(filepath.Ext(p), ".svg") {
		img, err = renderSVG(b, size)
	} else {
		img, err = decodeXPM(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var out bytes.Buffer
	if err := png.Encode(&out, img); err != nil {
		return nil, err
	}
	if err := ValidPNG(out.Bytes()); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return out.Bytes(), nil
}

// readBounded reads at most MaxIconBytes of a file.
func readBounded(p string) ([]byte, error) {
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
	return b, nil
}

// renderSVG draws an SVG icon into a size x size image.
func renderSVG(b []byte, size int) (img *image.NRGBA, err error) {
	icon, err := oksvg.ReadIconStream(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reading the SVG: %w", err)
	}
	if icon.ViewBox.W <= 0 || icon.ViewBox.H <= 0 {
		return nil, errors.New("SVG without a size")
	}
	icon.SetTarget(0, 0, float64(size), float64(size))
	img = image.NewNRGBA(image.Rect(0, 0, size, size))
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("rendering the SVG failed: %v", r)
		}
	}()
	icon.Draw(rasterx.NewDasher(size, size, rasterx.NewScannerGV(size, size, img, img.Bounds())), 1)
	return img, nil
}

// decodeXPM decodes an XPM (version 3: the C string array) with colors
// given as #RGB/#RRGGBB (and 16-bit forms), None, or a few basic names.
func decodeXPM(b []byte) (image.Image, error) {
	var strs []string
	for rest := string(b); ; {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i+1:], '"')
		if j < 0 {
			return nil, errors.New("XPM: unterminated string")
		}
		strs = append(strs, rest[i+1:i+1+j])
		rest = rest[i+j+2:]
	}
	if len(strs) == 0 {
		return nil, errors.New("not an XPM")
	}
	var w, h, n, cpp int
	if _, err := fmt.Sscan(strs[0], &w, &h, &n, &cpp); err != nil {
		return nil, fmt.Errorf("XPM header %q: %w", strs[0], err)
	}
	if w <= 0 || h <= 0 || w > 1024 || h > 1024 || n <= 0 || n > 1<<16 || cpp <= 0 || cpp > 4 || len(strs) < 1+n+h {
		return nil, fmt.Errorf("XPM header %q out of range", strs[0])
	}
	colors := map[string]color.NRGBA{}
	for _, line := range strs[1 : 1+n] {
		if len(line) < cpp {
			return nil, errors.New("XPM: short color line")
		}
		key, spec := line[:cpp], strings.Fields(line[cpp:])
		c := color.NRGBA{}
		for k := 0; k+1 < len(spec); k += 2 {
			if spec[k] == "c" {
				c = xpmColor(strings.Join(spec[k+1:], " "))
				break
			}
		}
		colors[key] = c
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y, row := range strs[1+n : 1+n+h] {
		if len(row) < w*cpp {
			return nil, fmt.Errorf("XPM: row %d too short", y)
		}
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, colors[row[x*cpp:(x+1)*cpp]])
		}
	}
	return img, nil
}

// xpmColor is one XPM color (transparent when unknown or None).
func xpmColor(s string) color.NRGBA {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "#") {
		hex := s[1:]
		n := len(hex) / 3
		if n == 0 || len(hex)%3 != 0 || n > 4 {
			return color.NRGBA{}
		}
		var ch [3]uint8
		for i := range ch {
			v, err := strconv.ParseUint(hex[i*n:(i+1)*n], 16, 32)
			if err != nil {
				return color.NRGBA{}
			}
			// Scale to 8 bits whatever the digits.
			ch[i] = uint8(v * 255 / (1<<(4*uint(n)) - 1))
		}
		return color.NRGBA{ch[0], ch[1], ch[2], 255}
	}
	switch strings.ToLower(s) {
	case "black":
		return color.NRGBA{0, 0, 0, 255}
	case "white":
		return color.NRGBA{255, 255, 255, 255}
	case "red":
		return color.NRGBA{255, 0, 0, 255}
	case "green":
		return color.NRGBA{0, 255, 0, 255}
	case "blue":
		return color.NRGBA{0, 0, 255, 255}
	case "gray", "grey":
		return color.NRGBA{190, 190, 190, 255}
	}
	return color.NRGBA{} // None, or a name not known here
}
