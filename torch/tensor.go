package torch

// Tensor is a float32 tensor in Go memory, row-major.
type Tensor struct {
	Shape []int
	Data  []float32
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
