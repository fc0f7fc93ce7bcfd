package safetensors

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTripAndBadFiles(t *testing.T) {
	f := &File{Tensors: map[string]*Tensor{
		"a": {DType: "F64", Shape: []int{2, 3}, Data: []float64{1, 2, 3, 4, 5, -6.5}},
		"b": {DType: "F32", Shape: []int{3}, Data32: []float32{0.5, 1, 2}},
		"c": {DType: "I64", Shape: []int{2}, Data: []float64{7, -1}},
		"e": {DType: "F64", Shape: []int{0, 4}, Data: []float64{}},
	}, Metadata: map[string]string{"k": "v"}}
	b, err := Encode(f)
	require.NoError(t, err)
	assert.Zero(t, (len(b)-8-len(b[8+int(b[0]):]))%8)
	g, err := Decode(b)
	require.NoError(t, err)
	assert.Equal(t, f.Metadata, g.Metadata)
	for n, want := range f.Tensors {
		assert.Equal(t, want.Shape, g.Tensors[n].Shape, n)
		assert.Equal(t, want.Data32, g.Tensors[n].Data32, n)
		if len(want.Data) > 0 {
			assert.Equal(t, want.Data, g.Tensors[n].Data, n)
		}
	}
	for _, cut := range []int{3, 20, len(b) - 4} {
		_, err := Decode(b[:cut])
		assert.Error(t, err, "cut at %d", cut)
	}
	_, err = Decode(append([]byte{255, 255, 255, 255, 255, 255, 255, 255}, b[8:]...))
	assert.ErrorContains(t, err, "a header of")
	_, err = Encode(&File{Tensors: map[string]*Tensor{"x": {DType: "F64", Shape: []int{2}, Data: []float64{1}}}})
	assert.ErrorContains(t, err, "1 values for shape [2]")
}
