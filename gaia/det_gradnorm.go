package gaia

import (
	"errors"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

// gradNorm is Huang et al.'s GradNorm in closed form (docs/method.md): the
// gradient of KL(u || softmax(z)) with respect to the classifier weight is
// the outer product (softmax(z) - u) h^T, so its L1 norm needs no backward.
// With the uniform target u (not the official code's all-ones target, which
// multiplies every score by the number of classes).
var gradNorm = &detectorSpec{
	Name:    "gradnorm",
	Summary: "GradNorm, negated: -||softmax(z) - u||_1 ||h||_1, the L1 norm of dKL(u||softmax(z))/dW in closed form",
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		h, ok := findKind(m.Taps, torch.KindClassifierInput)
		if !ok {
			return nil, errors.New("the model has no classifier input tap (see gaia info)")
		}
		return &detectorPlan{
			Values: []int{h.Index},
			Uses:   h.Name,
			Score: func(o *batchOutputs, out []float64) error {
				for i := range out {
					out[i] = -gradNormL1(o.Logits.Row(i), o.Values[0].Row(i))
				}
				return nil
			},
		}, nil
	},
}

// gradNormL1 is ||softmax(z) - u||_1 ||h||_1.
func gradNormL1(z, h []float32) float64 {
	k := float64(len(z))
	lse := logSumExp(z, 1)
	var a, b float64
	for _, v := range z {
		a += math.Abs(math.Exp(float64(v)-lse) - 1/k)
	}
	for _, v := range h {
		b += math.Abs(float64(v))
	}
	return a * b
}
