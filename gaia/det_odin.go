package gaia

import (
	"errors"
	"fmt"

	"github.com/gaia-ood/gaia/torch"
)

var (
	odinT = &Setting{Name: "odin-temperature", Default: 1000.0, Check: positive,
		Help: "ODIN's softmax `temperature`", Legacy: "odin_temperature"}
	odinEps = &Setting{Name: "odin-epsilon", Default: 0.0014, Check: nonNegative,
		Help: "ODIN's perturbation `size`, in units of the unnormalized input", Legacy: "odin_epsilon"}
)

// odin is Liang et al.'s ODIN as their code does it: the input moves by
// epsilon against the sign of the gradient of the temperature-scaled loss
// (divided by each channel's std, so epsilon is in pixel units), then a
// second forward; both on the device, in one call.
var odin = &Detector{
	Name:     "odin",
	Summary:  "ODIN: -max softmax(z'/T) after perturbing the input by epsilon against the gradient of -log softmax(z/T)_pred",
	Settings: []*Setting{odinT, odinEps},
	Plan: func(m ModelInfo, s Settings) (*Plan, error) {
		t, eps := s.Float(odinT.Name), s.Float(odinEps.Name)
		c := len(m.Std)
		if c == 0 {
			c = m.InputChannels
		}
		if c <= 0 {
			return nil, errors.New("the model's input channel count is unknown (give its normalization: MODEL.json or --std)")
		}
		steps := make([]float64, c)
		for ch := range steps {
			std := 1.0
			if ch < len(m.Std) {
				std = m.Std[ch]
			}
			steps[ch] = eps / std
		}
		return &Plan{
			Passes: []torch.Pass{{Loss: torch.LossODIN, LossParam: t, Taps: []int{torch.InputTap},
				Reduce: torch.ReducePerturbForward, Params: steps}},
			Score: func(o *Outputs, out []float64) error {
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
