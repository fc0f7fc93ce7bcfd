package torch

// Tensor is a tensor in Go memory, row-major: float32 in Data, or, for
// the few results LibTorch computes in float64 (fitted statistics, some
// detector heads), float64 in F64 with Data nil.
type Tensor struct {
	Shape []int
	Data  []float32
	F64   []float64
}

// Float64 returns the values as float64 (converting float32 ones).
func (t *Tensor) Float64() []float64 {
	if t.F64 != nil {
		return t.F64
	}
	out := make([]float64, len(t.Data))
	for i, v := range t.Data {
		out[i] = float64(v)
	}
	return out
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
