package gaia

import (
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

// GAIAZ is GAIA-Z (zero-deflation abnormality, docs/method.md).
const GAIAZ = "gaia-z"

// tapsZ selects GAIA-Z's taps; gaia-z-fast reads the same setting.
var tapsZ = &setting{Name: "taps-z", Default: "", Taps: true,
	Help: "GAIA-Z `taps`: module-path prefixes, kind:KIND, last:N or all (default all: every normalization output; for BiT its last block, as the authors)"}

var gaiaZ = &detectorSpec{
	Name:     GAIAZ,
	Summary:  "GAIA-Z: mean over the taps' channels of the squared non-zero fraction of d(max logit)/d(tap); one backward pass",
	Settings: []*setting{tapsZ},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		taps, err := zTaps(m, s)
		if err != nil {
			return nil, err
		}
		ch, err := channels(taps)
		if err != nil {
			return nil, err
		}
		return &detectorPlan{
			Passes: []torch.Pass{{Loss: torch.LossMaxLogit, Taps: indices(taps), Reduce: torch.ReduceSumSqNonzero}},
			Taps:   taps,
			Uses:   fmt.Sprintf("%d, %d channels (%s)", len(taps), ch, tapNames(taps, 4)),
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

// zTaps are the taps GAIA-Z's setting selects: by default every
// normalization tap, and for BiT the GroupNorms of its last block, as the
// authors' `-hook before_head` runs it (their pooled before_head tap only
// adds a constant to the score: docs/design.md).
func zTaps(m modelInfo, s Settings) ([]torch.Tap, error) {
	spec := s.text(tapsZ.Name)
	if spec == "" {
		spec = "all"
		if b := bitLastBlock(m.Taps); b != "" {
			spec = b
		}
	}
	return SelectTaps(m.Taps, spec)
}

// perSampleSum sets out[i] to the sum over the tensors of their entry i
// (per-sample reductions, one tensor a tap).
func perSampleSum(ts []*torch.Tensor, out []float64) {
	for i := range out {
		var sum float64
		for _, t := range ts {
			sum += float64(t.Data[i])
		}
		out[i] = sum
	}
}
