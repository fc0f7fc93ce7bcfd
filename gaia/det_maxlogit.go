package gaia

var maxLogit = &detectorSpec{
	Name:    "maxlogit",
	Summary: "maximum logit, negated: -max_c z_c",
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		return &detectorPlan{Score: func(o *batchOutputs, out []float64) error {
			for i := range out {
				out[i] = -float64(o.Logits.Row(i)[o.Pred[i]])
			}
			return nil
		}}, nil
	},
}
