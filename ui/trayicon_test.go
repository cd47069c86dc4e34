package ui

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// systrayARGB is how fyne.io/systray turns icon bytes into IconPixmap
// bytes (argbForImage, v1.11): the low byte of each value of RGBA(). The
// real library is checked end to end by the e2e tray test, which reads
// IconPixmap over D-Bus from a running app.
func systrayARGB(t *testing.T, b []byte) (image.Rectangle, []byte) {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, a := img.At(x, y).RGBA()
			out = append(out, byte(a), byte(r), byte(g), byte(b))
		}
	}
	return img.Bounds(), out
}

func TestPixmapPNGKeepsStraightAlpha(t *testing.T) {
	// Every alpha and colour value, as the edges of an icon have them.
	src := image.NewNRGBA(image.Rect(0, 0, 256, 256))
	for a := range 256 {
		for v := range 256 {
			src.SetNRGBA(v, a, color.NRGBA{R: uint8(v), G: uint8(255 - v), B: uint8(v / 2), A: uint8(a)})
		}
	}
	var in bytes.Buffer
	if err := png.Encode(&in, src); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		icon   func() []byte
		wantOK bool
	}{
		{"as given (the library's fringe)", func() []byte { return in.Bytes() }, false},
		{"re-encoded", func() []byte {
			b, err := pixmapPNG(in.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bounds, argb := systrayARGB(t, tc.icon())
			if bounds != src.Bounds() {
				t.Fatalf("size %v, want %v", bounds, src.Bounds())
			}
			wrong := 0
			for y := range 256 {
				for x := range 256 {
					c := src.NRGBAAt(x, y)
					p := argb[4*(y*256+x):]
					if p[0] != c.A || (c.A != 0 && (p[1] != c.R || p[2] != c.G || p[3] != c.B)) {
						if wrong == 0 && tc.wantOK {
							t.Errorf("pixel %v: ARGB %v, want %v", c, p[:4], []byte{c.A, c.R, c.G, c.B})
						}
						wrong++
					}
				}
			}
			if tc.wantOK && wrong > 0 {
				t.Errorf("%d of 65536 pixels wrong", wrong)
			}
			if !tc.wantOK && wrong == 0 {
				t.Errorf("the plain PNG came through unchanged: the library no longer needs pixmapPNG")
			}
		})
	}
	if _, err := pixmapPNG([]byte("not a png")); err == nil {
		t.Error("pixmapPNG accepted bytes that are not a PNG")
	}
}
