package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/scorefile"
)

// noiseScores writes a score file over seeded noise, as gaia score would
// for a 1x8x8 model, with its provenance.
func noiseScores(t *testing.T, path, kind string, n int, shift float64) {
	t.Helper()
	dets := []string{"msp", "gaia-z"}
	sw, err := scorefile.Create(path, dets, nil)
	require.NoError(t, err)
	require.NoError(t, sw.WithSidecar())
	for i := 0; i < n; i++ {
		v := float64((i*37)%n)/float64(n) + shift
		require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: i, Source: fmt.Sprintf("%s-noise#%d", kind, i), Label: -1, Pred: i % 3, Scores: []float64{v, -v}}}))
	}
	raw, err := outfile.JSON(&gaia.ScoreMeta{Model: "m.pt", ModelSHA256: "abc", Data: fmt.Sprintf("noise:%s,n=%d,shape=1x8x8,seed=3", kind, n),
		Detectors: dets, Settings: gaia.Settings{}, Taps: map[string][]string{"gaia-z": {"bn1"}}, Rows: n, Input: []int{1, 8, 8}})
	require.NoError(t, err)
	require.NoError(t, sw.CommitWith(raw))
}

// gaia report makes the page from score files alone (also without
// LibTorch): the table, the plots, and thumbnails made again from the data
// its provenance names; its mistakes are usage errors naming the flag.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	id, ood := filepath.Join(dir, "id.csv"), filepath.Join(dir, "ood.csv")
	noiseScores(t, id, "uniform", 40, 0)
	noiseScores(t, ood, "gaussian", 30, 0.5)
	out := filepath.Join(dir, "rep")
	_, stderr, err := runCmd("report", "--id", "ID="+id, "--ood", "Far="+ood, "--out", out, "--gallery", "4")
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "report: "+filepath.Join(out, "report.html"))
	raw, err := os.ReadFile(filepath.Join(out, "report.html"))
	require.NoError(t, err)
	page := string(raw)
	assert.Equal(t, 2, strings.Count(page, `<td class="det">`), "a row per detector")
	assert.Equal(t, 4, strings.Count(page, `<div class="gallery">`), "2 detectors x (ID + 1 OOD set)")
	assert.Equal(t, 16, strings.Count(page, `<div class="tile`))
	assert.Equal(t, 16+3, strings.Count(page, `src="data:image/png;base64,`), "thumbnails, 1 ROC, 2 histograms")
	assert.Contains(t, page, "uniform-noise#")
	for _, f := range []string{"roc-Far.png", "hist-msp.png", "hist-gaia-z.png"} {
		assert.FileExists(t, filepath.Join(out, f))
	}

	// --detectors, --gallery 0: no galleries.
	_, _, err = runCmd("report", "--id", id, "--ood", "Far="+ood, "--out", out, "--gallery", "0", "--detectors", "msp")
	require.NoError(t, err)
	raw, _ = os.ReadFile(filepath.Join(out, "report.html"))
	assert.Equal(t, 1, strings.Count(string(raw), `<td class="det">`))
	assert.NotContains(t, string(raw), `<div class="gallery">`)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--id", id, "--out", out}, "at least one -ood"},
		{[]string{"--id", id, "--ood", ood, "--out", out}, "want NAME=FILE"},
		{[]string{"--id", id, "--ood", "Far=" + ood, "--ood", "Far=" + ood, "--out", out}, "named twice"},
		{[]string{"--id", id, "--ood", "Far=" + filepath.Join(dir, "none.csv"), "--out", out}, "none.csv"},
		{[]string{"--id", id, "--ood", "Far=" + ood, "--out", out, "--detectors", "msp,odin"}, "no scores of odin"},
		{[]string{"--id", id, "--ood", "Far=" + ood, "--out", out, "--gallery", "-1"}, "-gallery"},
	} {
		_, _, err := runCmd(append([]string{"report"}, c.args...)...)
		require.Error(t, err, c.args)
		assert.Contains(t, err.Error(), c.want, c.args)
	}
}
