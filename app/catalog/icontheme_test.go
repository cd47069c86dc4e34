package catalog

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// write creates a file under root.
func write(t *testing.T, root, rel string, b []byte) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pngOf is a size x size PNG.
func pngOf(t *testing.T, size int) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/share/icons/hicolor/48x48/apps/calc.png")
	if err != nil {
		t.Fatal(err)
	}
	if size == 48 {
		return b
	}
	img, err := decodeXPM([]byte(xpmOf(size)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	png.Encode(&out, img)
	return out.Bytes()
}

// xpmOf is a size x size two-colour XPM.
func xpmOf(size int) string {
	s := "/* XPM */\nstatic char *x[] = {\n\"" + itoa(size) + " " + itoa(size) + " 2 1\",\n\". c None\",\n\"# c #FF0000\",\n"
	for y := 0; y < size; y++ {
		row := make([]byte, size)
		for x := range row {
			row[x] = '.'
			if x == y {
				row[x] = '#'
			}
		}
		s += "\"" + string(row) + "\",\n"
	}
	return s + "};\n"
}

func itoa(n int) string { return string(rune('0'+n/10%10)) + string(rune('0'+n%10)) }

const svgIcon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="16" height="16"><rect x="2" y="2" width="12" height="12" fill="#3465a4"/></svg>`

const indexTheme = `[Icon Theme]
Name=Test
Inherits=Parent
Directories=16x16/apps,48x48/apps,scalable/apps

[16x16/apps]
Size=16
Type=Fixed

[48x48/apps]
Size=48
Type=Fixed

[scalable/apps]
Size=48
MinSize=8
MaxSize=512
Type=Scalable
`

// Icons are found as the freedesktop icon theme spec says: the current
// theme first, then what it inherits, then hicolor, then pixmaps; the
// size that matches (else the closest); SVG rendered at the size asked
// for, XPM converted; an app without an icon (or with one nowhere) gets
// the generic application icon.
func TestIconThemeLookup(t *testing.T) {
	share := t.TempDir()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("EBP_ICON_THEME", "Test")
	write(t, share, "icons/Test/index.theme", []byte(indexTheme))
	write(t, share, "icons/Test/48x48/apps/themed.png", pngOf(t, 48))
	write(t, share, "icons/Test/scalable/apps/vector.svg", []byte(svgIcon))
	write(t, share, "icons/Parent/index.theme", []byte("[Icon Theme]\nDirectories=32x32/apps\n[32x32/apps]\nSize=32\nType=Fixed\n"))
	write(t, share, "icons/Parent/32x32/apps/inherited.xpm", []byte(xpmOf(32)))
	write(t, share, "icons/hicolor/16x16/apps/themed.png", pngOf(t, 16))
	write(t, share, "icons/hicolor/24x24/apps/onlyhicolor.png", pngOf(t, 24))
	write(t, share, "pixmaps/mini.xterm.xpm", []byte(xpmOf(16)))
	write(t, share, "icons/hicolor/scalable/apps/"+GenericAppIcon+".svg", []byte(svgIcon))
	for _, tc := range []struct {
		name, icon string
		want, size int
	}{
		{"current theme's PNG before hicolor's", "themed", 48, 48},
		{"SVG rendered at the size asked", "vector", 64, 64},
		{"an inherited theme's XPM", "inherited", 32, 32},
		{"hicolor without index.theme", "onlyhicolor", 24, 24},
		{"XPM in pixmaps (XTerm's mini.xterm)", "mini.xterm", 48, 16},
		{"named with its extension", "vector.svg", 32, 32},
		{"nowhere: the generic application icon", "no-such-icon", 48, 48},
		{"no Icon= at all: the generic application icon", "", 40, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := IconPNG(App{ID: "x", Icon: tc.icon}, []string{share}, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(b))
			if err != nil || cfg.Width != tc.size || cfg.Height != tc.size {
				t.Fatalf("got %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, tc.size, tc.size)
			}
		})
	}
	t.Run("the SVG is drawn", func(t *testing.T) {
		b, _ := IconPNG(App{ID: "x", Icon: "vector"}, []string{share}, 16)
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if r, g, bl, a := img.At(8, 8).RGBA(); a == 0 || bl <= r || bl <= g {
			t.Errorf("centre pixel %v %v %v %v, want the rectangle's blue", r, g, bl, a)
		}
	})
	t.Run("hostile XPM refused", func(t *testing.T) {
		write(t, share, "pixmaps/huge.xpm", []byte("\"99999 99999 1 1\",\n\". c None\",\n"))
		os.Remove(filepath.Join(share, "icons/hicolor/scalable/apps/"+GenericAppIcon+".svg"))
		if _, err := IconPNG(App{ID: "x", Icon: "huge"}, []string{share}, 48); !errors.Is(err, ErrNoIcon) {
			t.Errorf("huge XPM: %v, want ErrNoIcon", err)
		}
	})
}

// The host's own apps: each one's icon resolves (its own or the generic
// application icon); XTerm's mini.xterm (an XPM in pixmaps) included.
func TestHostAppIcons(t *testing.T) {
	apps, _ := Scan([]string{"/usr/share"})
	found := 0
	for _, a := range apps {
		if _, err := IconPNG(a, []string{"/usr/share"}, 48); err == nil {
			found++
		} else if a.Icon == "mini.xterm" {
			t.Errorf("XTerm's icon: %v", err)
		}
	}
	t.Logf("%d of %d host apps have an icon", found, len(apps))
}
