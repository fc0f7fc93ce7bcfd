//go:build cgo

package data

// libjpeg-turbo is linked statically (Debian's libjpeg62-turbo-dev ships
// libjpeg.a), so a binary decodes the same way on a machine without the
// library, and it is the version Debian's Pillow uses.

/*
#cgo LDFLAGS: -l:libjpeg.a
#include <stdlib.h>
#include "jpeg_turbo.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// JPEGDecoder names the JPEG decoder of this build.
func JPEGDecoder() string {
	return C.GoString(C.gaia_jpeg_version()) + " (Pillow's settings: islow IDCT, fancy upsampling)"
}

// JPEGPillowExact reports whether JPEGs decode to Pillow's pixels.
func JPEGPillowExact() bool { return true }

// decodeJPEG decodes JPEG bytes to 8-bit L, RGB (or, for four-component
// files, RGB converted as Pillow converts its CMYK), refusing a declared
// size over maxPixels before allocating. scale > 1 decodes at 1/scale in
// the DCT domain (libjpeg-turbo's, as Pillow's draft).
func decodeJPEG(raw []byte, lim Limits, scale int) (Image, error) {
	if len(raw) == 0 {
		return Image{}, errors.New("empty file")
	}
	var out C.gaia_jpeg_image
	var msg [256]C.char
	rc := C.gaia_jpeg_decode((*C.uchar)(unsafe.Pointer(&raw[0])), C.ulong(len(raw)), C.longlong(lim.Pixels), C.longlong(lim.Bytes), C.int(scale),
		&out, &msg[0], C.size_t(len(msg)))
	if rc != 0 {
		text := C.GoString(&msg[0])
		if rc == 2 {
			return Image{}, fmt.Errorf("%w: %s", ErrTooLarge, text)
		}
		return Image{}, fmt.Errorf("corrupt JPEG: %s", text)
	}
	defer C.free(unsafe.Pointer(out.pixels))
	h, w, c := int(out.height), int(out.width), int(out.channels)
	pix := unsafe.Slice((*uint8)(unsafe.Pointer(out.pixels)), h*w*c)
	if c == 4 {
		return cmykToRGB8(h, w, pix), nil
	}
	return Image{C: c, H: h, W: w, Pix8: append([]uint8(nil), pix...)}, nil
}
