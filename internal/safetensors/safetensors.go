// Package safetensors reads and writes the safetensors format
// (huggingface/safetensors): an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, an optional
// "__metadata__" map of strings, then the raw little-endian data. Nothing
// in a file is executed: loading one is safe.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
)

// Tensor is one named array: F64, F32 or I64 (Data holds its values as
// float64 for F64 and I64, F32 in Data32).
type Tensor struct {
	DType  string // "F64", "F32" or "I64"
	Shape  []int
	Data   []float64 // F64, I64
	Data32 []float32 // F32
}

// File is a safetensors file's tensors and metadata.
type File struct {
	Tensors  map[string]*Tensor
	Metadata map[string]string
}

type entry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Encode returns the file's bytes (tensors in name order).
func Encode(f *File) ([]byte, error) {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	if len(f.Metadata) > 0 {
		header["__metadata__"] = f.Metadata
	}
	var data []byte
	for _, n := range names {
		t := f.Tensors[n]
		start := len(data)
		switch t.DType {
		case "F64", "I64":
			if len(t.Data) != numel(t.Shape) {
				return nil, fmt.Errorf("safetensors: %s: %d values for shape %v", n, len(t.Data), t.Shape)
			}
			for _, v := range t.Data {
				if t.DType == "F64" {
					data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
				} else {
					data = binary.LittleEndian.AppendUint64(data, uint64(int64(v)))
				}
			}
		case "F32":
			if len(t.Data32) != numel(t.Shape) {
				return nil, fmt.Errorf("safetensors: %s: %d values for shape %v", n, len(t.Data32), t.Shape)
			}
			for _, v := range t.Data32 {
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
			}
		default:
			return nil, fmt.Errorf("safetensors: %s: dtype %q", n, t.DType)
		}
		header[n] = entry{DType: t.DType, Shape: append([]int{}, t.Shape...), Offsets: [2]int{start, len(data)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	for len(h)%8 != 0 { // the format pads the header with spaces to 8 bytes
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	return append(out, data...), nil
}

// maxHeader bounds the JSON header a reader accepts.
const maxHeader = 100 << 20

// Decode parses a file's bytes, checking every range against the data.
func Decode(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, errors.New("safetensors: shorter than its header length")
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("safetensors: a header of %d bytes in a file of %d", n, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	data := b[8+n:]
	f := &File{Tensors: map[string]*Tensor{}, Metadata: map[string]string{}}
	for name, v := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(v, &f.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: metadata: %w", err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", name, err)
		}
		size := map[string]int{"F64": 8, "I64": 8, "F32": 4}[e.DType]
		if size == 0 {
			return nil, fmt.Errorf("safetensors: %s: dtype %q is not read here", name, e.DType)
		}
		cnt := 1
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && cnt > math.MaxInt32/d) {
				return nil, fmt.Errorf("safetensors: %s: shape %v", name, e.Shape)
			}
			cnt *= d
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > len(data) || hi-lo != cnt*size {
			return nil, fmt.Errorf("safetensors: %s: bytes %d..%d for %d values of %s in %d bytes of data", name, lo, hi, cnt, e.DType, len(data))
		}
		t := &Tensor{DType: e.DType, Shape: e.Shape}
		p := data[lo:hi]
		switch e.DType {
		case "F64":
			t.Data = make([]float64, cnt)
			for i := range t.Data {
				t.Data[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[8*i:]))
			}
		case "I64":
			t.Data = make([]float64, cnt)
			for i := range t.Data {
				t.Data[i] = float64(int64(binary.LittleEndian.Uint64(p[8*i:])))
			}
		case "F32":
			t.Data32 = make([]float32, cnt)
			for i := range t.Data32 {
				t.Data32[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
			}
		}
		f.Tensors[name] = t
	}
	return f, nil
}

// ReadFile reads and decodes a file.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
