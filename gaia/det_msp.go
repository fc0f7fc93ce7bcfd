package gaia

var msp = &Detector{
	Name:    "msp",
	Summary: "maximum softmax probability, negated: -max_c softmax(z)_c",
	Plan: func(m ModelInfo, s Settings) (*Plan, error) {
		return &Plan{Score: func(o *Outputs, out []float64) error {
			for i := range out {
				out[i] = -o.Prob[i]
			}
			return nil
		}}, nil
	},
}
