package gaia

import (
	"fmt"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

// klm is KL matching (Hendrycks et al. 2019): the KL divergence of the
// softmax from the nearest class's mean softmax over the fit samples the
// model predicts as that class.
var klm = &detectorSpec{
	Name:     "klm",
	Summary:  "KL matching: min_c KL(softmax(z) || d_c), d_c the mean softmax of the fit samples predicted as c",
	Group:    "features",
	NeedsFit: true,
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		f, err := m.fit()
		if err != nil {
			return nil, err
		}
		v, err := f.cached("klm", func() (any, error) {
			var logd []float64
			classes := 0
			for c := 0; c < f.K; c++ {
				if f.PredCount[c] == 0 {
					continue
				}
				for j := 0; j < f.K; j++ {
					logd = append(logd, math.Log(f.PredSoftmax[c*f.K+j]/f.PredCount[c]))
				}
				classes++
			}
			return &klmFit{logd, classes}, nil
		})
		if err != nil {
			return nil, err
		}
		st := v.(*klmFit)
		var warn []string
		if st.classes < f.K {
			warn = append(warn, fmt.Sprintf("the model predicted %d of %d classes on the fit set: the others have no mean softmax", st.classes, f.K))
		}
		return &detectorPlan{
			Heads:    []torch.Head{{Kind: torch.HeadKL, Tap: torch.TapLogits, Buf: bufs(0)}},
			Buffers:  []planBuffer{{F64: st.logd, Shape: []int{st.classes, f.K}}},
			Uses:     fmt.Sprintf("logits; %d class-mean softmax vectors", st.classes),
			Warnings: warn,
			Score: func(o *batchOutputs, out []float64) error {
				copy(out, o.Heads[0].F64)
				return nil
			},
		}, nil
	},
}

type klmFit struct {
	logd    []float64
	classes int
}
