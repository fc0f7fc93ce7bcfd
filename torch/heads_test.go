//go:build cgo && !gaia_nolibtorch

package torch

import (
	"math"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gaia-ood/gaia/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func randTensor(rng *rand.Rand, shape ...int) *Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := &Tensor{Shape: shape, Data: make([]float32, n)}
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

func row64(t *Tensor, i int) []float64 {
	w := len(t.Float64()) / t.Shape[0]
	return t.Float64()[i*w : (i+1)*w]
}

func relClose(t *testing.T, want, got, rtol float64, format string, args ...any) {
	t.Helper()
	assert.InDelta(t, want, got, rtol*math.Max(1e-12, math.Abs(want)), append([]any{format}, args...)...)
}

// TestHeads: every head against the same arithmetic written in Go (float64)
// on the tap values the module hands back, on a CIFAR ResNet-20; the
// classifier gaia found gives the model's logits.
func TestHeads(t *testing.T) {
	dir := testdata(t)
	testenv.Need(t, filepath.Join(dir, "cifar_resnet20.script.pt"))
	m, err := Load(filepath.Join(dir, "cifar_resnet20.script.pt"), device)
	require.NoError(t, err)
	defer m.Close()
	w, b, ok := m.Classifier()
	require.True(t, ok)
	require.Equal(t, []int{10, 64}, w.Shape)
	require.Equal(t, []int{10}, b.Shape)
	var fmap, cls int
	for _, tp := range m.Taps() {
		switch tp.Kind {
		case KindFeatureMap:
			fmap = tp.Index
		case KindClassifierInput:
			cls = tp.Index
		}
	}
	rng := rand.New(rand.NewSource(3))
	const n = 6
	x := randTensor(rng, n, 3, 32, 32)
	base, err := m.Run(x, []int{cls, fmap}, nil)
	require.NoError(t, err)
	z, h, f := base.Outputs[0], base.Values[0], base.Values[1]
	logitsOf := func(hv []float64) []float64 {
		out := make([]float64, 10)
		for k := 0; k < 10; k++ {
			out[k] = float64(b.Data[k])
			for d, v := range hv {
				out[k] += v * float64(w.Data[k*64+d])
			}
		}
		return out
	}
	for i := 0; i < n; i++ {
		for k, v := range logitsOf(row64(h, i)) {
			relClose(t, float64(z.Data[i*10+k]), v, 1e-4, "logit %d of sample %d from the classifier", k, i)
		}
	}

	put32 := func(t2 *Tensor) Buffer {
		id, err := m.PutF32(t2.Data, t2.Shape...)
		require.NoError(t, err)
		return id
	}
	put64 := func(v []float64, shape ...int) Buffer {
		id, err := m.PutF64(v, shape...)
		require.NoError(t, err)
		return id
	}
	wb, bb := put32(w), put32(b)
	const C, D = 4, 64
	means := make([]float64, C*D)
	for i := range means {
		means[i] = rng.NormFloat64()
	}
	prec := make([]float64, D*D) // A A^T + I: symmetric positive definite
	a := make([]float64, D*D)
	for i := range a {
		a[i] = rng.NormFloat64() / 8
	}
	for i := 0; i < D; i++ {
		for j := 0; j < D; j++ {
			for k := 0; k < D; k++ {
				prec[i*D+j] += a[i*D+k] * a[j*D+k]
			}
			if i == j {
				prec[i*D+j]++
			}
		}
	}
	bank := randTensor(rng, 40, D)
	for r := 0; r < 40; r++ {
		var s float64
		for _, v := range bank.Data[r*D : (r+1)*D] {
			s += float64(v) * float64(v)
		}
		for c := r * D; c < (r+1)*D; c++ {
			bank.Data[c] = float32(float64(bank.Data[c]) / math.Sqrt(s))
		}
	}
	origin := make([]float64, D)
	for i := range origin {
		origin[i] = rng.NormFloat64()
	}
	const R = 20
	basis := make([]float64, D*R)
	for i := range basis {
		basis[i] = rng.NormFloat64()
	}
	logd := make([]float64, 3*10)
	for c := 0; c < 3; c++ {
		var s float64
		for k := 0; k < 10; k++ {
			logd[c*10+k] = rng.Float64() + 0.1
			s += logd[c*10+k]
		}
		for k := 0; k < 10; k++ {
			logd[c*10+k] = math.Log(logd[c*10+k] / s)
		}
	}
	gram := put64(make([]float64, D*D), D, D)
	heads := []Head{
		{Kind: HeadLinear, Tap: cls, Buf: [4]Buffer{wb, bb, NoBuffer, NoBuffer}},
		{Kind: HeadLinear, Tap: cls, Buf: [4]Buffer{wb, bb, NoBuffer, NoBuffer}, Arg: [4]float64{1, 0.3}},
		{Kind: HeadMahalanobis, Tap: cls, Buf: [4]Buffer{put64(means, C, D), put64(prec, D, D), NoBuffer, NoBuffer}},
		{Kind: HeadKNN, Tap: cls, Buf: [4]Buffer{put32(bank), NoBuffer, NoBuffer, NoBuffer}, Arg: [4]float64{5}},
		{Kind: HeadResidual, Tap: cls, Buf: [4]Buffer{put64(origin, D), put64(basis, D, R), NoBuffer, NoBuffer}},
		{Kind: HeadASH, Tap: fmap, Buf: [4]Buffer{wb, bb, NoBuffer, NoBuffer}, Arg: [4]float64{0, 90}},
		{Kind: HeadASH, Tap: fmap, Buf: [4]Buffer{wb, bb, NoBuffer, NoBuffer}, Arg: [4]float64{1, 65}},
		{Kind: HeadASH, Tap: fmap, Buf: [4]Buffer{wb, bb, NoBuffer, NoBuffer}, Arg: [4]float64{2, 90}},
		{Kind: HeadKL, Tap: TapLogits, Buf: [4]Buffer{put64(logd, 3, 10), NoBuffer, NoBuffer, NoBuffer}},
		{Kind: HeadGram, Tap: cls, Buf: [4]Buffer{gram, NoBuffer, NoBuffer, NoBuffer}},
	}
	r, err := m.Run(x, nil, nil, heads...)
	require.NoError(t, err)
	require.Len(t, r.Heads, len(heads))
	_, err = m.Run(x, nil, nil, heads[len(heads)-1]) // a second batch into the Gram
	require.NoError(t, err)

	for i := 0; i < n; i++ {
		hv := row64(h, i)
		// Linear: the logits; clipped at 0.3 (ReAct).
		for k, v := range logitsOf(hv) {
			relClose(t, v, row64(r.Heads[0], i)[k], 1e-4, "linear %d %d", i, k)
		}
		clipped := make([]float64, D)
		for d, v := range hv {
			clipped[d] = math.Min(v, float64(float32(0.3)))
		}
		for k, v := range logitsOf(clipped) {
			relClose(t, v, row64(r.Heads[1], i)[k], 1e-4, "clipped linear %d %d", i, k)
		}
		// Mahalanobis: min over classes.
		best := math.Inf(1)
		for c := 0; c < C; c++ {
			var s float64
			for p := 0; p < D; p++ {
				for q := 0; q < D; q++ {
					s += (hv[p] - means[c*D+p]) * prec[p*D+q] * (hv[q] - means[c*D+q])
				}
			}
			best = math.Min(best, s)
		}
		relClose(t, best, r.Heads[2].F64[i], 1e-9, "mahalanobis %d", i)
		// KNN: the 5th smallest distance.
		var norm float64
		for _, v := range hv {
			norm += v * v
		}
		var dists []float64
		for q := 0; q < 40; q++ {
			var s float64
			for d := 0; d < D; d++ {
				e := hv[d]/math.Sqrt(norm) - float64(bank.Data[q*D+d])
				s += e * e
			}
			dists = append(dists, math.Sqrt(s))
		}
		sort.Float64s(dists)
		relClose(t, dists[4], r.Heads[3].F64[i], 1e-6, "knn %d", i)
		// Residual norm.
		var res float64
		for c := 0; c < R; c++ {
			var s float64
			for d := 0; d < D; d++ {
				s += (hv[d] - origin[d]) * basis[d*R+c]
			}
			res += s * s
		}
		relClose(t, math.Sqrt(res), r.Heads[4].F64[i], 1e-9, "residual %d", i)
		// ASH, three variants, against a Go rendering of the official code.
		for j, v := range []struct {
			variant int
			p       float64
		}{{0, 90}, {1, 65}, {2, 90}} {
			want := logitsOf(ashPool(row64(f, i), f.Shape[1], f.Shape[2]*f.Shape[3], v.variant, v.p))
			for k := range want {
				relClose(t, want[k], row64(r.Heads[5+j], i)[k], 1e-4, "ash variant %d sample %d logit %d", v.variant, i, k)
			}
		}
		// KL to the nearest class mean.
		zr := row64(z, i)
		mx := math.Inf(-1)
		for _, v := range zr {
			mx = math.Max(mx, v)
		}
		var se float64
		for _, v := range zr {
			se += math.Exp(v - mx)
		}
		klBest := math.Inf(1)
		for c := 0; c < 3; c++ {
			var s float64
			for k, v := range zr {
				lp := v - mx - math.Log(se)
				s += math.Exp(lp) * (lp - logd[c*10+k])
			}
			klBest = math.Min(klBest, s)
		}
		relClose(t, klBest, r.Heads[8].F64[i], 1e-9, "kl %d", i)
	}
	// The Gram: two batches of the same x.
	g, err := m.Get(gram)
	require.NoError(t, err)
	for p := 0; p < D; p += 7 {
		for q := 0; q < D; q += 5 {
			var s float64
			for i := 0; i < n; i++ {
				s += row64(h, i)[p] * row64(h, i)[q]
			}
			relClose(t, 2*s, g.F64[p*D+q], 1e-5, "gram %d %d", p, q)
		}
	}
	m.Drop(gram)
	_, err = m.Get(gram)
	assert.ErrorContains(t, err, "not on the module")
	_, err = m.Run(x, nil, nil, Head{Kind: HeadKNN, Tap: cls, Buf: [4]Buffer{gram}, Arg: [4]float64{5}})
	assert.ErrorContains(t, err, "not on the module")
	_, err = m.Run(x, nil, nil, Head{Kind: HeadKL, Tap: cls, Buf: [4]Buffer{wb}})
	assert.ErrorContains(t, err, "reads the logits")
	narrow := put32(randTensor(rng, 8, 10))
	_, err = m.Run(x, nil, nil, Head{Kind: HeadKNN, Tap: cls, Buf: [4]Buffer{narrow}, Arg: [4]float64{5}})
	assert.ErrorContains(t, err, "64 features, the buffer 10", "a bank of the wrong width")
	_, err = m.Run(x, nil, nil, Head{Kind: HeadKNN, Tap: cls, Buf: [4]Buffer{narrow}, Arg: [4]float64{50}})
	assert.Error(t, err)

	// Eigh: A v = lambda v.
	wv, vv, err := EighF64(prec, D)
	require.NoError(t, err)
	for c := 0; c < D; c += 9 {
		for i := 0; i < D; i++ {
			var s float64
			for j := 0; j < D; j++ {
				s += prec[i*D+j] * vv[j*D+c]
			}
			assert.InDelta(t, wv[c]*vv[i*D+c], s, 1e-9)
		}
	}
	assert.True(t, sort.Float64sAreSorted(wv))
}

// ashPool is the official ASH code's pruning (and its s, p, b variants) on
// one sample's map (channels x hw values), then global average pooling.
func ashPool(fmap []float64, channels, hw, variant int, p float64) []float64 {
	n := channels * hw
	k := n - int(math.RoundToEven(float64(n)*p/100))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return fmap[idx[a]] > fmap[idx[b]] })
	var s1, s2 float64
	for _, v := range fmap {
		s1 += v
	}
	kept := make([]float64, n)
	for _, i := range idx[:k] {
		kept[i] = fmap[i]
		s2 += fmap[i]
	}
	for _, i := range idx[:k] {
		switch variant {
		case 0:
			kept[i] *= math.Exp(s1 / s2)
		case 2:
			kept[i] = s1 / float64(k)
		}
	}
	out := make([]float64, channels)
	for c := 0; c < channels; c++ {
		for j := 0; j < hw; j++ {
			out[c] += kept[c*hw+j]
		}
		out[c] /= float64(hw)
	}
	return out
}
