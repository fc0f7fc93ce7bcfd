package torch

import "fmt"

// Tensor is a float32 tensor in Go memory, row-major.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor checks that data holds exactly the product of shape.
func NewTensor(data []float32, shape ...int) (*Tensor, error) {
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("torch: shape %v has a non-positive axis", shape)
		}
		n *= d
	}
	if n != len(data) {
		return nil, fmt.Errorf("torch: shape %v needs %d values, have %d", shape, n, len(data))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}, nil
}

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Row returns the i-th slice along the first axis (shares memory).
func (t *Tensor) Row(i int) []float32 {
	if len(t.Shape) == 0 {
		panic("torch: Row of a scalar")
	}
	w := t.Numel() / t.Shape[0]
	return t.Data[i*w : (i+1)*w]
}
