package gaia

import (
	"fmt"
	"math"
	"strings"

	"github.com/gaia-ood/gaia/torch"
)

// Detector names, in the order reports list them.
const (
	GAIAA    = "gaia-a"
	GAIAZ    = "gaia-z"
	MSP      = "msp"
	MaxLogit = "maxlogit"
	Energy   = "energy"
	ODIN     = "odin"
	GradNorm = "gradnorm"
	// GAIAZFast is GAIA-Z without a backward pass: each tap's non-zero
	// fraction is read from the forward mask of the ReLU that follows it
	// (docs/perf.md measures how often it equals GAIA-Z).
	GAIAZFast = "gaia-z-fast"
)

// AllDetectors lists every detector.
var AllDetectors = []string{GAIAA, GAIAZ, MSP, MaxLogit, Energy, ODIN, GradNorm}

// knownDetectors are the detectors a list may name: the seven of "all" and
// gaia-z-fast, which is only offered by name.
var knownDetectors = append(append([]string(nil), AllDetectors...), GAIAZFast)

// ParseDetectors reads a comma-separated list ("all" for the seven).
func ParseDetectors(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return append([]string(nil), AllDetectors...), nil
	}
	var out []string
	seen := map[string]bool{}
	for _, d := range strings.Split(s, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		known := false
		for _, k := range knownDetectors {
			known = known || k == d
		}
		if !known {
			return nil, fmt.Errorf("unknown detector %q (known: %s, or all)", d, strings.Join(knownDetectors, ", "))
		}
		if !seen[d] {
			out = append(out, d)
			seen[d] = true
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no detector named")
	}
	return out, nil
}

// Options configure a Scorer. Zero values take the defaults.
type Options struct {
	Detectors         []string
	TapsZ             string    // GAIA-Z taps (SelectTaps spec); default: every normalization tap
	TapsA             string    // GAIA-A inner taps; default: the last two stages ("last:2"), for BiT its last block
	ODINTemperature   float64   // default 1000
	ODINEpsilon       float64   // default 0.0014; in units of the unnormalized input
	EnergyTemperature float64   // default 1
	Std               []float64 // the input normalization's std per channel (ODIN's step); default 1
}

// Scorer scores batches with several detectors sharing one forward pass and
// only the backward passes they need: GAIA-Z one (to its taps), GAIA-A two
// (to the feature map, then to its taps), ODIN one (to the input) and a second
// forward; the confidence baselines and GradNorm none.
type Scorer struct {
	m         *torch.Module
	opt       Options
	dets      []string
	tapsZ     []torch.Tap
	tapsA     []torch.Tap
	tapsZF    []torch.Tap
	chZF      int
	stagesOK  bool
	fmap, cls torch.Tap
	chZ, chA  int
	passes    []torch.Pass
	values    []int
	passOf    map[string]int // detector -> index of its first pass
}

// NewScorer checks the detectors against the model's taps and plans the passes.
func NewScorer(m *torch.Module, opt Options) (*Scorer, error) {
	if len(opt.Detectors) == 0 {
		return nil, fmt.Errorf("scorer: no detectors")
	}
	if opt.ODINTemperature == 0 {
		opt.ODINTemperature = 1000
	}
	if opt.ODINEpsilon == 0 {
		opt.ODINEpsilon = 0.0014
	}
	if opt.EnergyTemperature == 0 {
		opt.EnergyTemperature = 1
	}
	if opt.ODINTemperature < 0 || opt.EnergyTemperature < 0 || opt.ODINEpsilon < 0 {
		return nil, fmt.Errorf("scorer: temperatures and epsilon must not be negative")
	}
	s := &Scorer{m: m, opt: opt, dets: opt.Detectors, passOf: map[string]int{}}
	all := m.Taps()
	var haveF, haveH bool
	s.fmap, haveF = findKind(all, torch.KindFeatureMap)
	s.cls, haveH = findKind(all, torch.KindClassifierInput)
	want := map[string]bool{}
	for _, d := range s.dets {
		want[d] = true
	}
	var err error
	// GAIA-Z and gaia-z-fast share one selection: every normalization tap, or
	// TapsZ; gaia-z-fast keeps the gated ones.
	var selZ []torch.Tap
	if want[GAIAZ] || want[GAIAZFast] {
		spec := opt.TapsZ
		if spec == "" {
			spec = "all"
		}
		if selZ, err = SelectTaps(all, spec); err != nil {
			name := GAIAZ
			if !want[GAIAZ] {
				name = GAIAZFast
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if want[GAIAZ] {
		s.tapsZ = selZ
		if s.chZ, err = channels(s.tapsZ); err != nil {
			return nil, fmt.Errorf("gaia-z: %w", err)
		}
		s.passOf[GAIAZ] = len(s.passes)
		s.passes = append(s.passes, torch.Pass{Loss: torch.LossMaxLogit, Taps: indices(s.tapsZ), Reduce: torch.ReduceSumSqNonzero})
	}
	if want[GAIAZFast] {
		for _, t := range selZ {
			if t.Gated {
				s.tapsZF = append(s.tapsZF, t)
			}
		}
		if len(s.tapsZF) == 0 {
			return nil, fmt.Errorf("gaia-z-fast: none of the taps is followed by a ReLU it could read (see gaia info)")
		}
		if s.chZF, err = channels(s.tapsZF); err != nil {
			return nil, fmt.Errorf("gaia-z-fast: %w", err)
		}
		s.passOf[GAIAZFast] = len(s.passes)
		s.passes = append(s.passes, torch.Pass{Loss: torch.LossGate, Taps: indices(s.tapsZF), Reduce: torch.ReduceSumSqNonzero})
	}
	if want[GAIAA] {
		if !haveF || !haveH {
			return nil, fmt.Errorf("gaia-a: the model has no feature map before global pooling or no classifier input (see gaia info)")
		}
		if opt.TapsA == "" {
			if spec := bitLastBlock(all); spec != "" {
				s.tapsA, err = SelectTaps(all, spec)
				s.stagesOK = err == nil
			} else {
				s.tapsA, s.stagesOK = LastStages(all, 2)
			}
		} else if s.tapsA, err = SelectTaps(all, opt.TapsA); err != nil {
			return nil, fmt.Errorf("gaia-a: %w", err)
		} else {
			s.stagesOK = true
		}
		if s.chA, err = channels(s.tapsA); err != nil {
			return nil, fmt.Errorf("gaia-a: %w", err)
		}
		s.passOf[GAIAA] = len(s.passes)
		s.passes = append(s.passes,
			torch.Pass{Loss: torch.LossSumLogSoftmax, Taps: []int{s.fmap.Index}, Reduce: torch.ReduceMeanAbsMean},
			torch.Pass{Loss: torch.LossSumTap, LossTap: s.cls.Index, Taps: indices(s.tapsA), Reduce: torch.ReduceSumSqMean})
	}
	if want[ODIN] {
		s.passOf[ODIN] = len(s.passes)
		s.passes = append(s.passes, torch.Pass{Loss: torch.LossODIN, LossParam: opt.ODINTemperature, Taps: []int{torch.InputTap}, Reduce: torch.ReduceNone})
	}
	if want[GradNorm] {
		if !haveH {
			return nil, fmt.Errorf("gradnorm: the model has no classifier input tap (see gaia info)")
		}
		s.values = []int{s.cls.Index}
	}
	return s, nil
}

func channels(taps []torch.Tap) (int, error) {
	for _, t := range taps {
		if t.Channels <= 0 {
			return 0, fmt.Errorf("tap %s: channel count unknown", t.Name)
		}
	}
	return sumChannels(taps), nil
}

// Detectors lists the detectors, in the order of BatchScores.Scores.
func (s *Scorer) Detectors() []string { return append([]string(nil), s.dets...) }

// TapsZ and TapsA are the taps GAIA-Z and GAIA-A use.
func (s *Scorer) TapsZ() []torch.Tap { return s.tapsZ }

// TapsZFast are the taps gaia-z-fast reads.
func (s *Scorer) TapsZFast() []torch.Tap { return s.tapsZF }

// TapsA are GAIA-A's inner taps (its output component reads the feature map).
func (s *Scorer) TapsA() []torch.Tap { return s.tapsA }

// FeatureMap is the tap GAIA-A's output component reads.
func (s *Scorer) FeatureMap() torch.Tap { return s.fmap }

// Describe says which taps each GAIA detector uses, for reports and logs.
func (s *Scorer) Describe() string {
	var b strings.Builder
	if s.tapsZ != nil {
		fmt.Fprintf(&b, "gaia-z taps: %d, %d channels (%s)\n", len(s.tapsZ), s.chZ, tapNames(s.tapsZ, 4))
	}
	if s.tapsZF != nil {
		fmt.Fprintf(&b, "gaia-z-fast taps: %d, %d channels (the gated ones: %s)\n", len(s.tapsZF), s.chZF, tapNames(s.tapsZF, 4))
	}
	if s.tapsA != nil {
		note := ""
		if !s.stagesOK {
			note = "; no stages recognized in the tap names, so every normalization tap"
		}
		fmt.Fprintf(&b, "gaia-a taps: %d, %d channels (%s%s) + %s (%d channels)\n",
			len(s.tapsA), s.chA, tapNames(s.tapsA, 4), note, s.fmap.Name, s.fmap.Channels)
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
		row := z.Row(i)
		p, prob := argmaxSoftmax(row, 1)
		out.Pred[i], out.Prob[i] = p, prob
	}
	for d, name := range s.dets {
		sc := make([]float64, n)
		switch name {
		case MSP:
			for i := range sc {
				sc[i] = -out.Prob[i]
			}
		case MaxLogit:
			for i := range sc {
				sc[i] = -float64(z.Row(i)[out.Pred[i]])
			}
		case Energy:
			t := s.opt.EnergyTemperature
			for i := range sc {
				sc[i] = -t * logSumExp(z.Row(i), t)
			}
		case GAIAZ, GAIAZFast:
			g := r.Grads[s.passOf[name]]
			ch := s.chZ
			if name == GAIAZFast {
				ch = s.chZF
			}
			for i := range sc {
				var sum float64
				for _, tap := range g {
					sum += float64(tap.Data[i])
				}
				sc[i] = sum / float64(ch)
			}
		case GAIAA:
			p := s.passOf[GAIAA]
			o2 := r.Grads[p][0] // mean_k |mean_hw dL1/dF| = o(n)^2
			inner := r.Grads[p+1]
			for i := range sc {
				var sum float64
				for _, tap := range inner {
					sum += float64(tap.Data[i])
				}
				// S_A = (1/sum C) sum_l sum_k (|g|/o)^2; o = 0 gives +Inf.
				sc[i] = sum / (float64(o2.Data[i]) * float64(s.chA))
			}
		case ODIN:
			if err := s.odin(x, r.Grads[s.passOf[ODIN]][0], sc); err != nil {
				return nil, err
			}
		case GradNorm:
			h := r.Values[0]
			for i := range sc {
				sc[i] = -gradNorm(z.Row(i), h.Row(i))
			}
		}
		out.Scores[d] = sc
	}
	return out, nil
}

// odin perturbs x against the gradient of the temperature-scaled loss, as
// Liang et al.'s code does (sign, divided by the per-channel std), runs a
// second forward and scores -max softmax(z'/T).
func (s *Scorer) odin(x, g *torch.Tensor, sc []float64) error {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Shape[2] * x.Shape[3]
	xp := &torch.Tensor{Shape: x.Shape, Data: make([]float32, len(x.Data))}
	eps := s.opt.ODINEpsilon
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			std := 1.0
			if ch < len(s.opt.Std) {
				std = s.opt.Std[ch]
			}
			step := float32(eps / std)
			base := (i*c + ch) * hw
			for j := base; j < base+hw; j++ {
				if g.Data[j] >= 0 {
					xp.Data[j] = x.Data[j] - step
				} else {
					xp.Data[j] = x.Data[j] + step
				}
			}
		}
	}
	out, err := s.m.Forward(xp)
	if err != nil {
		return fmt.Errorf("odin: second forward: %w", err)
	}
	for i := range sc {
		_, p := argmaxSoftmax(out[0].Row(i), s.opt.ODINTemperature)
		sc[i] = -p
	}
	return nil
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

// gradNorm is GradNorm's ||dKL(u || softmax(z))/dW||_1 in closed form: the
// gradient with respect to the classifier weight is the outer product
// (softmax(z) - u) h^T, so its L1 norm is ||softmax(z) - u||_1 ||h||_1.
func gradNorm(z, h []float32) float64 {
	k := float64(len(z))
	lse := logSumExp(z, 1)
	var a, b float64
	for _, v := range z {
		a += math.Abs(math.Exp(float64(v)-lse) - 1/k)
	}
	for _, v := range h {
		b += math.Abs(float64(v))
	}
	return a * b
}
