// Package npy reads float arrays from NumPy's .npy and .npz files: enough for
// tests to compare with references written by numpy.save and numpy.savez.
package npy

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Array is a float32 array with its shape (float64 data is converted).
type Array struct {
	Shape []int
	Data  []float32
}

var (
	descrRe = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	orderRe = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	shapeRe = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// Read parses one .npy stream of little-endian float32 or float64 values in C order.
func Read(r io.Reader) (*Array, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("npy: not a .npy stream")
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, fmt.Errorf("npy: short header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:12])), 12
	default:
		return nil, fmt.Errorf("npy: version %d not supported", b[6])
	}
	if off+hlen > len(b) {
		return nil, fmt.Errorf("npy: short header")
	}
	header := string(b[off : off+hlen])
	body := b[off+hlen:]
	d := descrRe.FindStringSubmatch(header)
	o := orderRe.FindStringSubmatch(header)
	s := shapeRe.FindStringSubmatch(header)
	if d == nil || o == nil || s == nil {
		return nil, fmt.Errorf("npy: malformed header %q", header)
	}
	if o[1] == "True" {
		return nil, fmt.Errorf("npy: Fortran order not supported")
	}
	a := &Array{}
	n := 1
	for _, f := range strings.Split(s[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("npy: bad shape %q", s[1])
		}
		a.Shape = append(a.Shape, v)
		n *= v
	}
	switch d[1] {
	case "<f4":
		if len(body) < 4*n {
			return nil, fmt.Errorf("npy: %d bytes of data, need %d", len(body), 4*n)
		}
		a.Data = make([]float32, n)
		for i := range a.Data {
			a.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
		}
	case "<f8":
		if len(body) < 8*n {
			return nil, fmt.Errorf("npy: %d bytes of data, need %d", len(body), 8*n)
		}
		a.Data = make([]float32, n)
		for i := range a.Data {
			a.Data[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(body[8*i:])))
		}
	default:
		return nil, fmt.Errorf("npy: dtype %s not supported", d[1])
	}
	return a, nil
}

// ReadNPZ reads every array of a .npz file, keyed by name without ".npy".
func ReadNPZ(path string) (map[string]*Array, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return nil, fmt.Errorf("npz %s: %w", path, err)
	}
	out := make(map[string]*Array, len(zr.File))
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %s: %w", path, f.Name, err)
		}
		a, err := Read(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %s: %w", path, f.Name, err)
		}
		out[strings.TrimSuffix(f.Name, ".npy")] = a
	}
	return out, nil
}
