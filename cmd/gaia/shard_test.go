//go:build cgo && !gaia_nolibtorch

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// checkSameScores compares two score files row by row: same samples, same
// predictions, scores within 1e-5 relative (shards batch differently).
func checkSameScores(t *testing.T, want, got string) {
	t.Helper()
	a, err := gaia.ReadScoreFile(want)
	require.NoError(t, err)
	b, err := gaia.ReadScoreFile(got)
	require.NoError(t, err)
	require.Equal(t, a.Detectors, b.Detectors)
	require.Equal(t, len(a.Rows), len(b.Rows))
	for i := range a.Rows {
		ra, rb := a.Rows[i], b.Rows[i]
		require.Equal(t, ra.Index, rb.Index)
		require.Equal(t, ra.Source, rb.Source)
		require.Equal(t, ra.Pred, rb.Pred, "row %d", i)
		for d := range ra.Scores {
			assert.InDelta(t, ra.Scores[d], rb.Scores[d], 1e-5*max(1, abs(ra.Scores[d])), "row %d %s", i, a.Detectors[d])
		}
	}
}

// Three shard processes at once, then gaia merge: the rows and scores of one
// unsharded run. A rerun skips complete shards; merge refuses a missing,
// damaged or foreign shard.
func TestShardsAndMerge(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	spec := "noise:gaussian,n=101,shape=1x28x28,seed=9"
	tmp := t.TempDir()
	full := filepath.Join(tmp, "full.csv")
	_, stderr, err := runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,energy",
		"--batch", "16", "--device", testenv.Device(), "--out", full)
	require.NoError(t, err, stderr)

	dir := filepath.Join(tmp, "shards")
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := gaiaProcess("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,energy",
				"--batch", "16", "--device", testenv.Device(), "--shard", fmt.Sprintf("%d/3", i), "--out-dir", dir).CombinedOutput()
			assert.NoError(t, err, string(out))
		}(i)
	}
	wg.Wait()
	merged := filepath.Join(tmp, "merged.csv")
	out, _, err := runCmd("merge", dir, "--out", merged)
	require.NoError(t, err)
	assert.Contains(t, out, "merged 101 rows")
	checkSameScores(t, full, merged)
	meta, err := gaia.ReadScoreMeta(merged) // the merged file can be calibrated
	require.NoError(t, err)
	assert.Equal(t, 101, meta.Rows)
	assert.Equal(t, []string{"gaia-z", "energy"}, meta.Detectors)

	// Kubernetes' and Slurm's environments name the same shards.
	cmd := gaiaProcess("score", "--model", model, "--data", spec, "--detectors", "gaia-z,energy", "--batch", "16",
		"--device", testenv.Device(), "--shard", "auto", "--out-dir", dir)
	cmd.Env = append(cmd.Env, "SLURM_ARRAY_TASK_ID=3", "SLURM_ARRAY_TASK_MIN=1", "SLURM_ARRAY_TASK_COUNT=3")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	assert.Contains(t, string(b), "shard 2/3 (samples 67 to 101) is already complete")

	// Merge refuses: a damaged shard, a missing one, a foreign one.
	csv1 := filepath.Join(dir, "shard-00001-of-00003.csv")
	orig, err := os.ReadFile(csv1)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(csv1, append(orig, "1,x,,0,1,1\n"...), 0o644))
	_, _, err = runCmd("merge", dir, "--out", merged)
	assert.ErrorContains(t, err, "shard-00001-of-00003.csv has checksum")
	require.NoError(t, os.WriteFile(csv1, orig, 0o644))

	man2 := filepath.Join(dir, "shard-00002-of-00003.json")
	require.NoError(t, os.Rename(man2, man2+".bak"))
	_, _, err = runCmd("merge", dir, "--out", merged)
	assert.ErrorContains(t, err, "1 of 3 shards missing: 2 (shard-00002-of-00003)")
	require.NoError(t, os.Rename(man2+".bak", man2))

	other := filepath.Join(tmp, "other")
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,msp",
		"--batch", "16", "--device", testenv.Device(), "--shard", "1/3", "--out-dir", other)
	require.NoError(t, err, stderr)
	for _, ext := range []string{".csv", ".json"} {
		b, err := os.ReadFile(filepath.Join(other, "shard-00001-of-00003"+ext))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "shard-00001-of-00003"+ext), b, 0o644))
	}
	_, _, err = runCmd("merge", dir, "--out", merged)
	assert.ErrorContains(t, err, "shard-00001-of-00003.json does not belong with")
	assert.ErrorContains(t, err, "detectors gaia-z,msp, not gaia-z,energy")
	// Scoring this job's shard 1 into the folder now holding a foreign one is refused too.
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,energy",
		"--shard", "1/3", "--out-dir", dir)
	assert.ErrorContains(t, err, "from another job")

	_, _, err = runCmd("merge", filepath.Join(tmp, "empty"), "--out", merged)
	assert.ErrorContains(t, err, "no shard manifest")
	_, _, err = runCmd("score", "--model", model, "--data", spec, "--shard", "3/3", "--out-dir", dir)
	assert.True(t, isUsage(err))
	_, _, err = runCmd("score", "--model", model, "--data", spec, "--shard", "0/3")
	assert.True(t, isUsage(err))
}

// A shard killed half way leaves nothing that counts; its rerun completes it
// and the merge equals the unsharded run.
func TestShardKilledAndRerun(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	spec := "noise:uniform,n=3000,shape=1x28x28,seed=5"
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "shards")
	args := []string{"score", "--model", model, "--data", spec, "--detectors", "msp,gaia-z", "--batch", "50",
		"--device", testenv.Device(), "--out-dir", dir}
	cmd := gaiaProcess(append(args, "--shard", "0/2")...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stderr)
	sc.Split(scanLinesOrCR)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "300/1500") {
			break
		}
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	_, err = os.Stat(filepath.Join(dir, "shard-00000-of-00002.json"))
	assert.True(t, os.IsNotExist(err), "a killed shard left a manifest")
	_, err = os.Stat(filepath.Join(dir, "shard-00000-of-00002.csv"))
	assert.True(t, os.IsNotExist(err), "a killed shard left a score file under its final name")
	_, _, err = runCmd("merge", dir, "--out", filepath.Join(tmp, "m.csv"))
	assert.ErrorContains(t, err, "no shard manifest")

	for _, sh := range []string{"0/2", "1/2"} {
		b, err := gaiaProcess(append(args, "--quiet", "--shard", sh)...).CombinedOutput()
		require.NoError(t, err, string(b))
	}
	partial, _ := filepath.Glob(filepath.Join(dir, ".*partial*"))
	assert.Empty(t, partial, "the rerun removes the killed try's temporary file")
	merged := filepath.Join(tmp, "merged.csv")
	_, _, err = runCmd("merge", dir, "--out", merged)
	require.NoError(t, err)
	full := filepath.Join(tmp, "full.csv")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "msp,gaia-z", "--batch", "50",
		"--device", testenv.Device(), "--out", full)
	require.NoError(t, err)
	checkSameScores(t, full, merged)
}

// scanLinesOrCR splits on \n and on the \r a redrawn progress bar uses.
func scanLinesOrCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		if c == '\n' || c == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// One replica per device of a list, fed by one loader: the score file of a
// single-device run, rows in input order.
func TestDeviceList(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	spec := "noise:uniform,n=230,shape=1x28x28,seed=4"
	tmp := t.TempDir()
	one, three := filepath.Join(tmp, "one.csv"), filepath.Join(tmp, "three.csv")
	dev := testenv.Device()
	_, stderr, err := runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,gaia-a,msp",
		"--batch", "8", "--device", dev, "--out", one)
	require.NoError(t, err, stderr)
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "gaia-z,gaia-a,msp",
		"--batch", "8", "--device", dev+","+dev+","+dev, "--out", three)
	if testenv.OnCUDA() {
		require.ErrorContains(t, err, "named twice")
		return
	}
	require.NoError(t, err, stderr)
	checkSameScores(t, one, three)
	meta, err := gaia.ReadScoreMeta(three)
	require.NoError(t, err)
	assert.Equal(t, "cpu,cpu,cpu", meta.Device)

	for dev, msg := range map[string]string{"cuda:x": "unknown device", "cpu,auto": "auto only alone", "cuda:1,cuda:1": "named twice"} {
		_, _, err = runCmd("score", "--model", model, "--data", spec, "--device", dev)
		assert.True(t, isUsage(err), dev)
		assert.ErrorContains(t, err, msg)
	}
}

// A model's MODEL.json "transform" applies to a data spec without one, and
// the score file's provenance records the spec as applied.
func TestModelTransform(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(testenv.Root(), "models", "mnist_resnet")
	raw, err := os.ReadFile(src + ".pt")
	require.NoError(t, err)
	model := filepath.Join(tmp, "m.pt")
	require.NoError(t, os.WriteFile(model, raw, 0o644))
	meta, err := os.ReadFile(src + ".json")
	require.NoError(t, err)
	meta = []byte(strings.Replace(string(meta), `"arch"`, `"transform": "resize=28x28", "arch"`, 1))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "m.json"), meta, 0o644))
	spec := "noise:uniform,n=6,shape=1x40x40,seed=2"
	out := filepath.Join(tmp, "s.csv")
	_, stderr, err := runCmd("score", "--model", model, "--data", spec, "--detectors", "msp", "--device", testenv.Device(), "--out", out)
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "resize to 28x28")
	pm, err := gaia.ReadScoreMeta(out)
	require.NoError(t, err)
	assert.Equal(t, spec+",resize=28x28", pm.Data)
	// The spec's own transform wins.
	_, _, err = runCmd("score", "--model", model, "--data", spec+",center-crop=28", "--detectors", "msp", "--out", out)
	require.NoError(t, err)
	pm, err = gaia.ReadScoreMeta(out)
	require.NoError(t, err)
	assert.Equal(t, spec+",center-crop=28", pm.Data)
}
