package gaia

var maxLogit = &Detector{
	Name:    "maxlogit",
	Summary: "maximum logit, negated: -max_c z_c",
	Plan: func(m ModelInfo, s Settings) (*Plan, error) {
		return &Plan{Score: func(o *Outputs, out []float64) error {
			for i := range out {
				out[i] = -float64(o.Logits.Row(i)[o.Pred[i]])
			}
			return nil
		}}, nil
	},
}
