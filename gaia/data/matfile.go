package data

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// A reader for the numeric arrays of MATLAB 5 files (what SVHN's
// train_32x32.mat and test_32x32.mat are, and what scipy.io.savemat
// writes), compressed elements included: enough for uint8 image arrays and
// numeric label vectors. Cells, structs, sparse and complex arrays, and
// MATLAB 7.3 (HDF5) files are refused, naming what was found.

// matArray is one variable: its dimensions (MATLAB order, column-major
// data) and its real values, as bytes when its class is uint8, else as
// float64.
type matArray struct {
	name   string
	class  int
	dims   []int
	u8     []byte
	values []float64
}

const (
	miINT8       = 1
	miUINT8      = 2
	miINT16      = 3
	miUINT16     = 4
	miINT32      = 5
	miUINT32     = 6
	miSINGLE     = 7
	miDOUBLE     = 9
	miINT64      = 12
	miUINT64     = 13
	miMATRIX     = 14
	miCOMPRESSED = 15
	mxUINT8      = 9
)

// maxMatElement bounds one element read from a MAT file.
const maxMatElement = 4 << 30

// readMAT reads the named numeric variables of a MATLAB 5 file.
func readMAT(path string, want ...string) (map[string]*matArray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var head [128]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return nil, fmt.Errorf("%s: not a MATLAB file: %w", path, err)
	}
	if bytes.HasPrefix(head[:], []byte("\x89HDF")) || bytes.Contains(head[:116], []byte("MATLAB 7.3")) {
		return nil, fmt.Errorf("%s: a MATLAB 7.3 (HDF5) file; gaia reads MATLAB 5 files, as SVHN's are (save it with -v7 or scipy.io.savemat)", path)
	}
	if !bytes.HasPrefix(head[:], []byte("MATLAB 5.0 MAT-file")) {
		return nil, fmt.Errorf("%s: not a MATLAB 5 file (no \"MATLAB 5.0 MAT-file\" header)", path)
	}
	var bo binary.ByteOrder
	switch string(head[126:128]) {
	case "IM":
		bo = binary.LittleEndian
	case "MI":
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: no endian indicator in the MATLAB header", path)
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	out := map[string]*matArray{}
	r := &matReader{r: f, bo: bo}
	for len(out) < len(want) {
		typ, data, err := r.element()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if typ == miCOMPRESSED {
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("%s: a compressed element: %w", path, err)
			}
			inner := &matReader{r: zr, bo: bo}
			typ, data, err = inner.element()
			zr.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: a compressed element: %w", path, err)
			}
		}
		if typ != miMATRIX {
			continue
		}
		a, err := parseMatrix(data, bo, wanted)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if a != nil {
			out[a.name] = a
		}
	}
	for _, w := range want {
		if out[w] == nil {
			return nil, fmt.Errorf("%s: no variable %q", path, w)
		}
	}
	return out, nil
}

type matReader struct {
	r  io.Reader
	bo binary.ByteOrder
}

// element reads one data element: its type and its bytes (padding skipped).
func (m *matReader) element() (int, []byte, error) {
	var tag [8]byte
	if _, err := io.ReadFull(m.r, tag[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, errors.New("truncated element tag")
		}
		return 0, nil, err
	}
	t := m.bo.Uint32(tag[:4])
	if t>>16 != 0 { // small element: size and type in one word, data in the next four bytes
		n := int(t >> 16)
		if n > 4 {
			return 0, nil, errors.New("a small element of more than 4 bytes")
		}
		return int(t & 0xffff), append([]byte(nil), tag[4:4+n]...), nil
	}
	n := int64(m.bo.Uint32(tag[4:]))
	if n > maxMatElement {
		return 0, nil, fmt.Errorf("an element of %d bytes", n)
	}
	data, err := readExactly(m.r, n)
	if err != nil {
		return 0, nil, fmt.Errorf("truncated element (%d bytes declared): %w", n, err)
	}
	if t != miCOMPRESSED && n%8 != 0 {
		pad := make([]byte, 8-n%8)
		if _, err := io.ReadFull(m.r, pad); err != nil && err != io.EOF {
			return 0, nil, err
		}
	}
	return int(t), data, nil
}

// parseMatrix reads a miMATRIX element's subelements; nil when its name is
// not wanted.
func parseMatrix(data []byte, bo binary.ByteOrder, wanted map[string]bool) (*matArray, error) {
	r := &matReader{r: bytes.NewReader(data), bo: bo}
	_, flags, err := r.element()
	if err != nil || len(flags) < 8 {
		return nil, errors.New("a matrix without array flags")
	}
	w := bo.Uint32(flags[:4])
	class, complexFlag := int(w&0xff), w&0x0800 != 0
	_, dimb, err := r.element()
	if err != nil {
		return nil, errors.New("a matrix without dimensions")
	}
	_, nameb, err := r.element()
	if err != nil {
		return nil, errors.New("a matrix without a name")
	}
	a := &matArray{name: string(nameb), class: class}
	if !wanted[a.name] {
		return nil, nil
	}
	if class < 6 || class > 15 {
		return nil, fmt.Errorf("variable %q is of MATLAB class %d, not a numeric array", a.name, class)
	}
	if complexFlag {
		return nil, fmt.Errorf("variable %q is complex", a.name)
	}
	n := 1
	for i := 0; i+4 <= len(dimb); i += 4 {
		d := int(int32(bo.Uint32(dimb[i:])))
		if d < 0 {
			return nil, fmt.Errorf("variable %q has a negative dimension", a.name)
		}
		a.dims = append(a.dims, d)
		n *= d
	}
	typ, real, err := r.element()
	if err != nil {
		return nil, fmt.Errorf("variable %q: %w", a.name, err)
	}
	size := map[int]int{miINT8: 1, miUINT8: 1, miINT16: 2, miUINT16: 2, miINT32: 4, miUINT32: 4, miSINGLE: 4, miDOUBLE: 8, miINT64: 8, miUINT64: 8}[typ]
	if size == 0 {
		return nil, fmt.Errorf("variable %q stores its values as MAT type %d", a.name, typ)
	}
	if len(real) != n*size {
		return nil, fmt.Errorf("variable %q: %d bytes for %v values of %d bytes", a.name, len(real), a.dims, size)
	}
	if class == mxUINT8 && typ == miUINT8 {
		a.u8 = real
		return a, nil
	}
	a.values = make([]float64, n)
	for i := range a.values {
		b := real[i*size:]
		switch typ {
		case miINT8:
			a.values[i] = float64(int8(b[0]))
		case miUINT8:
			a.values[i] = float64(b[0])
		case miINT16:
			a.values[i] = float64(int16(bo.Uint16(b)))
		case miUINT16:
			a.values[i] = float64(bo.Uint16(b))
		case miINT32:
			a.values[i] = float64(int32(bo.Uint32(b)))
		case miUINT32:
			a.values[i] = float64(bo.Uint32(b))
		case miSINGLE:
			a.values[i] = float64(math.Float32frombits(bo.Uint32(b)))
		case miDOUBLE:
			a.values[i] = math.Float64frombits(bo.Uint64(b))
		case miINT64:
			a.values[i] = float64(int64(bo.Uint64(b)))
		case miUINT64:
			a.values[i] = float64(bo.Uint64(b))
		}
	}
	return a, nil
}

// bytesOf is the array's values as bytes (uint8 images stored in another
// type are converted, each value checked to be a whole 0..255).
func (a *matArray) bytesOf() ([]byte, error) {
	if a.u8 != nil {
		return a.u8, nil
	}
	out := make([]byte, len(a.values))
	for i, v := range a.values {
		if v < 0 || v > 255 || v != math.Trunc(v) {
			return nil, fmt.Errorf("variable %q: value %v is not a uint8 pixel", a.name, v)
		}
		out[i] = byte(v)
	}
	return out, nil
}
