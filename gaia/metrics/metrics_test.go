package metrics

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
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

// The FPR95 threshold: FPR95 is the fraction of OOD scores at or below it,
// and it accepts at least 95% of ID, on sizes and ties of every kind.
func TestThreshold95(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for trial := 0; trial < 200; trial++ {
		nID, nOOD := 1+r.Intn(300), 1+r.Intn(300)
		levels := 2 + r.Intn(40) // few levels: many ties
		id, ood := make([]float64, nID), make([]float64, nOOD)
		for i := range id {
			id[i] = float64(r.Intn(levels))
		}
		for i := range ood {
			ood[i] = float64(r.Intn(levels)) + 0.5*float64(r.Intn(2))
		}
		if trial%7 == 0 {
			id[0] = math.NaN()
		}
		m, err := Compute(id, ood)
		if err != nil {
			t.Fatal(err)
		}
		th := Threshold95(id)
		accID, accOOD := 0, 0
		for _, v := range id {
			if v <= th || math.IsInf(th, 1) { // NaN ranks with +Inf
				accID++
			}
		}
		for _, v := range ood {
			if v <= th {
				accOOD++
			}
		}
		if float64(accID) < 0.95*float64(nID)-1e-9 {
			t.Fatalf("trial %d: threshold %v accepts %d of %d ID", trial, th, accID, nID)
		}
		if got := float64(accOOD) / float64(nOOD); math.Abs(got-m.FPR95) > 1e-12 {
			t.Fatalf("trial %d: %d/%d OOD at or below %v = %v, FPR95 %v", trial, accOOD, nOOD, th, got, m.FPR95)
		}
	}
	if !math.IsNaN(Threshold95(nil)) {
		t.Fatal("no scores: want NaN")
	}
}
