package gaia

import (
	"errors"
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

// mahalanobis is Lee et al.'s (2018) score on one layer, the classifier
// input, without input perturbation: the squared Mahalanobis distance to the
// nearest class mean under one covariance shared by the classes.
var mahalanobis = &detectorSpec{
	Name:     "mahalanobis",
	Summary:  "Mahalanobis: min_c (h - mu_c)^T S^+ (h - mu_c), class means and shared covariance of h on the fit set (true labels)",
	Group:    "features",
	NeedsFit: true,
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		h, err := classifierInput(m)
		if err != nil {
			return nil, err
		}
		f, err := featuresFit(m, h)
		if err != nil {
			return nil, err
		}
		if !f.Meta.Labelled {
			return nil, errors.New("needs the fit set's labels, and it had none (fit on a folder with a subfolder per class, or a list with labels)")
		}
		v, err := f.cached("mahalanobis", func() (any, error) { return mahalanobisStats(f) })
		if err != nil {
			return nil, err
		}
		st := v.(*mahalanobisFit)
		return &detectorPlan{
			Heads:    []torch.Head{{Kind: torch.HeadMahalanobis, Tap: h.Index, Buf: bufs(0, 1)}},
			Buffers:  []planBuffer{{F64: st.means, Shape: []int{len(st.classes), f.D}}, {F64: st.prec, Shape: []int{f.D, f.D}}},
			Uses:     fmt.Sprintf("%s; %d class means, covariance of rank %d", h.Name, len(st.classes), st.rank),
			Warnings: st.warnings,
			Score: func(o *batchOutputs, out []float64) error {
				copy(out, o.Heads[0].F64)
				return nil
			},
		}, nil
	},
}

type mahalanobisFit struct {
	classes  []int
	means    []float64 // C' x D
	prec     []float64 // D x D
	rank     int
	warnings []string
}

// mahalanobisStats: the means of the classes with fit samples and the
// pseudo-inverse of S = (1/N) sum_n (h_n - mu_y)(h_n - mu_y)^T =
// (sum h h^T - sum_c n_c mu_c mu_c^T) / N, in float64.
func mahalanobisStats(f *Fit) (*mahalanobisFit, error) {
	st := &mahalanobisFit{}
	d := f.D
	var missing []int
	var weighted []float64 // n_c mu_c, C' x D
	for c := 0; c < f.K; c++ {
		n := f.ClassCount[c]
		if n == 0 {
			missing = append(missing, c)
			continue
		}
		for j := 0; j < d; j++ {
			st.means = append(st.means, f.ClassSum[c*d+j]/n)
			weighted = append(weighted, f.ClassSum[c*d+j])
		}
		st.classes = append(st.classes, c)
	}
	nc := len(st.classes)
	if dof := f.N - nc; dof < 1 {
		return nil, fmt.Errorf("%d fit samples in %d classes leave no degrees of freedom for the covariance", f.N, nc)
	}
	// sum_c n_c mu_c mu_c^T = M^T (n_c mu_c), one product.
	mt := make([]float64, d*nc)
	for c := 0; c < nc; c++ {
		for j := 0; j < d; j++ {
			mt[j*nc+c] = st.means[c*d+j]
		}
	}
	between, err := torch.MatMulF64(mt, d, nc, weighted, d)
	if err != nil {
		return nil, err
	}
	cov := make([]float64, d*d)
	for i := range cov {
		cov[i] = f.Gram[i] - between[i]
	}
	if len(missing) > 0 {
		st.warnings = append(st.warnings, fmt.Sprintf("%d of %d classes have no fit sample (such as class %d): their means are left out", len(missing), f.K, missing[0]))
	}
	for i := range cov {
		cov[i] /= float64(f.N)
	}
	prec, rank, err := pinvSym(cov, d)
	if err != nil {
		return nil, err
	}
	if err := finite(prec); err != nil {
		return nil, fmt.Errorf("the covariance's pseudo-inverse: %w", err)
	}
	if rank < d {
		st.warnings = append(st.warnings, fmt.Sprintf("the covariance has rank %d of %d (fewer fit samples than features, or collinear features): its pseudo-inverse is used", rank, d))
	}
	st.prec, st.rank = prec, rank
	return st, nil
}
