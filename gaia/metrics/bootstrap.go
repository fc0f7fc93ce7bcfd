package metrics

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Sample is one detector's scores of an ID and an OOD set, merged and sorted
// once, so that the metrics of any reweighting of them (a bootstrap
// resample: each sample counted as many times as it was drawn) take one
// pass over them instead of a sort.
type Sample struct {
	n, m  int       // ID and OOD samples
	score []float64 // ascending, NaN as +Inf
	ood   []bool
	index []int32 // the sample's index on its side
}

// NewSample sorts id and ood scores for Weighted.
func NewSample(id, ood []float64) *Sample {
	id, _ = rankNaN(id)
	ood, _ = rankNaN(ood)
	s := &Sample{n: len(id), m: len(ood)}
	type e struct {
		v   float64
		ood bool
		i   int32
	}
	all := make([]e, 0, len(id)+len(ood))
	for i, v := range id {
		all = append(all, e{v, false, int32(i)})
	}
	for i, v := range ood {
		all = append(all, e{v, true, int32(i)})
	}
	sort.Slice(all, func(a, b int) bool { return all[a].v < all[b].v })
	s.score, s.ood, s.index = make([]float64, len(all)), make([]bool, len(all)), make([]int32, len(all))
	for k, x := range all {
		s.score[k], s.ood[k], s.index[k] = x.v, x.ood, x.i
	}
	return s
}

// Weighted is Compute's FPR95 (both conventions), AUROC, AUPR-In and
// AUPR-Out with ID sample i counted wID[i] times and OOD sample j wOOD[j]
// times (nil: once each); with every weight 1 they are Compute's own.
// DetectionError and the counts are left zero.
func (s *Sample) Weighted(wID, wOOD []int32) Metrics {
	w := func(k int) (id, ood int) {
		switch {
		case s.ood[k] && wOOD == nil:
			return 0, 1
		case s.ood[k]:
			return 0, int(wOOD[s.index[k]])
		case wID == nil:
			return 1, 0
		}
		return int(wID[s.index[k]]), 0
	}
	nID, nOOD := 0, 0
	for k := range s.score {
		a, b := w(k)
		nID, nOOD = nID+a, nOOD+b
	}
	var out Metrics
	if nID == 0 || nOOD == 0 {
		return Metrics{FPR95: math.NaN(), FPR95OODPositive: math.NaN(), AUROC: math.NaN(), AUPRIn: math.NaN(), AUPROut: math.NaN()}
	}
	// OOD positive: thresholds from the highest score down (roc(ood, id)).
	tp, fp, prevTP, prevFP := 0, 0, 0, 0
	auc, apOut, prevR := 0.0, 0.0, 0.0
	fprOOD := 1.0
	found := false
	for k := len(s.score) - 1; k >= 0; {
		j := k
		for ; j >= 0 && s.score[j] == s.score[k]; j-- {
			a, b := w(j)
			fp, tp = fp+a, tp+b
		}
		k = j
		if tp == prevTP && fp == prevFP {
			continue // a tie group of weight 0: no point of its own
		}
		x0, x1 := float64(prevFP)/float64(nID), float64(fp)/float64(nID)
		y0, y1 := float64(prevTP)/float64(nOOD), float64(tp)/float64(nOOD)
		auc += (x1 - x0) * (y0 + y1) / 2
		if tp+fp > 0 {
			r := float64(tp) / float64(nOOD)
			apOut += (r - prevR) * float64(tp) / float64(tp+fp)
			prevR = r
		}
		if !found && float64(tp)/float64(nOOD) >= 0.95-1e-12 {
			fprOOD, found = float64(fp)/float64(nID), true
		}
		prevTP, prevFP = tp, fp
	}
	out.AUROC, out.AUPROut, out.FPR95OODPositive = auc, apOut, fprOOD
	// ID positive: thresholds from the lowest score up (roc(-id, -ood)).
	tp, fp, prevTP, prevFP = 0, 0, 0, 0
	apIn, prevR := 0.0, 0.0
	fprID := 1.0
	found = false
	for k := 0; k < len(s.score); {
		j := k
		for ; j < len(s.score) && s.score[j] == s.score[k]; j++ {
			a, b := w(j)
			tp, fp = tp+a, fp+b
		}
		k = j
		if tp == prevTP && fp == prevFP {
			continue
		}
		if tp+fp > 0 {
			r := float64(tp) / float64(nID)
			apIn += (r - prevR) * float64(tp) / float64(tp+fp)
			prevR = r
		}
		if !found && float64(tp)/float64(nID) >= 0.95-1e-12 {
			fprID, found = float64(fp)/float64(nOOD), true
		}
		prevTP, prevFP = tp, fp
	}
	out.FPR95, out.AUPRIn = fprID, apIn
	return out
}

// Resampler draws bootstrap resamples as counts: n draws with replacement
// from n samples, each sample's count. Seeded, so that a seed gives the
// same resamples, in the same order, every time.
type Resampler struct{ rng *rand.Rand }

// NewResampler seeds a Resampler (PCG).
func NewResampler(seed uint64) *Resampler {
	return &Resampler{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

// Counts fills counts (its length the sample size) with one resample.
func (r *Resampler) Counts(counts []int32) {
	clear(counts)
	n := len(counts)
	for i := 0; i < n; i++ {
		counts[r.rng.IntN(n)]++
	}
}

// Percentile is the p-th percentile (0-100) of values, numpy's default
// (linear between closest ranks); it sorts values.
func Percentile(values []float64, p float64) float64 {
	sort.Float64s(values)
	if len(values) == 0 {
		return math.NaN()
	}
	pos := p / 100 * float64(len(values)-1)
	lo := math.Floor(pos)
	i := int(lo)
	if i >= len(values)-1 {
		return values[len(values)-1]
	}
	return values[i] + (values[i+1]-values[i])*(pos-lo)
}

// PercentileInterval is the central level interval of bootstrap values
// (the percentile bootstrap); it sorts them.
func PercentileInterval(values []float64, level float64) [2]float64 {
	a := 100 * (1 - level) / 2
	return [2]float64{Percentile(values, a), Percentile(values, 100-a)}
}
