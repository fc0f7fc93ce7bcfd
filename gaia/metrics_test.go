package gaia

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
)

// TestMetricsAgainstSklearn compares every metric with scikit-learn on random
// scores, heavy ties and degenerate cases (scripts/metrics_reference.py).
func TestMetricsAgainstSklearn(t *testing.T) {
	path := filepath.Join(testenv.Testdata(t), "metrics_cases.json")
	testenv.Need(t, path)
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "run `make testdata`")
	var cases []struct {
		Name string    `json:"name"`
		ID   []float64 `json:"id"`
		OOD  []float64 `json:"ood"`
		Want Metrics   `json:"want"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.NotEmpty(t, cases)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := Compute(c.ID, c.OOD)
			require.NoError(t, err)
			assert.InDelta(t, c.Want.FPR95, got.FPR95, 1e-12, "fpr95")
			assert.InDelta(t, c.Want.FPR95OODPositive, got.FPR95OODPositive, 1e-12, "fpr95 ood positive")
			assert.InDelta(t, c.Want.AUROC, got.AUROC, 1e-12, "auroc")
			assert.InDelta(t, c.Want.AUPRIn, got.AUPRIn, 1e-12, "aupr-in")
			assert.InDelta(t, c.Want.AUPROut, got.AUPROut, 1e-12, "aupr-out")
			assert.InDelta(t, c.Want.DetectionError, got.DetectionError, 1e-12, "detection error")
			assert.Equal(t, len(c.ID), got.NumID)
		})
	}
}

func TestMetricsHandWorked(t *testing.T) {
	// ID scores 0..9, OOD 10..19: perfectly separated.
	var id, ood []float64
	for i := 0; i < 10; i++ {
		id = append(id, float64(i))
		ood = append(ood, float64(10+i))
	}
	m, err := Compute(id, ood)
	require.NoError(t, err)
	assert.Equal(t, 1.0, m.AUROC)
	assert.Equal(t, 0.0, m.FPR95)
	assert.Equal(t, 0.0, m.DetectionError)
	// Swapped: everything wrong.
	m, err = Compute(ood, id)
	require.NoError(t, err)
	assert.Equal(t, 0.0, m.AUROC)
	assert.Equal(t, 1.0, m.FPR95)
}

func TestMetricsDegenerate(t *testing.T) {
	_, err := Compute(nil, []float64{1})
	assert.ErrorIs(t, err, ErrEmptySet)
	assert.Contains(t, err.Error(), "in-distribution")
	_, err = Compute([]float64{1}, []float64{})
	assert.ErrorIs(t, err, ErrEmptySet)
	assert.Contains(t, err.Error(), "OOD")
}

// NaN ranks as the most OOD, tied with +Inf, and is counted; one NaN no
// longer blocks the metrics.
func TestMetricsNaN(t *testing.T) {
	inf := math.Inf(1)
	id := []float64{1, 2, 3, nanValue(), 4}
	ood := []float64{2.5, nanValue(), 5, inf, -inf}
	m, err := Compute(id, ood)
	require.NoError(t, err)
	want, err := Compute([]float64{1, 2, 3, inf, 4}, []float64{2.5, inf, 5, inf, -inf})
	require.NoError(t, err)
	assert.Equal(t, 1, m.NaNID)
	assert.Equal(t, 1, m.NaNOOD)
	m.NaNID, m.NaNOOD = 0, 0
	assert.Equal(t, want, m)
	assert.False(t, math.IsNaN(id[3]) == false, "the caller's scores are not changed")
}

func nanValue() float64 { z := 0.0; return z / z }

// ExampleCompute: four ID and four OOD scores, one OOD sample (2.5) among
// the ID ones.
func ExampleCompute() {
	m, _ := Compute([]float64{1, 2, 3, 4}, []float64{2.5, 5, 6, 7})
	fmt.Printf("AUROC %.3f, FPR95 %.2f (ID positive), %.2f (OOD positive), detection error %.3f\n",
		m.AUROC, m.FPR95, m.FPR95OODPositive, m.DetectionError)
	// Output: AUROC 0.875, FPR95 0.25 (ID positive), 0.50 (OOD positive), detection error 0.125
}
