package data

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allocated is the bytes f allocates.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// A thin image's resize to a shorter side costs the crop's window, not the
// whole resized axis: a 1 x 200,000 PNG under resize=28,center-crop=28x28
// resizes to 28 x 5,600,000, of which the 28 x 28 crop is computed (before,
// its coefficients for all 5.6 million rows: 248 MB).
func TestThinImageResize(t *testing.T) {
	im := image.NewGray(image.Rect(0, 0, 1, 200000))
	for i := range im.Pix {
		im.Pix[i] = uint8(i)
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, im))
	assert.Less(t, b.Len(), 4096, "a few KB of file")
	img, err := DecodeLimit(b.Bytes(), DefaultLimits())
	require.NoError(t, err)
	tf, err := ParseTransform("resize=28,center-crop=28x28", 1, 28, 28, []float64{0}, []float64{1})
	require.NoError(t, err)
	cost, err := tf.Cost(1, 200000, 1, 1)
	require.NoError(t, err)
	assert.Less(t, cost, int64(1<<20), "the transform's intermediates")
	require.NoError(t, tf.Check(img, 8<<20))
	dst := make([]float32, 28*28)
	used := allocated(func() { require.NoError(t, tf.Apply(img, 0, dst)) })
	assert.Less(t, used, uint64(2<<20), "Apply allocated %d bytes", used)
	assert.LessOrEqual(t, int64(used), cost+64<<10, "Cost bounds what Apply allocates")

	// Every filter, and the float path, stay within the window too.
	for _, f := range []string{"bicubic", "nearest"} {
		tf, err := ParseTransform("resize=28,resize-filter="+f+",center-crop=28x28", 1, 28, 28, []float64{0}, []float64{1})
		require.NoError(t, err)
		used := allocated(func() { require.NoError(t, tf.Apply(img, 0, dst)) })
		assert.Less(t, used, uint64(2<<20), "%s: %d bytes", f, used)
	}
	fimg := Image{C: 1, H: 200000, W: 1, Pix: make([]float32, 200000)}
	used = allocated(func() { require.NoError(t, tf.Apply(fimg, 0, dst)) })
	assert.Less(t, used, uint64(4<<20), "float: %d bytes", used)
}

// Cost follows what Pixels allocates, for resizes up and down, crops,
// padding and conversions; Check refuses what would pass the budget before
// allocating, and Feasible refuses at start a transform no image passes.
func TestTransformCost(t *testing.T) {
	for _, c := range []struct {
		opts    string
		c, h, w int
		model   [3]int
	}{
		{"resize=256,center-crop=224", 3, 375, 500, [3]int{3, 224, 224}},
		{"resize=32x32", 3, 1000, 700, [3]int{3, 32, 32}},
		{"resize=480x480,resize-filter=bicubic", 3, 200, 300, [3]int{3, 480, 480}},
		{"center-crop=32x32", 3, 20, 40, [3]int{3, 32, 32}},
		{"gray,resize=28x28", 3, 100, 90, [3]int{1, 28, 28}},
		{"", 1, 28, 28, [3]int{3, 28, 28}},
	} {
		tf, err := ParseTransform(c.opts, c.model[0], c.model[1], c.model[2], make([]float64, c.model[0]), ones(c.model[0]))
		require.NoError(t, err, c.opts)
		img := Image{C: c.c, H: c.h, W: c.w, Pix8: make([]uint8, c.c*c.h*c.w)}
		cost, err := tf.Cost(c.c, c.h, c.w, 1)
		require.NoError(t, err, c.opts)
		used := allocated(func() { _, err = tf.Pixels(img, 0) })
		require.NoError(t, err)
		assert.LessOrEqual(t, int64(used), cost+64<<10, "%s: allocated %d, cost %d", c.opts, used, cost)
		assert.GreaterOrEqual(t, cost+64<<10, int64(used))
		assert.Error(t, tf.Check(img, int64(len(img.Pix8))+cost/2), "%s: half the cost is refused", c.opts)
		require.NoError(t, tf.Check(img, int64(len(img.Pix8))+cost), c.opts)
	}
	tf, err := ParseTransform("resize=100000x100000", 3, 224, 224, make([]float64, 3), ones(3))
	require.NoError(t, err)
	var se *SizeError
	assert.ErrorAs(t, tf.Feasible(512<<20), &se, "a fixed size that is not the model's")
	// Only the crop's window of a resize is computed: cheap, whatever the size.
	tf, err = ParseTransform("resize=100000x100000,center-crop=224x224", 3, 224, 224, make([]float64, 3), ones(3))
	require.NoError(t, err)
	assert.NoError(t, tf.Feasible(512<<20))
	tf, err = ParseTransform("resize=20000x20000", 3, 20000, 20000, make([]float64, 3), ones(3))
	require.NoError(t, err)
	err = tf.Feasible(512 << 20)
	assert.True(t, errors.Is(err, ErrTooLarge), "no image passes the budget: %v", err)
	assert.ErrorContains(t, err, "for even the smallest image")
	tf, err = ParseTransform("resize=256,center-crop=224x224", 3, 224, 224, make([]float64, 3), ones(3))
	require.NoError(t, err)
	assert.NoError(t, tf.Feasible(512<<20))
}

func ones(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = 1
	}
	return out
}
