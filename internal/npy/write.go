package npy

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Header is a .npy version 1.0 header for a C-order array of dtype ("<f4"
// for float32, "|u1" for uint8) and shape, padded so the data starts on a
// 64-byte boundary, as numpy.save writes it. The data follows it as raw
// little-endian values.
func Header(dtype string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", dtype, s)
	pad := 64 - (10+len(dict)+1)%64
	if pad == 64 {
		pad = 0
	}
	dict += strings.Repeat(" ", pad) + "\n"
	out := make([]byte, 10, 10+len(dict))
	copy(out, "\x93NUMPY\x01\x00")
	binary.LittleEndian.PutUint16(out[8:], uint16(len(dict)))
	return append(out, dict...)
}
