package gaia

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/safetensors"
)

// A gate never accepts NaN or +Inf.
func TestGateAcceptNonFinite(t *testing.T) {
	g := &Gate{Threshold: 8}
	assert.True(t, g.Accept(8))
	assert.False(t, g.Accept(math.NaN()))
	assert.False(t, g.Accept(math.Inf(1)))
	assert.True(t, g.Accept(math.Inf(-1)))
}

// MODEL.json and Options.Std refuse normalizations that make NaN scores.
func TestMetaNormalization(t *testing.T) {
	for _, c := range []struct {
		mean, std []float64
		msg       string
	}{
		{[]float64{0}, []float64{-1}, "non-positive"},
		{[]float64{0}, []float64{math.NaN()}, "non-finite"},
		{[]float64{0}, []float64{math.Inf(1)}, "non-finite"},
		{[]float64{0}, []float64{1e-38}, "below 1e-06"},
		{[]float64{math.Inf(-1)}, []float64{1}, "mean [-Inf] has a non-finite entry"},
	} {
		m := &Meta{InputSize: []int{1, 2, 2}, Mean: c.mean, Std: c.std}
		assert.ErrorContains(t, m.check(), c.msg, "%v %v", c.mean, c.std)
	}
	m := &Meta{InputSize: []int{1, 2, 2}}
	assert.ErrorContains(t, m.override(Options{Std: []float64{1e-38}}), "below 1e-06")
	m = &Meta{InputSize: []int{1, 2, 2}}
	assert.ErrorContains(t, m.override(Options{Std: []float64{math.NaN()}}), "non-finite")
	_, err := Options{Std: []float64{1e-38}}.normalized(nil)
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

func TestGateRoundTrip(t *testing.T) {
	sf := &ScoreFile{Path: "id.csv", Detectors: []string{"gaia-a", "msp"}}
	for i := 0; i < 100; i++ {
		sf.Rows = append(sf.Rows, ScoreRow{Index: i, Scores: []float64{float64(i), -float64(i)}})
	}
	meta := &ScoreMeta{Model: "m.pt", ModelSHA256: "abc", Settings: Settings{"taps-a": "", "odin-temperature": 1000.0},
		Taps: map[string][]string{"gaia-a": {"layer3.0.bn1", "layer3.0.bn2"}}}
	g, err := NewGate(sf, meta, "gaia-a", 0.95)
	require.NoError(t, err)
	assert.Equal(t, 94.0, g.Threshold)
	assert.Equal(t, []string{"layer3.0.bn1", "layer3.0.bn2"}, g.Taps)
	assert.Equal(t, Settings{"taps-a": "layer3.0.bn1,layer3.0.bn2"}, g.Settings, "the tap selection is pinned, other detectors' settings left out")
	assert.True(t, g.Accept(94))
	assert.False(t, g.Accept(94.5))
	p := filepath.Join(t.TempDir(), "gate.json")
	require.NoError(t, outfile.WriteJSON(p, g))
	g2, err := LoadGate(p)
	require.NoError(t, err)
	assert.Equal(t, g, g2)
	assert.Equal(t, 0.75, g2.AcceptedFraction([]float64{1, 2, 94, 200}))
	_, err = NewGate(sf, meta, "odin", 0.95)
	assert.ErrorContains(t, err, "no odin column")
	_, err = NewGate(sf, meta, "nosuch", 0.95)
	assert.ErrorContains(t, err, `unknown detector "nosuch"`)
}

// TestGateFilesFailClosed: a gate file without a required field is
// refused, naming the field (a missing threshold would read as 0 and accept
// every MSP or Energy score), as are values no calibration makes.
func TestGateFilesFailClosed(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	for _, c := range []struct{ body, msg string }{
		{`{"detector": "msp", "model_sha256": "abc"}`, "missing required field threshold"},
		{`{"detector": "msp", "threshold": null, "model_sha256": "abc"}`, "missing required field threshold"},
		{`{"threshold": -0.5, "model_sha256": "abc"}`, "missing required field detector"},
		{`{"detector": "msp", "threshold": -0.5}`, "missing required field model_sha256"},
		{`{}`, "missing required field detector, model_sha256, threshold"},
		{`{"detector": "msp", "threshold": -0.5, "model_sha256": ""}`, "no model_sha256"},
		{`{"detector": "knn", "threshold": 1, "model_sha256": "abc"}`, "knn needs a fit"},
		{`{"detector": "odin", "threshold": 1, "model_sha256": "abc", "settings": {"odin-temperature": -3}}`, "odin-temperature: must be a positive number"},
		{`{"detector": "odin", "threshold": 1, "model_sha256": "abc", "settings": {"odin-warmth": 3}}`, `unknown setting "odin-warmth"`},
		{`{"detector": "gaia-q", "threshold": 1, "model_sha256": "abc"}`, `unknown detector "gaia-q"`},
	} {
		require.NoError(t, os.WriteFile(bad, []byte(c.body), 0o644))
		_, err := LoadGate(bad)
		assert.ErrorContains(t, err, c.msg, c.body)
		assert.ErrorContains(t, err, "bad.json", c.body)
	}
	require.NoError(t, os.WriteFile(bad, []byte(`{"detector": "msp", "threshold": 1}`), 0o644))
	_, err := LoadGate(bad)
	assert.ErrorIs(t, err, ErrInvalidGate)

	// A fit file without its model's hash in its metadata.
	f := &Fit{K: 2, D: 2, N: 3, Sum: []float64{1, 2}, Gram: make([]float64, 4), PredCount: []float64{1, 2}, PredSoftmax: make([]float64, 4),
		SampleH: []float32{1, 2}, SampleMaxLogit: []float64{1}, M: 1,
		Meta: FitMeta{Format: FitFormat, Version: FitVersion, ModelSHA256: "ab", ClassifierInput: "fc", Samples: 3}}
	fp := filepath.Join(dir, "fit.safetensors")
	require.NoError(t, WriteFit(fp, f))
	_, err = ReadFit(fp)
	require.NoError(t, err)
	st, err := safetensors.ReadFile(fp)
	require.NoError(t, err)
	st.Metadata["gaia_fit"] = strings.Replace(st.Metadata["gaia_fit"], `"model_sha256":"ab",`, "", 1)
	raw, err := safetensors.Encode(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(fp, raw, 0o644))
	_, err = ReadFit(fp)
	assert.ErrorContains(t, err, "missing required field model_sha256")

	// Provenance too: a sidecar without its model's hash names no model.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "id.csv.json"), []byte(`{"model": "m.pt", "data": "x", "detectors": ["msp"], "settings": {}, "rows": 1}`), 0o644))
	_, err = ReadScoreMeta(filepath.Join(dir, "id.csv"))
	assert.ErrorContains(t, err, "missing required field model_sha256")
}
