package metrics

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Z is the two-sided normal quantile of a confidence level: the z with
// P(|N(0,1)| <= z) = level (1.96 at 0.95).
func Z(level float64) float64 { return math.Sqrt2 * math.Erfinv(level) }

// normalP is the two-sided p-value of a standard normal statistic.
func normalP(z float64) float64 { return math.Erfc(math.Abs(z) / math.Sqrt2) }

// placements are DeLong's structural components of the AUC with OOD as the
// positive class (its scores higher): V10[i] for each OOD sample i, the
// fraction of ID samples it outranks (ties half); V01[j] for each ID sample
// j, the fraction of OOD samples that outrank it. AUROC is the mean of
// either. Computed from midranks (Sun and Xu 2014): O((m+n) log(m+n)).
type placements struct{ v10, v01 []float64 }

func newPlacements(id, ood []float64) placements {
	id, _ = rankNaN(id)
	ood, _ = rankNaN(ood)
	m, n := len(ood), len(id)
	all := make([]float64, 0, m+n)
	all = append(append(all, ood...), id...)
	tz := midranks(all)
	tx, ty := midranks(ood), midranks(id)
	p := placements{v10: make([]float64, m), v01: make([]float64, n)}
	for i := range ood {
		p.v10[i] = (tz[i] - tx[i]) / float64(n)
	}
	for j := range id {
		p.v01[j] = 1 - (tz[m+j]-ty[j])/float64(m)
	}
	return p
}

// midranks are the 1-based ranks of v, ties given their mean rank.
func midranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	out := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && v[idx[j]] == v[idx[i]] {
			j++
		}
		r := float64(i+j+1) / 2 // mean of ranks i+1 .. j
		for k := i; k < j; k++ {
			out[idx[k]] = r
		}
		i = j
	}
	return out
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// cov is the sample covariance of a and b (n - 1 in the denominator; 0 for
// a single value).
func cov(a, b []float64) float64 {
	if len(a) < 2 {
		return 0
	}
	ma, mb := mean(a), mean(b)
	s := 0.0
	for i := range a {
		s += (a[i] - ma) * (b[i] - mb)
	}
	return s / float64(len(a)-1)
}

// DeLong is the AUROC of OOD scores (as Compute's: ties count half, NaN as
// +Inf) with its standard error by DeLong, DeLong and Clarke-Pearson (1988):
// var = S10/m + S01/n, the placements' sample variances (n - 1) over the m
// OOD and n ID samples.
func DeLong(id, ood []float64) (auc, se float64, err error) {
	if len(id) == 0 || len(ood) == 0 {
		return 0, 0, fmt.Errorf("delong: %w", ErrEmptySet)
	}
	p := newPlacements(id, ood)
	v := cov(p.v10, p.v10)/float64(len(ood)) + cov(p.v01, p.v01)/float64(len(id))
	return mean(p.v10), math.Sqrt(v), nil
}

// AUROCInterval is AUC +- z SE, clipped to [0, 1].
func AUROCInterval(auc, se, level float64) [2]float64 {
	z := Z(level)
	return [2]float64{math.Max(0, auc-z*se), math.Min(1, auc+z*se)}
}

// PairedDeLong compares the AUROCs of two detectors scored on the same
// samples (idA[i] and idB[i] the same ID sample, oodA[j] and oodB[j] the
// same OOD sample): the difference A - B, its standard error from the
// placements' covariance (DeLong 1988), and the two-sided normal p-value.
func PairedDeLong(idA, oodA, idB, oodB []float64) (diff, se, p float64, err error) {
	if len(idA) != len(idB) || len(oodA) != len(oodB) {
		return 0, 0, 0, errors.New("delong: paired detectors were scored on different samples")
	}
	if len(idA) == 0 || len(oodA) == 0 {
		return 0, 0, 0, fmt.Errorf("delong: %w", ErrEmptySet)
	}
	a, b := newPlacements(idA, oodA), newPlacements(idB, oodB)
	m, n := float64(len(oodA)), float64(len(idA))
	v := (cov(a.v10, a.v10)+cov(b.v10, b.v10)-2*cov(a.v10, b.v10))/m +
		(cov(a.v01, a.v01)+cov(b.v01, b.v01)-2*cov(a.v01, b.v01))/n
	diff, se = mean(a.v10)-mean(b.v10), math.Sqrt(math.Max(v, 0))
	switch {
	case se > 0:
		p = normalP(diff / se)
	case diff == 0:
		p = 1
	default:
		p = 0
	}
	return diff, se, p, nil
}
