package gaia

var energyT = &setting{Name: "energy-temperature", Default: 1.0, Check: positive,
	Help: "the energy score's `temperature` T"}

var energy = &detectorSpec{
	Name:     "energy",
	Summary:  "energy score, negated: -T logsumexp(z / T)",
	Settings: []*setting{energyT},
	Plan: func(m modelInfo, s Settings) (*detectorPlan, error) {
		t := s.float(energyT.Name)
		return &detectorPlan{Score: func(o *batchOutputs, out []float64) error {
			for i := range out {
				out[i] = -t * logSumExp(o.Logits.Row(i), t)
			}
			return nil
		}}, nil
	},
}
