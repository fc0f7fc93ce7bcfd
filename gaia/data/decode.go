package data

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"os"
)

// MaxPixels bounds the declared size of an image file before it is decoded
// (a decompression bomb declares a huge size in a small file).
const MaxPixels = 64 << 20

// ErrTooLarge is returned (wrapped) for an image whose declared size is over
// the limit: it is refused before any pixel is decoded.
var ErrTooLarge = errors.New("declared size is over the limit")

// DecodeFile decodes a PNG or JPEG file as Pillow's Image.open does (8-bit
// L or RGB, see Decode), refusing declared sizes over MaxPixels; errors
// name the file.
func DecodeFile(path string) (Image, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Image{}, err
	}
	img, err := Decode(raw)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Decode decodes PNG or JPEG bytes (told apart by their content, not their
// name) to 8-bit L or RGB pixels, as Pillow opens and converts them: JPEGs
// through libjpeg-turbo with Pillow's settings (JPEGDecoder says which
// decoder this build has), PNGs through Go's decoder, whose pixels are
// lossless and the same, converted by Pillow's rules (fromGoImage).
func Decode(raw []byte) (Image, error) { return DecodeLimit(raw, MaxPixels) }

// DecodeLimit is Decode refusing images that declare more than maxPixels
// pixels before decoding them (decompression bombs).
func DecodeLimit(raw []byte, maxPixels int64) (Image, error) {
	return decodeScaled(raw, maxPixels, 1)
}

var (
	jpegMagic = []byte{0xff, 0xd8}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

// decodeScaled is DecodeLimit, decoding a JPEG at 1/scale (DCT scaling).
func decodeScaled(raw []byte, maxPixels int64, scale int) (Image, error) {
	switch {
	case bytes.HasPrefix(raw, jpegMagic):
		return decodeJPEG(raw, maxPixels, scale)
	case bytes.HasPrefix(raw, pngMagic):
		cfg, err := png.DecodeConfig(bytes.NewReader(raw))
		if err != nil {
			return Image{}, fmt.Errorf("corrupt PNG: %w", err)
		}
		if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
			return Image{}, fmt.Errorf("%w: %dx%d (at most %d pixels)", ErrTooLarge, cfg.Width, cfg.Height, maxPixels)
		}
		im, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			return Image{}, fmt.Errorf("corrupt PNG: %w", err)
		}
		return fromGoImage(im), nil
	case len(raw) == 0:
		return Image{}, errors.New("not a readable PNG or JPEG image: empty file")
	}
	return Image{}, errors.New("not a readable PNG or JPEG image: unknown format")
}
