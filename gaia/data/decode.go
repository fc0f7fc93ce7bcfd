package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/color"
	"image/jpeg"
	"image/png"
)

// MaxPixels bounds the declared size of an image file before it is decoded
// (a decompression bomb declares a huge size in a small file).
const MaxPixels = 64 << 20

// MaxImageBytes is the default bound of the memory one image takes while it
// is decoded (its pixels as the decoder holds them, at their channels and
// bit depth, and the 8-bit copy made of them); the loader's workers decode
// one image each, so decoding holds at most workers x Limits.Bytes.
const MaxImageBytes = 512 << 20

// MaxScans is the default bound of the scans of a progressive JPEG. Each
// scan is a pass over the whole image's coefficients, and a file can repeat
// one scan thousands of times in a few hundred KB (a "scan bomb": minutes of
// CPU); encoders write about 10 (libjpeg's progression: 6 for gray, 10 for
// color).
const MaxScans = 100

// ErrTooManyScans is returned (wrapped) for a progressive JPEG with more
// scans than the limit.
var ErrTooManyScans = errors.New("too many scans")

// ErrTooLarge is returned (wrapped) for an image whose declared size is over
// the limit: it is refused before any pixel is decoded.
var ErrTooLarge = errors.New("declared size is over the limit")

// Limits bound an image before it is decoded: its declared pixels, the
// bytes decoding it would hold, and the scans of a progressive JPEG; zero
// or negative: no bound.
type Limits struct {
	Pixels int64
	Bytes  int64
	Scans  int
}

// DefaultLimits are MaxPixels, MaxImageBytes and MaxScans.
func DefaultLimits() Limits { return Limits{Pixels: MaxPixels, Bytes: MaxImageBytes, Scans: MaxScans} }

// orDefault fills l's zero fields from DefaultLimits.
func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.Pixels == 0 {
		l.Pixels = d.Pixels
	}
	if l.Bytes == 0 {
		l.Bytes = d.Bytes
	}
	if l.Scans == 0 {
		l.Scans = d.Scans
	}
	return l
}

// check refuses w x h pixels that hold bytes while decoding.
func (l Limits) check(w, h int, bytes int64, what string) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: %dx%d", ErrTooLarge, w, h)
	}
	if l.Pixels > 0 && int64(w)*int64(h) > l.Pixels {
		return fmt.Errorf("%w: %dx%d (at most %d pixels)", ErrTooLarge, w, h, l.Pixels)
	}
	if l.Bytes > 0 && bytes > l.Bytes {
		return fmt.Errorf("%w: a %dx%d %s takes %d MiB to decode (at most %d MiB)",
			ErrTooLarge, w, h, what, bytes>>20, l.Bytes>>20)
	}
	return nil
}

// pngBytes is what Go's PNG decoder holds for a w x h image of color model
// m (its image type's bytes per pixel), plus the 8-bit copy of at most 3
// channels the pipeline makes of it.
func pngBytes(w, h int, m color.Model) (int64, string) {
	bpp, what := int64(4), "8-bit PNG"
	switch m {
	case color.GrayModel:
		bpp = 1
	case color.Gray16Model:
		bpp, what = 2, "16-bit gray PNG"
	case color.RGBA64Model, color.NRGBA64Model:
		bpp, what = 8, "16-bit color PNG"
	default:
		if _, ok := m.(color.Palette); ok {
			bpp, what = 1, "palette PNG"
		}
	}
	return int64(w) * int64(h) * (bpp + 3), what
}

// DecodeFile decodes a PNG or JPEG file as Pillow's Image.open does (8-bit
// L or RGB, see Decode), within DefaultLimits; errors name the file.
func DecodeFile(path string) (Image, error) {
	raw, err := readRegular(path)
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
func Decode(raw []byte) (Image, error) { return DecodeLimit(raw, DefaultLimits()) }

// DecodeLimit is Decode refusing, before decoding them, images over lim:
// decompression bombs, and 16-bit images whose decoded pixels would take
// many times their file's size.
func DecodeLimit(raw []byte, lim Limits) (Image, error) {
	return decodeScaled(context.Background(), raw, lim, 1)
}

// DecodeFor decodes an image file's bytes for a transform, as a folder or
// list of image files does under gaia score: DecodeLimit, or with the
// transform's draft option a JPEG scaled down in the DCT domain as far as
// the resize after it allows (Pillow's draft). t nil: DecodeLimit. A JPEG's
// decoding stops when ctx ends.
func DecodeFor(ctx context.Context, raw []byte, t *Transform, lim Limits) (Image, error) {
	scale := 1
	if t != nil && t.draft && bytes.HasPrefix(raw, jpegMagic) {
		if cfg, err := jpeg.DecodeConfig(bytes.NewReader(raw)); err == nil {
			scale = t.draftScale(cfg.Width, cfg.Height)
		}
	}
	return decodeScaled(ctx, raw, lim, scale)
}

var (
	jpegMagic = []byte{0xff, 0xd8}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

// decodeScaled is DecodeLimit, decoding a JPEG at 1/scale (DCT scaling).
func decodeScaled(ctx context.Context, raw []byte, lim Limits, scale int) (Image, error) {
	switch {
	case bytes.HasPrefix(raw, jpegMagic):
		return decodeJPEG(ctx, raw, lim, scale)
	case bytes.HasPrefix(raw, pngMagic):
		cfg, err := png.DecodeConfig(bytes.NewReader(raw))
		if err != nil {
			return Image{}, fmt.Errorf("corrupt PNG: %w", err)
		}
		n, what := pngBytes(cfg.Width, cfg.Height, cfg.ColorModel)
		if err := lim.check(cfg.Width, cfg.Height, n, what); err != nil {
			return Image{}, err
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

// countScans counts the scans (SOS markers) of a JPEG: segments are
// skipped by their lengths up to the first scan, then markers are found in
// the entropy-coded data, where 0xFF is always followed by a stuffed 0x00,
// a restart marker or a fill byte. (The cgo build's libjpeg counts scans as
// it decodes; this is the Go decoder's check before it starts.)
func countScans(raw []byte) int {
	n, i := 0, 2
	for i+4 <= len(raw) {
		if raw[i] != 0xff {
			i++
			continue
		}
		m := raw[i+1]
		switch {
		case m == 0xff || m == 0x00 || (m >= 0xd0 && m <= 0xd7) || m == 0x01:
			i++
			continue
		case m == 0xd9: // EOI
			return n
		}
		seg := int(raw[i+2])<<8 | int(raw[i+3])
		if m == 0xda {
			n++
			i += 2 + seg // the scan header; its data follows
			continue
		}
		if n == 0 { // before the first scan: whole segments
			i += 2 + seg
			continue
		}
		i += 2 + seg
	}
	return n
}
