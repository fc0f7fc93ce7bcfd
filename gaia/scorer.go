package gaia

import (
	"fmt"
	"math"
	"strings"

	"github.com/gaia-ood/gaia/torch"
)

// Scorer scores batches with several detectors sharing one forward pass and
// only the backward passes they need: each detector's Plan says what it
// reads, and one Module.Run computes all of it.
type Scorer struct {
	m        *torch.Module
	dets     []*Detector
	plans    []*Plan
	settings Settings
	passes   []torch.Pass
	passAt   []int   // detector d's passes are passes[passAt[d]:passAt[d]+len(plans[d].Passes)]
	values   []int   // tap values asked for, once each
	valueAt  [][]int // detector d's Plan.Values as positions in values
}

// NewScorer checks the detectors against the model's taps and plans their
// shared batch. std is the input normalization's std per channel (nil: 1).
func NewScorer(m *torch.Module, detectors []string, s Settings, std []float64) (*Scorer, error) {
	if len(detectors) == 0 {
		return nil, fmt.Errorf("scorer: no detectors")
	}
	if s == nil {
		s = Settings{}
	}
	info := ModelInfo{Taps: m.Taps(), InputChannels: m.InputChannels(), Std: std}
	sc := &Scorer{m: m, settings: s.For(detectors)}
	valuePos := map[int]int{}
	for _, name := range detectors {
		d, err := Lookup(name)
		if err != nil {
			return nil, err
		}
		p, err := d.Plan(info, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		sc.dets = append(sc.dets, d)
		sc.plans = append(sc.plans, p)
		sc.passAt = append(sc.passAt, len(sc.passes))
		sc.passes = append(sc.passes, p.Passes...)
		var at []int
		for _, v := range p.Values {
			pos, ok := valuePos[v]
			if !ok {
				pos = len(sc.values)
				valuePos[v] = pos
				sc.values = append(sc.values, v)
			}
			at = append(at, pos)
		}
		sc.valueAt = append(sc.valueAt, at)
	}
	return sc, nil
}

// Detectors lists the detectors, in the order of BatchScores.Scores.
func (s *Scorer) Detectors() []string {
	out := make([]string, len(s.dets))
	for i, d := range s.dets {
		out[i] = d.Name
	}
	return out
}

// Settings are the settings the scorer's detectors read, defaults filled in.
func (s *Scorer) Settings() Settings { return s.settings.Clone() }

// Taps are the taps a detector's tap selection chose (nil for a detector
// without one, or one the scorer does not run).
func (s *Scorer) Taps(detector string) []torch.Tap {
	for i, d := range s.dets {
		if d.Name == detector {
			return s.plans[i].Taps
		}
	}
	return nil
}

// TapNames are Taps' names.
func (s *Scorer) TapNames(detector string) []string {
	var out []string
	for _, t := range s.Taps(detector) {
		out = append(out, t.Name)
	}
	return out
}

// Describe says which taps each detector reads, for reports and logs.
func (s *Scorer) Describe() string {
	var b strings.Builder
	for i, d := range s.dets {
		if u := s.plans[i].Uses; u != "" {
			fmt.Fprintf(&b, "%s taps: %s\n", d.Name, u)
		}
	}
	return b.String()
}

// BatchScores are one batch's predictions and scores.
type BatchScores struct {
	Pred   []int       // argmax of the logits
	Prob   []float64   // its softmax probability
	Scores [][]float64 // Scores[d][n]: detector d (Scorer.Detectors order), sample n; higher = more OOD
}

// Sample is sample i's scores, one per detector (Scorer.Detectors order).
func (b *BatchScores) Sample(i int) []float64 {
	out := make([]float64, len(b.Scores))
	for d := range b.Scores {
		out[d] = b.Scores[d][i]
	}
	return out
}

// Score scores a batch x (N x C x H x W, normalized as the model expects).
func (s *Scorer) Score(x *torch.Tensor) (*BatchScores, error) {
	r, err := s.m.Run(x, s.values, s.passes)
	if err != nil {
		return nil, err
	}
	z := r.Outputs[0]
	if len(z.Shape) != 2 || z.Shape[0] != x.Shape[0] {
		return nil, fmt.Errorf("scorer: logits have shape %v for a batch of %d", z.Shape, x.Shape[0])
	}
	n := z.Shape[0]
	out := &BatchScores{Pred: make([]int, n), Prob: make([]float64, n), Scores: make([][]float64, len(s.dets))}
	for i := 0; i < n; i++ {
		out.Pred[i], out.Prob[i] = argmaxSoftmax(z.Row(i), 1)
	}
	for d, p := range s.plans {
		o := &Outputs{Logits: z, Pred: out.Pred, Prob: out.Prob,
			Grads: r.Grads[s.passAt[d] : s.passAt[d]+len(p.Passes)]}
		for _, pos := range s.valueAt[d] {
			o.Values = append(o.Values, r.Values[pos])
		}
		sc := make([]float64, n)
		if err := p.Score(o, sc); err != nil {
			return nil, fmt.Errorf("%s: %w", s.dets[d].Name, err)
		}
		out.Scores[d] = sc
	}
	return out, nil
}

// argmaxSoftmax returns argmax z and max softmax(z/t), in float64.
func argmaxSoftmax(z []float32, t float64) (int, float64) {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	m := float64(z[best]) / t
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v)/t - m)
	}
	return best, 1 / sum
}

// logSumExp returns logsumexp(z/t).
func logSumExp(z []float32, t float64) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v)/t)
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v)/t - m)
	}
	return m + math.Log(sum)
}
