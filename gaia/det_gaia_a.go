package gaia

import (
	"errors"
	"fmt"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

// tapsA selects GAIA-A's inner taps.
var tapsA = &setting{Name: "taps-a", Default: "", Taps: true,
	Help: "GAIA-A inner `taps` (default last:2, the last two stages; for BiT its last block, for WRN all, as the authors)"}

// outputA says where GAIA-A's output component is taken.
var outputA = &setting{Name: "gaia-a-output", Default: "auto", Check: func(v any) error {
	if v != "auto" && v != "map" && v != "pooled" {
		return fmt.Errorf("must be auto, map or pooled, not %v", v)
	}
	return nil
},
	Help: "where GAIA-A's output component o is taken: `map` (the final feature map F, before the pooling) or pooled " +
		"(the pooled features h: o^2 is H*W times the map's, the score H*W times smaller); auto: as the authors, pooled for WRN and BiT, map otherwise"}

var gaiaA = &detectorSpec{
	Name:     "gaia-a",
	Summary:  "GAIA-A: mean over the inner taps' channels of (|mean_hw d(sum h)/d(tap)| / o)^2, o^2 = mean_k |mean_hw d(sum log softmax)/dF|; two backward passes",
	Settings: []*setting{tapsA, outputA},
	// o is taken at F (map) or at h (pooled): the mean over hw of dL1/dF
	// is dL1/dh / (H*W) for a global average pooling, so the two differ
	// only by that constant.
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		fmap, haveF := findKind(m.Taps, torch.KindFeatureMap)
		cls, haveH := findKind(m.Taps, torch.KindClassifierInput)
		if !haveF || !haveH {
			return nil, errors.New("the model has no feature map before global pooling or no classifier input (see gaia info)")
		}
		var taps []torch.Tap
		var err error
		stagesOK := true
		if spec := s.text(tapsA.Name); spec != "" {
			taps, err = SelectTaps(m.Taps, spec)
		} else if spec := bitLastBlock(m.Taps); spec != "" {
			taps, err = SelectTaps(m.Taps, spec)
		} else if isWRN(m.Taps) {
			taps, err = SelectTaps(m.Taps, "all")
		} else {
			taps, stagesOK = LastStages(m.Taps, 2)
		}
		if err != nil {
			return nil, err
		}
		ch, err := channels(taps)
		if err != nil {
			return nil, err
		}
		note := ""
		if !stagesOK {
			note = "; no stages recognized in the tap names, so every normalization tap"
		}
		out := s.text(outputA.Name)
		if out == "auto" {
			out = "map"
			if isWRN(m.Taps) || bitLastBlock(m.Taps) != "" {
				out = "pooled" // the authors' AdaptAvgPool / before_head hook
			}
		}
		otap, where := fmap, "at the feature map"
		if out == "pooled" {
			otap, where = cls, "at the pooled features"
		}
		return &detectorPlan{
			Passes: []torch.Pass{
				{Loss: torch.LossSumLogSoftmax, Taps: []int{otap.Index}, Reduce: torch.ReduceMeanAbsMean},
				{Loss: torch.LossSumTap, LossTap: cls.Index, Taps: indices(taps), Reduce: torch.ReduceSumSqMean},
			},
			Taps: taps,
			Uses: fmt.Sprintf("%d, %d channels (%s%s); output component %s %s (%d channels)", len(taps), ch, tapNames(taps, 4), note,
				where, otap.Name, otap.Channels),
			Score: func(o *batchOutputs, out []float64) error {
				o2 := o.Grads[0][0] // mean_k |mean_hw dL1/dF| = o(n)^2
				perSampleSum(o.Grads[1], out)
				for i := range out {
					// S_A = (1/sum C) sum_l sum_k (|g|/o)^2; o = 0 gives
					// +Inf, also when the inner gradients vanish too (0/0):
					// a vanished output gradient is the abnormality.
					if o2.Data[i] == 0 && !math.IsNaN(out[i]) {
						out[i] = math.Inf(1)
						continue
					}
					out[i] /= float64(o2.Data[i]) * float64(ch)
				}
				return nil
			},
		}, nil
	},
}
