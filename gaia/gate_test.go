package gaia

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCalibrate(t *testing.T) {
	id := []float64{5, 1, 3, 2, 4, 6, 7, 8, 9, 10}
	th, measured, err := Calibrate(id, 0.95)
	require.NoError(t, err)
	assert.Equal(t, 10.0, th) // 95% of 10 samples needs all 10
	assert.Equal(t, 1.0, measured)
	th, measured, err = Calibrate(id, 0.8)
	require.NoError(t, err)
	assert.Equal(t, 8.0, th)
	assert.Equal(t, 0.8, measured)
	// Ties: the measured TPR says what the threshold really accepts.
	th, measured, err = Calibrate([]float64{1, 2, 2, 2, 3}, 0.5)
	require.NoError(t, err)
	assert.Equal(t, 2.0, th)
	assert.Equal(t, 0.8, measured)
	_, _, err = Calibrate(nil, 0.95)
	assert.ErrorIs(t, err, ErrEmptySet)
	_, _, err = Calibrate(id, 0)
	assert.Error(t, err)

	// NaN counts as +Inf: never accepted, and the threshold is placed among
	// the finite scores (before, NaN sorted first and shifted it).
	nan := math.NaN()
	th, measured, err = Calibrate([]float64{nan, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0.8)
	require.NoError(t, err)
	assert.Equal(t, 8.0, th)
	assert.Equal(t, 0.8, measured)
	g := &Gate{Threshold: th}
	assert.False(t, g.Accept(nan))
	assert.False(t, g.Accept(math.Inf(1)))
	// Too many NaNs for a finite threshold: refused, saying so.
	_, _, err = Calibrate([]float64{nan, nan, 1, 2}, 0.95)
	assert.ErrorContains(t, err, "2 of 4 in-distribution scores are NaN (2) or +Inf")
}

// MODEL.json and --std refuse normalizations that make NaN scores.
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
	assert.ErrorContains(t, applyOverrides(m, ModelConfig{Std: "1e-38"}), "below 1e-06")
	m = &Meta{InputSize: []int{1, 2, 2}}
	assert.ErrorContains(t, applyOverrides(m, ModelConfig{Std: "nan"}), "non-finite")
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
	require.NoError(t, WriteJSON(p, g))
	g2, err := LoadGate(p)
	require.NoError(t, err)
	assert.Equal(t, g, g2)
	assert.Equal(t, 0.75, g2.AcceptedFraction([]float64{1, 2, 94, 200}))
	_, err = NewGate(sf, meta, "odin", 0.95)
	assert.ErrorContains(t, err, "no odin column")
	_, err = NewGate(sf, meta, "nosuch", 0.95)
	assert.ErrorContains(t, err, `unknown detector "nosuch"`)
}

// TestEarlierFilesLoad: gates and provenance written before settings came
// from the detector registry still load, with their settings and taps.
func TestEarlierFilesLoad(t *testing.T) {
	dir := t.TempDir()
	oldODIN := filepath.Join(dir, "odin.json")
	require.NoError(t, os.WriteFile(oldODIN, []byte(`{"detector": "odin", "threshold": -0.1, "target_tpr": 0.95,
		"measured_tpr": 0.95, "n_id": 100, "model": "m.pt", "model_sha256": "abc",
		"odin_temperature": 500, "odin_epsilon": 0.002, "calibration_scores": "id.csv", "created": "2026-11-01T00:00:00Z"}`), 0o644))
	g, err := LoadGate(oldODIN)
	require.NoError(t, err)
	assert.Equal(t, Settings{"odin-temperature": 500.0, "odin-epsilon": 0.002}, g.Settings)
	assert.Equal(t, 500.0, g.Settings.Float("odin-temperature"))

	oldZ := filepath.Join(dir, "z.json")
	require.NoError(t, os.WriteFile(oldZ, []byte(`{"detector": "gaia-z", "threshold": 0.3, "model_sha256": "abc",
		"taps": ["bn1", "layer1.0.bn1"], "transform": "resize=32x32"}`), 0o644))
	g, err = LoadGate(oldZ)
	require.NoError(t, err)
	assert.Equal(t, "bn1,layer1.0.bn1", g.Settings.String("taps-z"))
	assert.Equal(t, "resize=32x32", g.Transform)

	oldMeta := filepath.Join(dir, "id.csv.json")
	require.NoError(t, os.WriteFile(oldMeta, []byte(`{"model": "m.pt", "model_sha256": "abc", "data": "cifar-bin:x.bin",
		"detectors": ["gaia-a", "gaia-z", "odin"], "taps_z": ["bn1", "layer1.0.bn1"], "taps_a": ["layer3.0.bn1"],
		"feature_map": "feature_map", "odin_temperature": 1000, "odin_epsilon": 0.0014, "device": "cpu",
		"libtorch": "1.13.1", "rows": 10, "created": "2026-11-01T00:00:00Z"}`), 0o644))
	m, err := ReadScoreMeta(filepath.Join(dir, "id.csv"))
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"gaia-z": {"bn1", "layer1.0.bn1"}, "gaia-a": {"layer3.0.bn1"}}, m.Taps)
	assert.Equal(t, 0.0014, m.Settings.Float("odin-epsilon"))
	sf := &ScoreFile{Path: "id.csv", Detectors: []string{"gaia-z"}, Rows: []ScoreRow{{Scores: []float64{1}}}}
	g, err = NewGate(sf, m, "gaia-z", 1)
	require.NoError(t, err)
	assert.Equal(t, "bn1,layer1.0.bn1", g.Settings.String("taps-z"))

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"detector": "odin", "threshold": 1, "settings": {"odin-temperature": -3}}`), 0o644))
	_, err = LoadGate(bad)
	assert.ErrorContains(t, err, "odin-temperature: must be a positive number")
	require.NoError(t, os.WriteFile(bad, []byte(`{"detector": "odin", "threshold": 1, "settings": {"odin-warmth": 3}}`), 0o644))
	_, err = LoadGate(bad)
	assert.ErrorContains(t, err, `unknown setting "odin-warmth"`)
	require.NoError(t, os.WriteFile(bad, []byte(`{"detector": "gaia-q", "threshold": 1}`), 0o644))
	_, err = LoadGate(bad)
	assert.ErrorContains(t, err, `unknown detector "gaia-q"`)
}
