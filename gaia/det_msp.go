package gaia

var msp = &detectorSpec{
	Name:    "msp",
	Summary: "maximum softmax probability, negated: -max_c softmax(z)_c",
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		return &detectorPlan{Score: func(o *batchOutputs, out []float64) error {
			for i := range out {
				out[i] = -o.Prob[i]
			}
			return nil
		}}, nil
	},
}
