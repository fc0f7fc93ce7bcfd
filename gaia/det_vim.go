package gaia

import (
	"errors"
	"fmt"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

var vimDim = &setting{Name: "vim-dim", Default: 0, Check: func(v any) error {
	if n, ok := v.(int); !ok || n < 0 {
		return fmt.Errorf("must be 0 (automatic) or a positive dimension, not %v", v)
	}
	return nil
}, Help: "ViM's principal `dimension` (0: 1000 for 2048 features or more, 512 for 768 or more, else half)"}

// vim is Wang et al.'s (2022) virtual-logit matching: the norm of the
// feature's residual outside the fit set's principal subspace (around the
// origin where the logits vanish), scaled to the logits, minus the energy.
var vim = &detectorSpec{
	Name:     "vim",
	Summary:  "ViM: alpha ||P_perp (h - o)|| - energy(z), o = -pinv(W) b, P_perp off the top-d eigenvectors of the fit's (h - o) covariance",
	Group:    "features",
	NeedsFit: true,
	Settings: []*setting{vimDim},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		h, err := classifierInput(m)
		if err != nil {
			return nil, err
		}
		f, err := featuresFit(m, h)
		if err != nil {
			return nil, err
		}
		w, b, err := m.classifier()
		if err != nil {
			return nil, err
		}
		dim := s.int(vimDim.Name)
		if dim == 0 {
			switch {
			case f.D >= 2048:
				dim = 1000
			case f.D >= 768:
				dim = 512
			default:
				dim = f.D / 2
			}
		}
		if dim < 1 || dim >= f.D {
			return nil, fmt.Errorf("vim-dim %d: the principal subspace must leave a residual of at least one of %d dimensions", dim, f.D)
		}
		v, err := f.cached(fmt.Sprint("vim ", dim), func() (any, error) { return vimStats(f, w, b, dim) })
		if err != nil {
			return nil, err
		}
		st := v.(*vimFit)
		return &detectorPlan{
			Heads:   []torch.Head{{Kind: torch.HeadResidual, Tap: h.Index, Buf: bufs(0, 1)}},
			Buffers: []planBuffer{{F64: st.origin, Shape: []int{f.D}}, {F64: st.ns, Shape: []int{f.D, f.D - dim}}},
			Uses:    fmt.Sprintf("%s; principal dimension %d of %d, alpha %.6g", h.Name, dim, f.D, st.alpha),
			Score: func(o *batchOutputs, out []float64) error {
				if err := negEnergy(o.Logits, out); err != nil {
					return err
				}
				for i, r := range o.Heads[0].F64 {
					out[i] += st.alpha * r
				}
				return nil
			},
		}, nil
	},
}

type vimFit struct {
	origin []float64 // D
	ns     []float64 // D x (D - dim): the residual space's basis
	alpha  float64
}

func vimStats(f *Fit, w, b *torch.Tensor, dim int) (*vimFit, error) {
	k, d := w.Shape[0], w.Shape[1]
	// o = -pinv(W) b, with pinv(W) = W^T pinv(W W^T) (K x K).
	wf := float64s(w.Data)
	wt := make([]float64, d*k)
	for i := 0; i < k; i++ {
		for j := 0; j < d; j++ {
			wt[j*k+i] = wf[i*d+j]
		}
	}
	wwt, err := torch.MatMulF64(wf, k, d, wt, k)
	if err != nil {
		return nil, err
	}
	inv, _, err := pinvSym(wwt, k)
	if err != nil {
		return nil, err
	}
	pinvW, err := torch.MatMulF64(wt, d, k, inv, k) // D x K
	if err != nil {
		return nil, err
	}
	st := &vimFit{origin: make([]float64, d)}
	for i := 0; i < d; i++ {
		for j := 0; j < k; j++ {
			st.origin[i] -= pinvW[i*k+j] * float64(b.Data[j])
		}
	}
	// (1/N) sum (h - o)(h - o)^T = (G - o s^T - s o^T + N o o^T) / N.
	n, o := float64(f.N), st.origin
	cov := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			cov[i*d+j] = (f.Gram[i*d+j] - o[i]*f.Sum[j] - f.Sum[i]*o[j] + n*o[i]*o[j]) / n
		}
	}
	_, vecs, err := torch.EighF64(cov, d)
	if err != nil {
		return nil, err
	}
	// Ascending eigenvalues: the residual space is the first d - dim vectors.
	r := d - dim
	st.ns = make([]float64, d*r)
	for i := 0; i < d; i++ {
		copy(st.ns[i*r:(i+1)*r], vecs[i*d:i*d+r])
	}
	// alpha = (sum of max logits) / (sum of residual norms), over the kept sample.
	if f.M == 0 {
		return nil, errors.New("the fit kept no feature vectors")
	}
	x := make([]float64, f.M*d)
	for i := 0; i < f.M; i++ {
		for j := 0; j < d; j++ {
			x[i*d+j] = float64(f.SampleH[i*d+j]) - o[j]
		}
	}
	res, err := torch.MatMulF64(x, f.M, d, st.ns, r)
	if err != nil {
		return nil, err
	}
	var sumR, sumZ float64
	for i := 0; i < f.M; i++ {
		var ss float64
		for _, v := range res[i*r : (i+1)*r] {
			ss += v * v
		}
		sumR += math.Sqrt(ss)
		sumZ += f.SampleMaxLogit[i]
	}
	if sumR == 0 {
		return nil, errors.New("the fit features have no residual outside the principal subspace: alpha is undefined")
	}
	st.alpha = sumZ / sumR
	return st, nil
}
