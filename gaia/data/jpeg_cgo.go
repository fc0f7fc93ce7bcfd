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
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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
// size over the limits before allocating and a file past lim.Scans when
// its next scan starts; when ctx ends the decode stops at its next row.
// scale > 1 decodes at 1/scale in the DCT domain (libjpeg-turbo's, as
// Pillow's draft).
func decodeJPEG(ctx context.Context, raw []byte, lim Limits, scale int) (Image, error) {
	if len(raw) == 0 {
		return Image{}, errors.New("empty file")
	}
	// The stop flag lives in C memory: C reads it while Go may set it.
	stop := (*C.int)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int(0)))))
	defer C.free(unsafe.Pointer(stop))
	if ctx.Done() != nil {
		// The watcher must be gone before the flag is freed (deferred
		// calls run last in, first out): it may be setting it right now.
		done, gone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(gone)
			select {
			case <-ctx.Done():
				atomic.StoreInt32((*int32)(unsafe.Pointer(stop)), 1)
			case <-done:
			}
		}()
		defer func() {
			close(done)
			<-gone
		}()
	}
	var out C.gaia_jpeg_image
	var msg [256]C.char
	rc := C.gaia_jpeg_decode((*C.uchar)(unsafe.Pointer(&raw[0])), C.ulong(len(raw)), C.longlong(lim.Pixels), C.longlong(lim.Bytes),
		C.int(lim.Scans), stop, C.int(scale), &out, &msg[0], C.size_t(len(msg)))
	if rc != 0 {
		text := C.GoString(&msg[0])
		switch rc {
		case 2:
			return Image{}, fmt.Errorf("%w: %s", ErrTooLarge, text)
		case 6:
			return Image{}, fmt.Errorf("progressive JPEG: %w: %s", ErrTooManyScans, text)
		case 5:
			if err := ctx.Err(); err != nil {
				return Image{}, fmt.Errorf("JPEG decoding stopped: %w", err)
			}
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
