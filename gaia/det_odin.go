package gaia

import (
	"errors"
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

var (
	odinT = &setting{Name: "odin-temperature", Default: 1000.0, Check: positive,
		Help: "ODIN's softmax `temperature`"}
	odinEps = &setting{Name: "odin-epsilon", Default: 0.0014, Check: nonNegative,
		Help: "ODIN's perturbation `size`, in units of the unnormalized input"}
)

// odin is Liang et al.'s ODIN as their code does it: the input moves by
// epsilon against the sign of the gradient of the temperature-scaled loss
// (divided by each channel's std, so epsilon is in pixel units), then a
// second forward; both on the device, in one call.
var odin = &detectorSpec{
	Name:     "odin",
	Summary:  "ODIN: -max softmax(z'/T) after perturbing the input by epsilon against the gradient of -log softmax(z/T)_pred",
	Settings: []*setting{odinT, odinEps},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		t, eps := s.float(odinT.Name), s.float(odinEps.Name)
		c := len(m.Std)
		if c == 0 {
			c = m.InputChannels
		}
		if c <= 0 {
			return nil, errors.New("the model's input channel count is unknown (give its normalization: MODEL.json, or the input's mean and std)")
		}
		steps := make([]float64, c)
		for ch := range steps {
			std := 1.0
			if ch < len(m.Std) {
				std = m.Std[ch]
			}
			steps[ch] = eps / std
		}
		return &detectorPlan{
			Passes: []torch.Pass{{Loss: torch.LossODIN, LossParam: t, Taps: []int{torch.InputTap},
				Reduce: torch.ReducePerturbForward, Params: steps}},
			Score: func(o *batchOutputs, out []float64) error {
				z := o.Grads[0][0] // the perturbed input's logits
				if len(z.Shape) != 2 || z.Shape[0] != len(out) {
					return fmt.Errorf("second forward: logits of shape %v for %d samples", z.Shape, len(out))
				}
				for i := range out {
					_, p := argmaxSoftmax(z.Row(i), t)
					out[i] = -p
				}
				return nil
			},
		}, nil
	},
}
