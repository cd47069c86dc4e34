package ui

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
)

// pixmapPNG re-encodes a tray icon for fyne.io/systray, whose IconPixmap
// (ARGB32, straight alpha) takes the LOW byte of each 16-bit premultiplied
// value of color.RGBA(): right for opaque pixels, too dark at the
// antialiased edges (a fringe in the panel). The icon is written as a
// 16-bit PNG whose values make those low bytes the straight 8-bit ones:
// alpha 0xff00|A (low byte A), and each colour C16 the smallest value with
// C16*alpha/0xffff == C. Only the library reads it; the high bytes are
// never shown.
func pixmapPNG(icon []byte) ([]byte, error) {
	src, err := png.Decode(bytes.NewReader(icon))
	if err != nil {
		return nil, fmt.Errorf("reading tray icon: %w", err)
	}
	b := src.Bounds()
	out := image.NewNRGBA64(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(src.At(x, y)).(color.NRGBA)
			a := uint32(0xff00) | uint32(c.A)
			enc := func(v uint8) uint16 { return uint16((uint32(v)*0xffff + a - 1) / a) }
			out.SetNRGBA64(x, y, color.NRGBA64{R: enc(c.R), G: enc(c.G), B: enc(c.B), A: uint16(a)})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, fmt.Errorf("encoding tray icon: %w", err)
	}
	return buf.Bytes(), nil
}
