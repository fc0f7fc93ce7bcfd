package gaia

import (
	"fmt"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

var knnK = &setting{Name: "knn-k", Default: 50, Check: positiveInt,
	Help: "KNN's `k`: the rank of the neighbour whose distance is the score"}

// knn is Sun et al.'s (2022) deep nearest neighbours: the distance of the
// normalized feature to its k-th nearest normalized fit feature, found
// exactly by matrix products on the device.
var knn = &detectorSpec{
	Name:     "knn",
	Summary:  "KNN: ||u - b_(k)||, u = h / ||h||, b_(k) its k-th nearest normalized fit feature (exact search)",
	Group:    "features",
	NeedsFit: true,
	Settings: []*setting{knnK},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		h, err := classifierInput(m)
		if err != nil {
			return nil, err
		}
		f, err := featuresFit(m, h)
		if err != nil {
			return nil, err
		}
		k := s.int(knnK.Name)
		if f.M < k {
			return nil, fmt.Errorf("the fit kept %d feature vectors, fewer than k = %d (fit on more data, or keep more of it: the fit's KNN sample)", f.M, k)
		}
		v, err := f.cached("knn bank", func() (any, error) {
			bank := make([]float32, len(f.SampleH))
			for r := 0; r < f.M; r++ {
				row := f.SampleH[r*f.D : (r+1)*f.D]
				var ss float64
				for _, x := range row {
					ss += float64(x) * float64(x)
				}
				norm := math.Max(math.Sqrt(ss), 1e-12)
				for j, x := range row {
					bank[r*f.D+j] = float32(float64(x) / norm)
				}
			}
			return bank, nil
		})
		if err != nil {
			return nil, err
		}
		return &detectorPlan{
			Heads:   []torch.Head{{Kind: torch.HeadKNN, Tap: h.Index, Buf: bufs(0), Arg: [4]float64{float64(k)}}},
			Buffers: []planBuffer{{F32: v.([]float32), Shape: []int{f.M, f.D}}},
			Uses:    fmt.Sprintf("%s; a bank of %d fit features, k = %d", h.Name, f.M, k),
			Score: func(o *batchOutputs, out []float64) error {
				copy(out, o.Heads[0].F64)
				return nil
			},
		}, nil
	},
}
