package data

import (
	"image"
	"math"
)

// Thumbnail is img (the output of Transform.Pixels) as an image.Image for
// display: 8-bit as it is, float sources (noise) rounded to bytes, and when
// its longer side exceeds maxSide, resized down to fit maxSide with Pillow's
// antialiased bilinear filter (0: never resized).
func Thumbnail(img Image, maxSide int) image.Image {
	if !img.Is8Bit() {
		img = to8Bit(img)
	}
	if long := max(img.W, img.H); maxSide > 0 && long > maxSide {
		w := max(1, int(math.Round(float64(img.W)*float64(maxSide)/float64(long))))
		h := max(1, int(math.Round(float64(img.H)*float64(maxSide)/float64(long))))
		img = resize8(img, w, h, FilterBilinear, window{0, 0, w, h})
	}
	r := image.Rect(0, 0, img.W, img.H)
	switch img.C {
	case 1:
		return &image.Gray{Pix: img.Pix8, Stride: img.W, Rect: r}
	case 3:
		out := image.NewRGBA(r)
		for i := 0; i < img.W*img.H; i++ {
			copy(out.Pix[4*i:4*i+3], img.Pix8[3*i:3*i+3])
			out.Pix[4*i+3] = 255
		}
		return out
	}
	// Other channel counts: the first channel, as gray.
	out := image.NewGray(r)
	for i := 0; i < img.W*img.H; i++ {
		out.Pix[i] = img.Pix8[i*img.C]
	}
	return out
}

// to8Bit turns a float image (C x H x W in [0, 1]) into bytes, H x W x C,
// as torchvision's ToPILImage does (v * 255, truncated) after clipping.
func to8Bit(img Image) Image {
	hw := img.H * img.W
	out := Image{C: img.C, H: img.H, W: img.W, Pix8: make([]uint8, hw*img.C)}
	for c := 0; c < img.C; c++ {
		for i := 0; i < hw; i++ {
			v := float64(img.Pix[c*hw+i])
			out.Pix8[i*img.C+c] = uint8(math.Max(0, math.Min(255, v*255)))
		}
	}
	return out
}
