package gaia

import (
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

var reactP = &setting{Name: "react-percentile", Default: 90.0, Check: percentCheck,
	Help: "ReAct's clipping `percentile` of the fit set's feature entries"}

// react is Sun et al.'s (2021) ReAct: features clipped at a high percentile
// of the in-distribution activations, then the energy score.
var react = &detectorSpec{
	Name:     "react",
	Summary:  "ReAct: -energy(W min(h, t) + b), t the p-th percentile of every entry of h over the fit set",
	Group:    "features",
	NeedsFit: true,
	Settings: []*setting{reactP},
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
		p := s.float(reactP.Name)
		v, err := f.cached(fmt.Sprint("react ", p), func() (any, error) { return percentile(float64s(f.SampleH), p), nil })
		if err != nil {
			return nil, err
		}
		t := v.(float64)
		return &detectorPlan{
			Heads:   []torch.Head{{Kind: torch.HeadLinear, Tap: h.Index, Buf: bufs(0, 1), Arg: [4]float64{1, t}}},
			Buffers: weightBuffers(w, b),
			Uses:    fmt.Sprintf("%s clipped at %.6g (percentile %g of %d x %d fit entries)", h.Name, t, p, f.M, f.D),
			Score:   func(o *batchOutputs, out []float64) error { return negEnergy(o.Heads[0], out) },
		}, nil
	},
}
