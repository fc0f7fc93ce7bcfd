package gaia

import (
	"errors"
	"fmt"
	"math"

	"github.com/gaia-ood/gaia/torch"
)

// What the feature-based detectors (det_mahalanobis.go ... det_klm.go)
// share: the classifier input tap, the classifier's weight as buffers, a
// negative energy of logits a head computed.

// classifierInput is the tap h the feature-based detectors read.
func classifierInput(m modelInfo) (torch.Tap, error) {
	h, ok := findKind(m.Taps, torch.KindClassifierInput)
	if !ok {
		return torch.Tap{}, errors.New("the model has no classifier input tap (see gaia info)")
	}
	return h, nil
}

// featuresFit is the fit, checked to hold features of h's width.
func featuresFit(m modelInfo, h torch.Tap) (*Fit, error) {
	f, err := m.fit()
	if err != nil {
		return nil, err
	}
	if f.D != h.Channels {
		return nil, fmt.Errorf("the fit holds %d features, the model's %s has %d", f.D, h.Name, h.Channels)
	}
	return f, nil
}

// weightBuffers are the classifier's weight (K x D) and bias (K) as float32 buffers.
func weightBuffers(w, b *torch.Tensor) []planBuffer {
	return []planBuffer{{F32: w.Data, Shape: w.Shape}, {F32: b.Data, Shape: b.Shape}}
}

// bufs fills a head's buffer slots with plan buffer indices.
func bufs(ids ...int) [4]torch.Buffer {
	out := [4]torch.Buffer{torch.NoBuffer, torch.NoBuffer, torch.NoBuffer, torch.NoBuffer}
	for i, id := range ids {
		out[i] = torch.Buffer(id)
	}
	return out
}

// negEnergy sets out[i] = -logsumexp(row i of logits).
func negEnergy(logits *torch.Tensor, out []float64) error {
	if len(logits.Shape) != 2 || logits.Shape[0] != len(out) {
		return fmt.Errorf("logits of shape %v for %d samples", logits.Shape, len(out))
	}
	for i := range out {
		out[i] = -logSumExp(logits.Row(i), 1)
	}
	return nil
}

// percentCheck accepts a percentile in [0, 100).
func percentCheck(v any) error {
	if f := toFloat(v); !(f >= 0 && f < 100) {
		return fmt.Errorf("must be a percentile in [0, 100), not %v", v)
	}
	return nil
}

// positiveInt accepts an integer of at least 1.
func positiveInt(v any) error {
	if n, ok := v.(int); !ok || n < 1 {
		return fmt.Errorf("must be a whole number of at least 1, not %v", v)
	}
	return nil
}

// float64s converts float32 values.
func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

var errNaNStat = errors.New("a fitted statistic is not finite")

func finite(v []float64) error {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return errNaNStat
		}
	}
	return nil
}
