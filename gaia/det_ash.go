package gaia

import (
	"errors"
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

var (
	ashVariant = &setting{Name: "ash-variant", Default: "s", Check: func(v any) error {
		if v != "s" && v != "p" && v != "b" {
			return fmt.Errorf("must be s, p or b, not %v", v)
		}
		return nil
	}, Help: "ASH's `variant`: s (scale), p (prune), b (binarize)"}
	ashP = &setting{Name: "ash-percentile", Default: 90.0, Check: percentCheck,
		Help: "ASH's pruning `percentile` of each sample's feature map"}
)

// ash is Djurisic et al.'s (2023) activation shaping: the final feature map
// pruned to its largest entries (and rescaled), then pooled and classified
// as the model does, then the energy score. No fit.
var ash = &detectorSpec{
	Name:     "ash",
	Summary:  "ASH: -energy of the classifier on the pooled feature map with its smallest p% of entries zeroed (s: the rest rescaled; b: set to the mean)",
	Group:    "features",
	Settings: []*setting{ashVariant, ashP},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		fmap, ok := findKind(m.Taps, torch.KindFeatureMap)
		if !ok {
			return nil, errors.New("the model has no feature map before global pooling (see gaia info)")
		}
		w, b, err := m.classifier()
		if err != nil {
			return nil, err
		}
		if fmap.Channels > 0 && w.Shape[1] != fmap.Channels {
			return nil, fmt.Errorf("the classifier takes %d features, the feature map has %d channels", w.Shape[1], fmap.Channels)
		}
		variant := map[string]float64{"s": 0, "p": 1, "b": 2}[s.text(ashVariant.Name)]
		p := s.float(ashP.Name)
		return &detectorPlan{
			Heads:   []torch.Head{{Kind: torch.HeadASH, Tap: fmap.Index, Buf: bufs(0, 1), Arg: [4]float64{variant, p}}},
			Buffers: weightBuffers(w, b),
			Uses:    fmt.Sprintf("%s (ASH-%s, percentile %g)", fmap.Name, s.text(ashVariant.Name), p),
			Score:   func(o *batchOutputs, out []float64) error { return negEnergy(o.Heads[0], out) },
		}, nil
	},
}
