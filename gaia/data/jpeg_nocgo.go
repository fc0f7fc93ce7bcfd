//go:build !cgo

package data

import (
	"bytes"
	"context"
	"fmt"
	"image/jpeg"
)

// JPEGDecoder names the JPEG decoder of this build: without cgo, Go's
// image/jpeg, whose IDCT and chroma upsampling differ from libjpeg-turbo's,
// so pixels differ from Pillow's (by a few levels; docs/imagenet.md).
func JPEGDecoder() string {
	return "Go image/jpeg (a build without cgo: pixels differ from Pillow's libjpeg-turbo)"
}

// JPEGPillowExact reports whether JPEGs decode to Pillow's pixels.
func JPEGPillowExact() bool { return false }

func decodeJPEG(ctx context.Context, raw []byte, lim Limits, scale int) (Image, error) {
	if n := countScans(raw); lim.Scans > 0 && n > lim.Scans {
		return Image{}, fmt.Errorf("progressive JPEG: %w: more than %d scans (%d): each scan is a pass over the whole image", ErrTooManyScans, lim.Scans, n)
	}
	if err := ctx.Err(); err != nil {
		return Image{}, fmt.Errorf("JPEG decoding stopped: %w", err)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		return Image{}, fmt.Errorf("corrupt JPEG: %w", err)
	}
	// Go's decoder holds YCbCr (at most 3 bytes a pixel, or 4 for CMYK),
	// then the 8-bit copy.
	if err := lim.check(cfg.Width, cfg.Height, int64(cfg.Width)*int64(cfg.Height)*7, "JPEG"); err != nil {
		return Image{}, err
	}
	im, err := jpeg.Decode(bytes.NewReader(raw))
	if err != nil {
		return Image{}, fmt.Errorf("corrupt JPEG: %w", err)
	}
	return fromGoImage(im), nil
}
