//go:build cgo && !gaia_nolibtorch

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/testenv"
)

func TestInfo(t *testing.T) {
	dir := testenv.Testdata(t)
	out, _, err := runCmd("info", "--model", filepath.Join(dir, "cifar_resnet20.script.pt"))
	require.NoError(t, err)
	assert.Contains(t, out, "19 normalization taps, 688 channels")
	assert.Contains(t, out, "layer3.2.bn2")
	assert.Contains(t, out, "64x8x8")
	assert.Contains(t, out, "classifier input: linear:input (64 features)")
	assert.Contains(t, out, "devices:")

	_, _, err = runCmd("info")
	assert.True(t, isUsage(err))
	_, _, err = runCmd("info", "--model", filepath.Join(dir, "nope.pt"))
	assert.ErrorContains(t, err, "nope.pt")
	_, _, err = runCmd("bogus")
	assert.True(t, isUsage(err))
}

func TestScoreAndEval(t *testing.T) {
	dir := testenv.Testdata(t)
	model := filepath.Join(dir, "cifar_resnet20.script.pt")
	tmp := t.TempDir()
	id := filepath.Join(tmp, "id.csv")
	ood := filepath.Join(tmp, "ood.csv")
	_, stderr, err := runCmd("score", "--model", model, "--data", "noise:gaussian,n=40,shape=3x32x32,seed=1",
		"--batch", "16", "--out", id)
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "gaia-z taps: 19, 688 channels")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", "noise:uniform,n=30,shape=3x32x32,seed=2",
		"--detectors", "gaia-z,msp,gradnorm", "--out", ood)
	require.NoError(t, err)
	sf, err := gaia.ReadScoreFile(id)
	require.NoError(t, err)
	assert.Len(t, sf.Rows, 40)
	assert.Equal(t, allDetectors(t), sf.Detectors)
	for i, r := range sf.Rows {
		assert.Equal(t, i, r.Index)
	}
	// Same samples, other batch size: same scores.
	id2 := filepath.Join(tmp, "id2.csv")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", "noise:gaussian,n=40,shape=3x32x32,seed=1",
		"--batch", "7", "--detectors", "msp,gaia-a", "--out", id2)
	require.NoError(t, err)
	sf2, err := gaia.ReadScoreFile(id2)
	require.NoError(t, err)
	for i := range sf.Rows {
		assert.InDelta(t, sf.Rows[i].Scores[0], sf2.Rows[i].Scores[1], 1e-5*abs(sf.Rows[i].Scores[0]))
	}

	// eval needs every ID detector in each OOD file.
	_, _, err = runCmd("eval", "--id", id, "--ood", "u="+ood)
	assert.ErrorContains(t, err, "no gaia-a column")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", "noise:uniform,n=30,shape=3x32x32,seed=2", "--out", ood)
	require.NoError(t, err)
	out, _, err := runCmd("eval", "--id", id, "--ood", "uniform="+ood, "--format", "csv")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Len(t, lines, 1+2*len(allDetectors(t)))
	out, _, err = runCmd("eval", "--id", id, "--ood", "uniform="+ood)
	require.NoError(t, err)
	assert.Contains(t, out, "ID positive")
	out, _, err = runCmd("eval", "--id", id, "--ood", "uniform="+ood, "--ood-positive", "--format", "markdown")
	require.NoError(t, err)
	assert.Contains(t, out, "FPR95(OOD+)")
	out, _, err = runCmd("eval", "--id", id, "--ood", "uniform="+ood, "--format", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"auroc"`)
	// A gate calibrated on the ID scores, applied by eval.
	gate := filepath.Join(tmp, "gate.json")
	out, _, err = runCmd("calibrate", "--id", id, "--detector", "gaia-a", "--tpr", "0.9", "--out", gate)
	require.NoError(t, err)
	assert.Contains(t, out, "accepts 90.00% of 40")
	g, err := gaia.LoadGate(gate)
	require.NoError(t, err)
	assert.Len(t, g.Taps, 12)
	assert.Len(t, g.ModelSHA256, 64)
	out, _, err = runCmd("eval", "--id", id, "--ood", "uniform="+ood, "--gate", gate)
	require.NoError(t, err)
	assert.Contains(t, out, "TPR  90.00%")
	_, _, err = runCmd("calibrate", "--id", id, "--detector", "gaia-a", "--tpr", "1.5", "--out", gate)
	assert.True(t, isUsage(err))
	_, _, err = runCmd("calibrate", "--id", id2, "--detector", "gaia-z", "--out", gate)
	assert.ErrorContains(t, err, "no gaia-z column")

	_, _, err = runCmd("eval", "--id", id)
	assert.True(t, isUsage(err))
	_, _, err = runCmd("eval", "--id", id, "--ood", "x="+ood, "--format", "xml")
	assert.True(t, isUsage(err))
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func TestScoreBadInput(t *testing.T) {
	dir := testenv.Testdata(t)
	model := filepath.Join(dir, "cifar_resnet20.script.pt")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "s.csv")
	cases := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"unknown detector", []string{"--data", "noise:uniform,n=2,shape=3x32x32", "--detectors", "gaia-x"}, `unknown detector "gaia-x"`, true},
		{"missing data", []string{"--data", "folder:" + filepath.Join(tmp, "none")}, "none", false},
		{"empty folder", []string{"--data", "folder:" + tmp}, "no PNG or JPEG", false},
		{"wrong shape", []string{"--data", "noise:uniform,n=2,shape=3x64x64"}, "add resize=32x32 or center-crop=32x32", false},
		{"bad spec", []string{"--data", "nokind"}, "want KIND:PATH", true},
		{"bad batch", []string{"--data", "noise:uniform,n=2,shape=3x32x32", "--batch", "0"}, "-batch must be positive", true},
		{"bad device", []string{"--data", "noise:uniform,n=2,shape=3x32x32", "--device", "tpu"}, "tpu", true},
		{"bad taps", []string{"--data", "noise:uniform,n=2,shape=3x32x32", "--taps-a", "layer9"}, `"layer9" matches no normalization tap`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"score", "--quiet", "--model", model, "--out", out}, c.args...)
			_, _, err := runCmd(args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Equal(t, c.usage, isUsage(err), "usage error: %v", err)
			_, statErr := os.Stat(out)
			assert.True(t, os.IsNotExist(statErr), "no score file after a failed run")
		})
	}
	// A missing MODEL.json is named, with the way out.
	raw, err := os.ReadFile(model)
	require.NoError(t, err)
	bare := filepath.Join(tmp, "bare.pt")
	require.NoError(t, os.WriteFile(bare, raw, 0o644))
	_, _, err = runCmd("score", "--quiet", "--model", bare, "--data", "noise:uniform,n=2,shape=3x32x32", "--out", out)
	assert.ErrorContains(t, err, "bare.json")
	assert.ErrorContains(t, err, "-input")
	_, _, err = runCmd("score", "--quiet", "--model", bare, "--input", "3x32x32", "--data", "noise:uniform,n=2,shape=3x32x32", "--out", out)
	assert.NoError(t, err)
	// No partial files are left beside the output.
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), "partial")
	}
}

// TestNoCgoBinaryReadsScoreFiles: `CGO_ENABLED=0 go build ./cmd/gaia` makes
// a binary whose eval and calibrate give what this build's give on score
// files this build wrote, and whose score says it has no LibTorch.
func TestNoCgoBinaryReadsScoreFiles(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	root := testenv.Root()
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Skip("the sources are not beside this test binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "gaia-nocgo")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/gaia")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	model := filepath.Join(root, "models", "mnist_resnet.pt")
	id, ood := filepath.Join(tmp, "id.csv"), filepath.Join(tmp, "ood.csv")
	for path, spec := range map[string]string{id: "noise:gaussian,n=64,shape=1x28x28,seed=1", ood: "noise:uniform,n=64,shape=1x28x28,seed=2"} {
		_, stderr, err := runCmd("score", "--quiet", "--model", model, "--data", spec, "--device", testenv.Device(), "--out", path)
		require.NoError(t, err, stderr)
	}
	want, _, err := runCmd("eval", "--id", id, "--ood", "U="+ood, "--format", "json")
	require.NoError(t, err)
	got, err := exec.Command(bin, "eval", "--id", id, "--ood", "U="+ood, "--format", "json").Output()
	require.NoError(t, err)
	assert.JSONEq(t, want, string(got))
	cal, err := exec.Command(bin, "calibrate", "--id", id, "--detector", "odin", "--out", filepath.Join(tmp, "gate.json")).CombinedOutput()
	require.NoError(t, err, "%s", cal)
	g, err := gaia.LoadGate(filepath.Join(tmp, "gate.json"))
	require.NoError(t, err)
	assert.Equal(t, 1000.0, g.Settings["odin-temperature"])
	msg, err := exec.Command(bin, "score", "--model", model, "--data", "noise:uniform,n=2,shape=1x28x28").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(msg), "gaia score needs LibTorch")
}

// allDetectors is the group "all".
func allDetectors(t *testing.T) []string {
	all, err := gaia.ParseDetectors("all")
	require.NoError(t, err)
	return all
}
