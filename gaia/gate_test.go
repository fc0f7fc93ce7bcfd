package gaia

import (
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
}

func TestGateRoundTrip(t *testing.T) {
	sf := &ScoreFile{Path: "id.csv", Detectors: []string{GAIAA, MSP}}
	for i := 0; i < 100; i++ {
		sf.Rows = append(sf.Rows, ScoreRow{Index: i, Scores: []float64{float64(i), -float64(i)}})
	}
	meta := &ScoreMeta{Model: "m.pt", ModelSHA256: "abc", TapsA: []string{"layer3.0.bn1"}, FeatureMap: "feature_map"}
	g, err := NewGate(sf, meta, GAIAA, 0.95)
	require.NoError(t, err)
	assert.Equal(t, 94.0, g.Threshold)
	assert.Equal(t, []string{"layer3.0.bn1"}, g.Taps)
	assert.True(t, g.Accept(94))
	assert.False(t, g.Accept(94.5))
	p := filepath.Join(t.TempDir(), "gate.json")
	require.NoError(t, WriteJSON(p, g))
	g2, err := LoadGate(p)
	require.NoError(t, err)
	assert.Equal(t, g, g2)
	assert.Equal(t, 0.75, g2.AcceptedFraction([]float64{1, 2, 94, 200}))
	_, err = NewGate(sf, meta, ODIN, 0.95)
	assert.ErrorContains(t, err, "no odin column")
}
