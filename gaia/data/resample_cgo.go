//go:build cgo

package data

/*
#cgo CFLAGS: -O3
#include "resample.h"
*/
import "C"

import "unsafe"

// The resampling passes run in C (resample.c) in a cgo build: the same
// integer arithmetic as hpass8Go and vpass8Go (TestResamplePassesAgree),
// about three times faster.
var (
	hpass8 = hpass8C
	vpass8 = vpass8C
)

func hpass8C(src []uint8, srcW, c, rows int, bounds, k []int32, ksize, outCols int, dst []uint8) {
	if rows == 0 || outCols == 0 {
		return
	}
	C.gaia_resample_h((*C.uint8_t)(unsafe.Pointer(&src[0])), C.int(srcW), C.int(c), C.int(rows),
		(*C.int32_t)(unsafe.Pointer(&bounds[0])), (*C.int32_t)(unsafe.Pointer(&k[0])), C.int(ksize), C.int(outCols),
		(*C.uint8_t)(unsafe.Pointer(&dst[0])))
}

func vpass8C(src []uint8, width int, bounds, k []int32, ksize, outRows int, dst []uint8) {
	if width == 0 || outRows == 0 {
		return
	}
	acc := make([]int32, width)
	C.gaia_resample_v((*C.uint8_t)(unsafe.Pointer(&src[0])), C.int(width), (*C.int32_t)(unsafe.Pointer(&bounds[0])),
		(*C.int32_t)(unsafe.Pointer(&k[0])), C.int(ksize), C.int(outRows), (*C.uint8_t)(unsafe.Pointer(&dst[0])),
		(*C.int32_t)(unsafe.Pointer(&acc[0])))
}
