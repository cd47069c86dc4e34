package testenv

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"math/bits"
)

// Screenshot captures the whole display with xwd (x11-apps) and decodes
// it: no image tools needed.
func (x *Xvfb) Screenshot() (*image.RGBA, error) {
	out, err := x.Command("xwd", "-root", "-silent").Output()
	if err != nil {
		return nil, fmt.Errorf("xwd: %v", err)
	}
	return decodeXWD(out)
}

// decodeXWD decodes a TrueColor ZPixmap XWD file (X11 XWDFileHeader,
// version 7), as xwd writes for Xvfb's 24-bit screens.
func decodeXWD(b []byte) (*image.RGBA, error) {
	const fields = 25
	if len(b) < fields*4 {
		return nil, fmt.Errorf("xwd: %d bytes, too short", len(b))
	}
	h := make([]uint32, fields)
	for i := range h {
		h[i] = binary.BigEndian.Uint32(b[i*4:])
	}
	headerSize, version, format := h[0], h[1], h[2]
	width, height := int(h[4]), int(h[5])
	byteOrder, bpp, stride := h[7], int(h[11]), int(h[12])
	masks := [3]uint32{h[14], h[15], h[16]}
	ncolors := int(h[19])
	if version != 7 || format != 2 || (bpp != 32 && bpp != 24) {
		return nil, fmt.Errorf("xwd: unsupported file (version %d, format %d, %d bits per pixel)", version, format, bpp)
	}
	off := int(headerSize) + ncolors*12
	if width <= 0 || height <= 0 || stride < width*bpp/8 || len(b) < off+height*stride {
		return nil, fmt.Errorf("xwd: %dx%d image, stride %d, does not fit %d bytes", width, height, stride, len(b))
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if byteOrder == 1 {
		order = binary.BigEndian
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	pix := make([]byte, 4)
	for y := range height {
		row := b[off+y*stride:]
		for x := range width {
			p := row[x*bpp/8:]
			var v uint32
			if bpp == 32 {
				v = order.Uint32(p)
			} else if byteOrder == 1 {
				copy(pix[1:], p[:3])
				v = binary.BigEndian.Uint32(pix)
			} else {
				copy(pix, p[:3])
				pix[3] = 0
				v = binary.LittleEndian.Uint32(pix)
			}
			img.SetRGBA(x, y, color.RGBA{channel(v, masks[0]), channel(v, masks[1]), channel(v, masks[2]), 0xff})
		}
	}
	return img, nil
}

// channel extracts an 8-bit colour channel given its mask.
func channel(v, mask uint32) uint8 {
	if mask == 0 {
		return 0
	}
	c := (v & mask) >> bits.TrailingZeros32(mask)
	if n := bits.OnesCount32(mask); n < 8 {
		c <<= 8 - n
	} else if n > 8 {
		c >>= n - 8
	}
	return uint8(c)
}
