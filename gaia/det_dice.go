package gaia

import (
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

var diceP = &setting{Name: "dice-percentile", Default: 90.0, Check: percentCheck,
	Help: "DICE's sparsity `percentile`: the classifier weights whose contribution is above it are kept"}

// dice is Sun and Li's (2022) directed sparsification: the classifier keeps
// only the weights whose expected contribution on the fit set (weight times
// mean feature) is in the top (100 - p)%, then the energy score.
var dice = &detectorSpec{
	Name:     "dice",
	Summary:  "DICE: -energy(W_s h + b), W_s keeping the entries of W whose W (.) mean_fit(h) is above its p-th percentile",
	Group:    "features",
	NeedsFit: true,
	Settings: []*setting{diceP},
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
		p := s.float(diceP.Name)
		v, err := f.cached(fmt.Sprint("dice ", p), func() (any, error) {
			mean := f.Mean()
			k, d := w.Shape[0], w.Shape[1]
			contrib := make([]float64, k*d)
			for i := 0; i < k; i++ {
				for j := 0; j < d; j++ {
					contrib[i*d+j] = float64(w.Data[i*d+j]) * mean[j]
				}
			}
			thresh := percentile(append([]float64(nil), contrib...), p)
			masked := make([]float32, k*d)
			kept := 0
			for i, c := range contrib {
				if c > thresh {
					masked[i] = w.Data[i]
					kept++
				}
			}
			return &diceFit{masked, kept}, nil
		})
		if err != nil {
			return nil, err
		}
		st := v.(*diceFit)
		return &detectorPlan{
			Heads:   []torch.Head{{Kind: torch.HeadLinear, Tap: h.Index, Buf: bufs(0, 1)}},
			Buffers: []planBuffer{{F32: st.masked, Shape: w.Shape}, {F32: b.Data, Shape: b.Shape}},
			Uses:    fmt.Sprintf("%s; %d of %d classifier weights kept", h.Name, st.kept, len(st.masked)),
			Score:   func(o *batchOutputs, out []float64) error { return negEnergy(o.Heads[0], out) },
		}, nil
	},
}

type diceFit struct {
	masked []float32
	kept   int
}
