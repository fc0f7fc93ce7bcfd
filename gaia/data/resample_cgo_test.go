//go:build cgo

package data

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestResamplePassesAgree: the C passes of a cgo build give the Go passes'
// bytes (the ones a build without cgo runs), on random images, sizes,
// windows and filters, 1 and 3 channels.
func TestResamplePassesAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for trial := 0; trial < 300; trial++ {
		c := []int{1, 3}[trial%2]
		w, h := 1+rng.Intn(300), 1+rng.Intn(300)
		ow, oh := 1+rng.Intn(500), 1+rng.Intn(500)
		k := []Filter{FilterBilinear, FilterBicubic}[rng.Intn(2)].kernel()
		src := make([]uint8, w*h*c)
		rng.Read(src)
		hor, vert := newAxis(w, ow, k), newAxis(h, oh, k)
		a, b := make([]uint8, h*ow*c), make([]uint8, h*ow*c)
		hpass8C(src, w, c, h, hor.bounds, hor.k8, hor.ksize, ow, a)
		hpass8Go(src, w, c, h, hor.bounds, hor.k8, hor.ksize, ow, b)
		require.Equal(t, b, a, "horizontal %dx%d to %d, %d channels", w, h, ow, c)
		a, b = make([]uint8, oh*ow*c), make([]uint8, oh*ow*c)
		vpass8C(b[:0:0], 0, nil, nil, 0, 0, nil) // empty passes are no-ops
		tmp := make([]uint8, h*ow*c)
		hpass8Go(src, w, c, h, hor.bounds, hor.k8, hor.ksize, ow, tmp)
		vpass8C(tmp, ow*c, vert.bounds, vert.k8, vert.ksize, oh, a)
		vpass8Go(tmp, ow*c, vert.bounds, vert.k8, vert.ksize, oh, b)
		require.Equal(t, b, a, "vertical %d to %d rows, %d channels", h, oh, c)
	}
}
