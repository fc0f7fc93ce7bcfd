package gaia

var energyT = &Setting{Name: "energy-temperature", Default: 1.0, Check: positive,
	Help: "the energy score's `temperature` T"}

var energy = &Detector{
	Name:     "energy",
	Summary:  "energy score, negated: -T logsumexp(z / T)",
	Settings: []*Setting{energyT},
	Plan: func(m ModelInfo, s Settings) (*Plan, error) {
		t := s.Float(energyT.Name)
		return &Plan{Score: func(o *Outputs, out []float64) error {
			for i := range out {
				out[i] = -t * logSumExp(o.Logits.Row(i), t)
			}
			return nil
		}}, nil
	},
}
