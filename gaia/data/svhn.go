package data

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math"
)

// svhn is SVHN's cropped-digits format, as torchvision downloads it
// (test_32x32.mat, train_32x32.mat, extra_32x32.mat): X, 32 x 32 x 3 x N
// uint8 (MATLAB's column-major order), and y, N labels 1..10 where 10 is
// the digit 0, which torchvision (and so gaia) labels 0. Held in memory.
type svhn struct {
	path   string
	x      []byte
	h, w   int
	labels []int
}

func openSVHN(path string) (Source, error) {
	vars, err := readMAT(path, "X", "y")
	if err != nil {
		return nil, fmt.Errorf("svhn: %w", err)
	}
	X, y := vars["X"], vars["y"]
	if len(X.dims) != 4 || X.dims[2] != 3 {
		return nil, fmt.Errorf("svhn: %s: X has dimensions %v, want H x W x 3 x N", path, X.dims)
	}
	pix, err := X.bytesOf()
	if err != nil {
		return nil, fmt.Errorf("svhn: %s: %w", path, err)
	}
	n := X.dims[3]
	if y.values == nil && y.u8 != nil {
		for _, b := range y.u8 {
			y.values = append(y.values, float64(b))
		}
	}
	if len(y.values) != n {
		return nil, fmt.Errorf("svhn: %s: %d labels for %d images", path, len(y.values), n)
	}
	s := &svhn{path: path, x: pix, h: X.dims[0], w: X.dims[1], labels: make([]int, n)}
	for i, v := range y.values {
		if v != math.Trunc(v) || v < 0 || v > 10 {
			return nil, fmt.Errorf("svhn: %s: label %d is %v, want 1..10", path, i, v)
		}
		s.labels[i] = int(v) % 10 // 10 is the digit 0
	}
	return s, nil
}

func (s *svhn) Len() int { return len(s.labels) }

func (s *svhn) Describe() string {
	return fmt.Sprintf("SVHN %s (%d images %dx%d)", s.path, len(s.labels), s.h, s.w)
}

func (s *svhn) Load(i int) (Image, string, int, error) {
	hw := s.h * s.w
	rec := s.x[i*3*hw : (i+1)*3*hw]
	img := Image{C: 3, H: s.h, W: s.w, Pix8: make([]uint8, 3*hw)}
	// rec[c*H*W + w*H + h] (column-major) to interleaved [h][w][c].
	for c := 0; c < 3; c++ {
		for w := 0; w < s.w; w++ {
			col := rec[c*hw+w*s.h:]
			for h := 0; h < s.h; h++ {
				img.Pix8[(h*s.w+w)*3+c] = col[h]
			}
		}
	}
	return img, fmt.Sprintf("%s#%d", s.path, i), s.labels[i], nil
}

func (s *svhn) fingerprint(w io.Writer) {
	h := sha256.New()
	h.Write(s.x)
	for _, l := range s.labels {
		fmt.Fprintf(h, "%d,", l)
	}
	fmt.Fprintf(w, "content=%x\n", h.Sum(nil))
}
