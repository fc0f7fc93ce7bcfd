package metrics

import (
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowPlacements is DeLong's definition itself, in O(mn): V10 of OOD sample
// x_i = mean over ID y_j of psi(x_i, y_j), V01 of y_j = mean over x_i, psi
// 1 for x > y, 1/2 for a tie, 0 otherwise.
func slowPlacements(id, ood []float64) (v10, v01 []float64) {
	psi := func(x, y float64) float64 {
		switch {
		case x > y:
			return 1
		case x == y:
			return 0.5
		}
		return 0
	}
	v10, v01 = make([]float64, len(ood)), make([]float64, len(id))
	for i, x := range ood {
		for j, y := range id {
			p := psi(x, y)
			v10[i] += p / float64(len(id))
			v01[j] += p / float64(len(ood))
		}
	}
	return v10, v01
}

func sampleVar(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	s := 0.0
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return s / float64(len(v)-1)
}

func sampleCov(a, b []float64) float64 {
	ma, mb := 0.0, 0.0
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma, mb = ma/float64(len(a)), mb/float64(len(b))
	s := 0.0
	for i := range a {
		s += (a[i] - ma) * (b[i] - mb)
	}
	return s / float64(len(a)-1)
}

// seeded scores: continuous, with heavy ties, with NaN.
func cases(r *rand.Rand) [][2][]float64 {
	var out [][2][]float64
	for _, n := range []int{5, 40, 300} {
		id, ood := make([]float64, n), make([]float64, n+7)
		for i := range id {
			id[i] = r.NormFloat64()
		}
		for i := range ood {
			ood[i] = r.NormFloat64() + 0.8
		}
		out = append(out, [2][]float64{id, ood})
		tid, tood := make([]float64, n), make([]float64, n+3)
		for i := range tid {
			tid[i] = float64(r.Intn(4))
		}
		for i := range tood {
			tood[i] = float64(r.Intn(5))
		}
		out = append(out, [2][]float64{tid, tood})
	}
	out = append(out, [2][]float64{{0.1, math.NaN(), 0.3, 0.2}, {0.5, math.Inf(1), math.NaN(), 0.2}})
	return out
}

// The fast midrank DeLong (Sun and Xu) equals the O(mn) definition: the
// AUC, and its variance S10/m + S01/n; and the AUC is Compute's.
func TestDeLongAgainstDefinition(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for k, c := range cases(r) {
		id, ood := c[0], c[1]
		auc, se, err := DeLong(id, ood)
		require.NoError(t, err)
		rid, _ := rankNaN(id)
		rood, _ := rankNaN(ood)
		v10, v01 := slowPlacements(rid, rood)
		want := sampleVar(v10)/float64(len(ood)) + sampleVar(v01)/float64(len(id))
		assert.InDelta(t, math.Sqrt(want), se, 1e-12, "case %d", k)
		m, err := Compute(id, ood)
		require.NoError(t, err)
		assert.InDelta(t, m.AUROC, auc, 1e-12, "case %d", k)
		ci := AUROCInterval(auc, se, 0.95)
		assert.InDelta(t, math.Max(0, auc-1.959963984540054*se), ci[0], 1e-12)
		assert.LessOrEqual(t, ci[1], 1.0)
	}
	_, _, err := DeLong(nil, []float64{1})
	assert.ErrorIs(t, err, ErrEmptySet)
}

// The paired test's variance is the definition's, with the placements'
// covariance between the two detectors; a detector against itself differs
// by 0 with p = 1.
func TestPairedDeLong(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	n, m := 200, 150
	idA, oodA, idB, oodB := make([]float64, n), make([]float64, m), make([]float64, n), make([]float64, m)
	for i := range idA {
		idA[i] = r.NormFloat64()
		idB[i] = idA[i] + 0.5*r.NormFloat64() // correlated, as two detectors of one model are
	}
	for j := range oodA {
		oodA[j] = r.NormFloat64() + 1
		oodB[j] = oodA[j] + 0.5*r.NormFloat64() - 0.3
	}
	diff, se, p, err := PairedDeLong(idA, oodA, idB, oodB)
	require.NoError(t, err)
	a10, a01 := slowPlacements(idA, oodA)
	b10, b01 := slowPlacements(idB, oodB)
	v := (sampleVar(a10)+sampleVar(b10)-2*sampleCov(a10, b10))/float64(m) + (sampleVar(a01)+sampleVar(b01)-2*sampleCov(a01, b01))/float64(n)
	assert.InDelta(t, math.Sqrt(v), se, 1e-12)
	ma, _ := Compute(idA, oodA)
	mb, _ := Compute(idB, oodB)
	assert.InDelta(t, ma.AUROC-mb.AUROC, diff, 1e-12)
	assert.InDelta(t, math.Erfc(math.Abs(diff/se)/math.Sqrt2), p, 1e-15)
	assert.Greater(t, diff, 0.0)
	assert.Less(t, p, 0.05, "a shift of 0.3 on 150 samples is detected")
	diff, _, p, err = PairedDeLong(idA, oodA, idA, oodA)
	require.NoError(t, err)
	assert.Equal(t, 0.0, diff)
	assert.Equal(t, 1.0, p)
	_, _, _, err = PairedDeLong(idA, oodA, idB[:10], oodB)
	assert.ErrorContains(t, err, "different samples")
	assert.InDelta(t, 1.959963984540054, Z(0.95), 1e-12)
	assert.InDelta(t, 2.5758293035489, Z(0.99), 1e-12)
}

// Weighted with every weight 1 is Compute; with counts it is Compute of the
// samples repeated that many times.
func TestWeightedIsCompute(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for k, c := range cases(r) {
		id, ood := c[0], c[1]
		s := NewSample(id, ood)
		want, err := Compute(id, ood)
		require.NoError(t, err)
		got := s.Weighted(nil, nil)
		for _, p := range [][2]float64{{want.FPR95, got.FPR95}, {want.FPR95OODPositive, got.FPR95OODPositive},
			{want.AUROC, got.AUROC}, {want.AUPRIn, got.AUPRIn}, {want.AUPROut, got.AUPROut}} {
			assert.InDelta(t, p[0], p[1], 1e-12, "case %d", k)
		}
		wi, wo := make([]int32, len(id)), make([]int32, len(ood))
		var rid, rood []float64
		for i := range wi {
			wi[i] = int32(r.Intn(3))
			for k := int32(0); k < wi[i]; k++ {
				rid = append(rid, id[i])
			}
		}
		for j := range wo {
			wo[j] = int32(r.Intn(3))
			for k := int32(0); k < wo[j]; k++ {
				rood = append(rood, ood[j])
			}
		}
		if len(rid) == 0 || len(rood) == 0 {
			continue
		}
		want, _ = Compute(rid, rood)
		got = s.Weighted(wi, wo)
		for _, p := range [][2]float64{{want.FPR95, got.FPR95}, {want.FPR95OODPositive, got.FPR95OODPositive},
			{want.AUROC, got.AUROC}, {want.AUPRIn, got.AUPRIn}, {want.AUPROut, got.AUPROut}} {
			assert.InDelta(t, p[0], p[1], 1e-12, "case %d weighted", k)
		}
	}
}

// Resamples are the same for a seed, and counts sum to the sample size.
func TestResampler(t *testing.T) {
	a, b := make([]int32, 50), make([]int32, 50)
	NewResampler(7).Counts(a)
	NewResampler(7).Counts(b)
	assert.Equal(t, a, b)
	s := int32(0)
	for _, c := range a {
		s += c
	}
	assert.Equal(t, int32(50), s)
	NewResampler(8).Counts(b)
	assert.NotEqual(t, a, b)
	assert.InDelta(t, 2.5, Percentile([]float64{4, 1, 2, 3}, 50), 1e-12)
	ci := PercentileInterval([]float64{1, 2, 3, 4}, 0.95) // numpy: percentile(..., [2.5, 97.5])
	assert.InDelta(t, 1.075, ci[0], 1e-12)
	assert.InDelta(t, 3.925, ci[1], 1e-12)
}
