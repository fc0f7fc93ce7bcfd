package scorefile

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScoreFileRoundTripAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.csv")
	sw, err := Create(p, []string{"msp", "gaia-z"}, nil)
	require.NoError(t, err)
	require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: 0, Source: "a,b.png", Label: 3, Pred: 3, Scores: []float64{-0.5, 0.125}},
		{Index: 1, Source: "c.png", Label: -1, Pred: 2, Scores: []float64{-0.25, 1e-9}}}))
	assert.Error(t, sw.Append([]gaia.ScoreRow{{Scores: []float64{1}}}))
	_, err = os.Stat(p)
	assert.True(t, os.IsNotExist(err), "nothing under the final name before Commit")
	require.NoError(t, sw.Commit())
	sf, err := gaia.ReadScoreFile(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"msp", "gaia-z"}, sf.Detectors)
	assert.Equal(t, "a,b.png", sf.Rows[0].Source)
	assert.Equal(t, -1, sf.Rows[1].Label)
	assert.Equal(t, 1e-9, sf.Rows[1].Scores[1])
	acc, n, ok := sf.Accuracy()
	assert.True(t, ok)
	assert.Equal(t, 1, n)
	assert.Equal(t, 1.0, acc)

	// An aborted run leaves the old file as it was and no partial file.
	sw, err = Create(p, []string{"msp"}, nil)
	require.NoError(t, err)
	require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: 0, Scores: []float64{1}}}))
	sw.Abort()
	sf2, err := gaia.ReadScoreFile(p)
	require.NoError(t, err)
	assert.Equal(t, sf.Rows, sf2.Rows)
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1)

	// Stdout mode.
	var buf bytes.Buffer
	sw, err = Create("-", []string{"msp"}, &buf)
	require.NoError(t, err)
	require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: 0, Label: 1, Scores: []float64{2}}}))
	require.NoError(t, sw.Commit())
	assert.Equal(t, "index,source,label,pred,msp\n0,,1,0,2\n", buf.String())

	// Bad files are named.
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("a,b\n1,2\n"), 0o644))
	_, err = gaia.ReadScoreFile(bad)
	assert.ErrorContains(t, err, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("index,source,label,pred,msp\n0,x,,1,notanumber\n"), 0o644))
	_, err = gaia.ReadScoreFile(bad)
	assert.ErrorContains(t, err, "bad.csv:2")
	require.NoError(t, os.WriteFile(bad, []byte("index,source,label,pred,msp\n"), 0o644))
	_, err = gaia.ReadScoreFile(bad)
	assert.ErrorContains(t, err, "no rows")
	_, err = Create(filepath.Join(dir, "no", "such", "dir.csv"), []string{"msp"}, nil)
	assert.Error(t, err)
}

// NaN, +Inf and -Inf are written and read back (a NaN in one detector's
// column no longer makes the file unreadable), and counted while written.
func TestScoreFileNonFinite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.csv")
	sw, err := Create(p, []string{"gaia-a", "msp"}, nil)
	require.NoError(t, err)
	nan, inf := math.NaN(), math.Inf(1)
	require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: 0, Label: -1, Scores: []float64{inf, nan}},
		{Index: 1, Label: -1, Scores: []float64{-inf, -0.5}}, {Index: 2, Label: -1, Scores: []float64{1, nan}}}))
	assert.Equal(t, []int{0, 2}, sw.NaNs())
	require.NoError(t, sw.Commit())
	raw, _ := os.ReadFile(p)
	assert.Contains(t, string(raw), "0,,,0,+Inf,NaN\n1,,,0,-Inf,-0.5\n")
	sf, err := gaia.ReadScoreFile(p)
	require.NoError(t, err)
	assert.True(t, math.IsInf(sf.Rows[0].Scores[0], 1))
	assert.True(t, math.IsNaN(sf.Rows[0].Scores[1]))
	assert.True(t, math.IsInf(sf.Rows[1].Scores[0], -1))
	col, err := sf.Column("gaia-a")
	require.NoError(t, err)
	assert.Equal(t, []float64{inf, -inf, 1}, col)

	// eval: the other detector's metrics are there, and the NaNs are noted.
	ood := &gaia.ScoreFile{Path: "ood.csv", Detectors: sf.Detectors, Rows: []gaia.ScoreRow{{Scores: []float64{2, nan}}, {Scores: []float64{3, 0}}}}
	tab, err := gaia.Evaluate(sf, []gaia.OODSet{{Name: "x", Scores: ood}}, gaia.EvalOptions{})
	require.NoError(t, err)
	notes := tab.NaNNotes()
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "msp: 2 of 3 ID scores and 1 of 2 in x are NaN")
	var b bytes.Buffer
	require.NoError(t, tab.Write(&b, "table", false))
	assert.Contains(t, b.String(), "ranked as the most OOD")
}
