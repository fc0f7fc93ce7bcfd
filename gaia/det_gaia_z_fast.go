package gaia

import (
	"errors"
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

// gaiaZFast is GAIA-Z without a backward pass: each tap's non-zero fraction
// is read from the forward mask of the ReLU that follows it (docs/perf.md
// measures how often it equals GAIA-Z).
var gaiaZFast = &detectorSpec{
	Name:     "gaia-z-fast",
	Summary:  "GAIA-Z from the forward masks of the ReLUs after its taps, without a backward pass (equal to GAIA-Z where those ReLUs make the gradient's only zeros)",
	ByName:   true,
	Settings: []*setting{tapsZ},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		sel, err := zTaps(m, s)
		if err != nil {
			return nil, err
		}
		var taps []torch.Tap
		for _, t := range sel {
			if t.Gated {
				taps = append(taps, t)
			}
		}
		if len(taps) == 0 {
			return nil, errors.New("none of the taps is followed by a ReLU it could read (see gaia info)")
		}
		ch, err := channels(taps)
		if err != nil {
			return nil, err
		}
		return &detectorPlan{
			Passes: []torch.Pass{{Loss: torch.LossGate, Taps: indices(taps), Reduce: torch.ReduceSumSqNonzero}},
			Taps:   taps,
			Uses:   fmt.Sprintf("%d, %d channels (the gated ones: %s)", len(taps), ch, tapNames(taps, 4)),
			Score: func(o *batchOutputs, out []float64) error {
				perSampleSum(o.Grads[0], out)
				for i := range out {
					out[i] /= float64(ch)
				}
				return nil
			},
		}, nil
	},
}
