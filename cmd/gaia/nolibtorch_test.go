//go:build !cgo || gaia_nolibtorch

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/scorefile"
	"github.com/gaia-ood/gaia/internal/shard"
)

// writeScores writes a score file of n rows for detectors msp and gaia-z
// (scores offset by shift) with its provenance.
func writeScores(t *testing.T, path string, n int, shift float64) {
	t.Helper()
	writeRows(t, path, n, shift)
	require.NoError(t, outfile.WriteJSON(gaia.ScoreMetaPath(path), &gaia.ScoreMeta{Model: "m.pt", ModelSHA256: "abc",
		Data: "noise:uniform,n=10,shape=1x8x8,resize=8x8", Detectors: []string{"msp", "gaia-z"}, Settings: gaia.Settings{"taps-z": ""},
		Taps: map[string][]string{"gaia-z": {"bn1"}}, Rows: n}))
}

// writeRows writes the score file alone.
func writeRows(t *testing.T, path string, n int, shift float64) {
	t.Helper()
	dets := []string{"msp", "gaia-z"}
	sw, err := scorefile.Create(path, dets, nil)
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		v := float64(i)/float64(n) + shift
		require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: i, Source: fmt.Sprintf("x#%d", i), Label: i % 3, Pred: i % 3, Scores: []float64{v, 2 * v}}}))
	}
	require.NoError(t, sw.Commit())
}

// TestWithoutLibTorch: a build without LibTorch evaluates, calibrates and
// merges, and the commands that load a model say that they cannot.
func TestWithoutLibTorch(t *testing.T) {
	dir := t.TempDir()
	id, ood := filepath.Join(dir, "id.csv"), filepath.Join(dir, "ood.csv")
	writeScores(t, id, 100, 0)
	writeScores(t, ood, 50, 0.5)
	out, _, err := runCmd("eval", "--id", id, "--ood", "shifted="+ood, "--format", "csv")
	require.NoError(t, err)
	assert.Contains(t, out, "msp,shifted,")
	out, _, err = runCmd("calibrate", "--id", id, "--detector", "gaia-z", "--tpr", "0.9", "--out", filepath.Join(dir, "gate.json"))
	require.NoError(t, err)
	assert.Contains(t, out, "accepts 90.00% of 100")
	g, err := gaia.LoadGate(filepath.Join(dir, "gate.json"))
	require.NoError(t, err)
	assert.Equal(t, "bn1", g.Settings["taps-z"])
	assert.Equal(t, "resize=8x8", g.Transform)

	// Two shards with their manifests, as gaia score --shard writes them.
	shards := filepath.Join(dir, "shards")
	require.NoError(t, os.MkdirAll(shards, 0o755))
	for i := 0; i < 2; i++ {
		sh := shard.Shard{Index: i, Count: 2}
		p := shard.ScoreFilePath(shards, sh)
		writeRows(t, p, 5, float64(i))
		if i == 0 { // a stray provenance file beside a shard is not taken for a manifest
			require.NoError(t, outfile.WriteJSON(gaia.ScoreMetaPath(p), &gaia.ScoreMeta{Model: "m.pt"}))
		}
		sum, err := digest.File(p)
		require.NoError(t, err)
		require.NoError(t, outfile.WriteJSON(shard.ManifestPath(shards, sh), &shard.Manifest{Shard: i, Shards: 2, Start: 5 * i, End: 5 * (i + 1),
			Rows: 5, File: sh.Name() + ".csv", FileSHA256: sum, DataSHA256: "d", Samples: 10,
			Score: gaia.ScoreMeta{Model: "m.pt", ModelSHA256: "abc", Data: "noise:uniform,n=10,shape=1x8x8", Detectors: []string{"msp", "gaia-z"},
				Settings: gaia.Settings{}, Rows: 5}}))
	}
	out, _, err = runCmd("merge", shards, "--out", filepath.Join(dir, "merged.csv"))
	require.NoError(t, err)
	assert.Contains(t, out, "merged 10 rows")

	for _, args := range [][]string{
		{"score", "--model", "m.pt", "--data", "noise:uniform,n=2,shape=1x8x8"},
		{"info", "--model", "m.pt"},
		{"serve", "--model", "m.pt"},
		{"speed", "--model", "m.pt"},
		{"bench", "config.yaml"},
	} {
		_, _, err := runCmd(args...)
		require.Error(t, err, args[0])
		assert.Contains(t, err.Error(), "gaia "+args[0]+" needs LibTorch", args[0])
		assert.Contains(t, err.Error(), "built with CGO_ENABLED=0", args[0])
	}
	out, _, err = runCmd("version")
	require.NoError(t, err)
	assert.Contains(t, out, "LibTorch none")
}
