package data

import (
	"image"
	"image/color"
)

// Image is one decoded image. 8-bit sources (image files, CIFAR, MNIST) fill
// Pix8, interleaved H x W x C as Pillow holds pixels; the transforms work on
// those bytes with Pillow's own arithmetic. Sources that are not 8-bit
// (seeded noise) fill Pix, C x H x W floats in [0, 1].
type Image struct {
	C, H, W int
	Pix8    []uint8
	Pix     []float32
}

// Is8Bit reports whether the image holds bytes (Pix8) rather than floats.
func (im Image) Is8Bit() bool { return im.Pix8 != nil }

// Floats returns the image as C x H x W floats in [0, 1] (v / 255 for bytes,
// as torchvision's ToTensor divides).
func (im Image) Floats() []float32 {
	if !im.Is8Bit() {
		return im.Pix
	}
	hw := im.H * im.W
	out := make([]float32, im.C*hw)
	for c := 0; c < im.C; c++ {
		for i := 0; i < hw; i++ {
			out[c*hw+i] = float32(im.Pix8[i*im.C+c]) / 255
		}
	}
	return out
}

// l24 is Pillow's RGB to L ("ITU-R 601-2 luma", fixed point with rounding):
// Convert.c's L24, (R 19595 + G 38470 + B 7471 + 0x8000) >> 16.
func l24(r, g, b uint8) uint8 {
	return uint8((uint32(r)*19595 + uint32(g)*38470 + uint32(b)*7471 + 0x8000) >> 16)
}

// toGray8 converts an 8-bit image to one channel as Pillow's convert("L").
func toGray8(im Image) Image {
	if im.C == 1 {
		return im
	}
	n := im.H * im.W
	out := Image{C: 1, H: im.H, W: im.W, Pix8: make([]uint8, n)}
	for i := 0; i < n; i++ {
		p := im.Pix8[i*3 : i*3+3]
		out.Pix8[i] = l24(p[0], p[1], p[2])
	}
	return out
}

// toRGB8 converts an 8-bit gray image to RGB as Pillow's convert("RGB").
func toRGB8(im Image) Image {
	if im.C == 3 {
		return im
	}
	n := im.H * im.W
	out := Image{C: 3, H: im.H, W: im.W, Pix8: make([]uint8, 3*n)}
	for i, v := range im.Pix8[:n] {
		out.Pix8[3*i], out.Pix8[3*i+1], out.Pix8[3*i+2] = v, v, v
	}
	return out
}

// muldiv255 is Pillow's MULDIV255: a * b / 255 with rounding, in integers.
func muldiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}

func clip8(v int) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// cmykToRGB8 converts libjpeg's CMYK output of a four-component JPEG to
// RGB as Pillow does: it reads every such JPEG as Adobe's inverted CMYK
// (rawmode "CMYK;I", whatever the markers say), then convert("RGB") applies
// Convert.c's cmyk2rgb to the inverted values.
func cmykToRGB8(h, w int, cmyk []uint8) Image {
	n := h * w
	out := Image{C: 3, H: h, W: w, Pix8: make([]uint8, 3*n)}
	for i := 0; i < n; i++ {
		p := cmyk[4*i : 4*i+4]
		nk := int(p[3]) // 255 - the inverted K
		for c := 0; c < 3; c++ {
			out.Pix8[3*i+c] = clip8(nk - muldiv255(255-int(p[c]), nk))
		}
	}
	return out
}

// fromGoImage converts an image Go's decoders made (PNG and the fallback
// JPEG decoder) to 8-bit gray or RGB as Pillow opens and converts that
// file: gray stays one channel; a palette gives its colours; alpha is
// dropped, never premultiplied; 16-bit colour keeps the high byte
// (Pillow's "RGB;16B" unpacking), 16-bit gray is clipped to 255 (Pillow
// opens it as mode "I" and clips when converting to 8 bits).
func fromGoImage(im image.Image) Image {
	b := im.Bounds()
	w, h := b.Dx(), b.Dy()
	gray := func(f func(x, y int) uint8) Image {
		out := Image{C: 1, H: h, W: w, Pix8: make([]uint8, w*h)}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out.Pix8[y*w+x] = f(x, y)
			}
		}
		return out
	}
	rgb := func(f func(x, y int) (uint8, uint8, uint8)) Image {
		out := Image{C: 3, H: h, W: w, Pix8: make([]uint8, 3*w*h)}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i := 3 * (y*w + x)
				out.Pix8[i], out.Pix8[i+1], out.Pix8[i+2] = f(x, y)
			}
		}
		return out
	}
	switch g := im.(type) {
	case *image.Gray:
		return gray(func(x, y int) uint8 { return g.Pix[y*g.Stride+x] })
	case *image.Gray16:
		return gray(func(x, y int) uint8 {
			p := g.Pix[y*g.Stride+2*x:]
			if p[0] != 0 {
				return 255
			}
			return p[1]
		})
	case *image.NRGBA:
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			p := g.Pix[y*g.Stride+4*x:]
			return p[0], p[1], p[2]
		})
	case *image.NRGBA64:
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			p := g.Pix[y*g.Stride+8*x:]
			return p[0], p[2], p[4]
		})
	case *image.RGBA64:
		// Go's PNG decoder returns 16-bit colour without alpha as RGBA64
		// (opaque, so premultiplication changes nothing).
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			p := g.Pix[y*g.Stride+8*x:]
			return p[0], p[2], p[4]
		})
	case *image.Paletted:
		pal := make([][3]uint8, len(g.Palette))
		for i, c := range g.Palette {
			switch pc := c.(type) {
			case color.NRGBA: // a PNG palette entry with transparency
				pal[i] = [3]uint8{pc.R, pc.G, pc.B}
			case color.RGBA:
				n := color.NRGBAModel.Convert(pc).(color.NRGBA)
				pal[i] = [3]uint8{n.R, n.G, n.B}
			default:
				n := color.NRGBAModel.Convert(c).(color.NRGBA)
				pal[i] = [3]uint8{n.R, n.G, n.B}
			}
		}
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			idx := int(g.Pix[y*g.Stride+x])
			if idx >= len(pal) {
				return 0, 0, 0
			}
			p := pal[idx]
			return p[0], p[1], p[2]
		})
	case *image.YCbCr:
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			yi := g.YOffset(b.Min.X+x, b.Min.Y+y)
			ci := g.COffset(b.Min.X+x, b.Min.Y+y)
			return color.YCbCrToRGB(g.Y[yi], g.Cb[ci], g.Cr[ci])
		})
	case *image.CMYK:
		// Go's JPEG decoder (the fallback) already undoes Adobe's inversion.
		return rgb(func(x, y int) (uint8, uint8, uint8) {
			p := g.Pix[y*g.Stride+4*x:]
			nk := 255 - int(p[3])
			return clip8(nk - muldiv255(int(p[0]), nk)), clip8(nk - muldiv255(int(p[1]), nk)), clip8(nk - muldiv255(int(p[2]), nk))
		})
	}
	return rgb(func(x, y int) (uint8, uint8, uint8) {
		c := color.NRGBAModel.Convert(im.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
		return c.R, c.G, c.B
	})
}
