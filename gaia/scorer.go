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
	dets     []*detectorSpec
	plans    []*detectorPlan
	settings Settings
	passes   []torch.Pass
	passAt   []int   // detector d's passes are passes[passAt[d]:passAt[d]+len(plans[d].Passes)]
	values   []int   // tap values asked for, once each
	valueAt  [][]int // detector d's Plan.Values as positions in values
	heads    []torch.Head
	headAt   []int // detector d's heads are heads[headAt[d]:...]
	buffers  []torch.Buffer
}

// ScorerConfig says what a Scorer scores with.
type ScorerConfig struct {
	Detectors []string
	Settings  Settings
	Std       []float64 // the input normalization's std per channel (nil: 1)
	Fit       *Fit      // for the detectors that need one
}

// NewScorer checks the detectors against the model's taps and plans their
// shared batch; buffers the plans need go to the model's device now.
func NewScorer(m *torch.Module, cfg ScorerConfig) (*Scorer, error) {
	if len(cfg.Detectors) == 0 {
		return nil, fmt.Errorf("scorer: no detectors")
	}
	s := cfg.Settings
	if s == nil {
		s = Settings{}
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("scorer: %w", err)
	}
	w, b, _ := m.Classifier()
	info := modelInfo{Taps: m.Taps(), InputChannels: m.InputChannels(), Std: cfg.Std, Weight: w, Bias: b, Fit: cfg.Fit}
	sc := &Scorer{m: m, settings: s.For(cfg.Detectors)}
	valuePos := map[int]int{}
	for _, name := range cfg.Detectors {
		d, err := lookup(name)
		if err != nil {
			sc.Close()
			return nil, err
		}
		p, err := d.Plan(info, s)
		if err != nil {
			sc.Close()
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
		if err := sc.addHeads(d, p); err != nil {
			sc.Close()
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	return sc, nil
}

// addHeads puts a plan's buffers on the device and adds its heads, their
// buffer slots turned from plan indices into the device's buffers.
func (s *Scorer) addHeads(d *detectorSpec, p *detectorPlan) error {
	ids := make([]torch.Buffer, len(p.Buffers))
	for i, b := range p.Buffers {
		var err error
		if b.F64 != nil {
			ids[i], err = s.m.PutF64(b.F64, b.Shape...)
		} else {
			ids[i], err = s.m.PutF32(b.F32, b.Shape...)
		}
		if err != nil {
			return fmt.Errorf("buffer %v on %s: %w", b.Shape, s.m.Device(), err)
		}
		s.buffers = append(s.buffers, ids[i])
	}
	s.headAt = append(s.headAt, len(s.heads))
	for _, h := range p.Heads {
		for j, b := range h.Buf {
			if b == torch.NoBuffer {
				continue
			}
			if int(b) < 0 || int(b) >= len(ids) {
				return fmt.Errorf("head %d reads buffer %d of %d", h.Kind, b, len(ids))
			}
			h.Buf[j] = ids[b]
		}
		s.heads = append(s.heads, h)
	}
	return nil
}

// Close frees the buffers the scorer put on the device (its module stays);
// it is idempotent.
func (s *Scorer) Close() error {
	for _, b := range s.buffers {
		s.m.Drop(b)
	}
	s.buffers = nil
	return nil
}

// Warnings are what the plans had to leave out, for logs and reports.
func (s *Scorer) Warnings() []string {
	var out []string
	for i, p := range s.plans {
		for _, w := range p.Warnings {
			out = append(out, s.dets[i].Name+": "+w)
		}
	}
	return out
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
	r, err := s.m.Run(x, s.values, s.passes, s.heads...)
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
		o := &batchOutputs{Logits: z, Pred: out.Pred, Prob: out.Prob,
			Grads: r.Grads[s.passAt[d] : s.passAt[d]+len(p.Passes)],
			Heads: r.Heads[s.headAt[d] : s.headAt[d]+len(p.Heads)]}
		for _, pos := range s.valueAt[d] {
			o.Values = append(o.Values, r.Values[pos])
		}
		sc := make([]float64, n)
		if err := p.Score(o, sc); err != nil {
			return nil, fmt.Errorf("%s: %w", s.dets[d].Name, err)
		}
		out.Scores[d] = sc
	}
	// NonFinite: a sample whose logits are not finite has no score (NaN)
	// from any detector, whatever arithmetic on them happened to give.
	for i := 0; i < n; i++ {
		if finite32(z.Row(i)) {
			continue
		}
		for d := range out.Scores {
			out.Scores[d][i] = math.NaN()
		}
	}
	return out, nil
}

// finite32 reports whether every value is finite.
func finite32(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
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
