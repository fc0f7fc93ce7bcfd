//go:build cgo && !gaia_nolibtorch

package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/serve"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// digitFolder writes perClass 28 x 28 gray PNGs in each of classes
// subfolders: strokes at a place that depends on the class.
func digitFolder(t *testing.T, classes, perClass int) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	for c := 0; c < classes; c++ {
		sub := filepath.Join(dir, fmt.Sprintf("c%d", c))
		require.NoError(t, os.MkdirAll(sub, 0o755))
		for i := 0; i < perClass; i++ {
			im := image.NewGray(image.Rect(0, 0, 28, 28))
			for y := 4; y < 24; y++ {
				x := 4 + (c*2+y/3+rng.Intn(3))%20
				im.SetGray(x, y, color.Gray{uint8(200 + rng.Intn(55))})
				im.SetGray(x+1, y, color.Gray{uint8(100 + rng.Intn(100))})
			}
			var b bytes.Buffer
			require.NoError(t, png.Encode(&b, im))
			require.NoError(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("%02d.png", i)), b.Bytes(), 0o644))
		}
	}
	return dir
}

// The whole path of a fitted detector: gaia fit, gaia score --fit,
// calibrate (the gate records the fit), serve (takes the gate's fit, refuses
// another), and the bad inputs of a fit.
func TestFitScoreCalibrateServe(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	dev := testenv.Device()
	tmp := t.TempDir()
	train := digitFolder(t, 10, 12)
	fit := filepath.Join(tmp, "fit.safetensors")
	out, stderr, err := runCmd("fit", "--quiet", "--model", model, "--device", dev, "--data", "folder:"+train, "--out", fit)
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "fit: 120 samples (10 classes with samples, 0 skipped)")
	f, err := gaia.ReadFit(fit)
	require.NoError(t, err)
	assert.True(t, f.Meta.Labelled)
	assert.Equal(t, 120, f.M)
	st, err := os.Stat(fit)
	require.NoError(t, err)
	assert.NotZero(t, st.Size())

	id := filepath.Join(tmp, "id.csv")
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--device", dev, "--fit", fit, "--detectors", "features,msp",
		"--settings-none-such", "x")
	assert.True(t, isUsage(err), "an unknown flag is a usage error")
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--device", dev, "--fit", fit, "--detectors", "features,msp",
		"--knn-k", "20", "--data", "folder:"+train, "--out", id)
	require.NoError(t, err, stderr)
	sf, err := gaia.ReadScoreFile(id)
	require.NoError(t, err)
	assert.Equal(t, []string{"mahalanobis", "react", "knn", "vim", "ash", "dice", "klm", "msp"}, sf.Detectors)
	meta, err := gaia.ReadScoreMeta(id)
	require.NoError(t, err)
	require.NotNil(t, meta.Fit)
	assert.Equal(t, fit, meta.Fit.Path)
	k, err := meta.Settings.Value("knn-k")
	require.NoError(t, err)
	assert.Equal(t, 20, k)

	gate := filepath.Join(tmp, "gate.json")
	_, _, err = runCmd("calibrate", "--id", id, "--detector", "mahalanobis", "--tpr", "0.9", "--out", gate)
	require.NoError(t, err)
	g, err := gaia.LoadGate(gate)
	require.NoError(t, err)
	require.NotNil(t, g.Fit)
	s, err := serve.New(serve.Config{Model: model, Device: dev, Gate: gate})
	require.NoError(t, err, "serve takes the gate's fit")
	assert.Equal(t, []string{"mahalanobis"}, s.Detectors())
	s.Close()
	other := filepath.Join(tmp, "other.safetensors")
	_, stderr, err = runCmd("fit", "--quiet", "--model", model, "--device", dev, "--data", "folder:"+digitFolder(t, 10, 3), "--out", other)
	require.NoError(t, err, stderr)
	_, err = serve.New(serve.Config{Model: model, Device: dev, Gate: gate, Fit: other})
	assert.ErrorContains(t, err, "fit differs from the gate's")

	// Bad inputs, each said clearly.
	noise := "noise:uniform,n=20,shape=1x28x28"
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"fit", "--model", model, "--data", noise, "--out", filepath.Join(tmp, "x")}, "mahalanobis needs labels"},
		{[]string{"fit", "--model", model, "--data", "folder:" + t.TempDir(), "--out", filepath.Join(tmp, "x")}, "holds no PNG or JPEG"},
		{[]string{"fit", "--model", model, "--data", "folder:" + train, "--knn-sample", "1.5", "--out", filepath.Join(tmp, "x")}, "-knn-sample"},
		{[]string{"score", "--model", model, "--data", noise, "--detectors", "knn"}, "knn: needs a fit of in-distribution data (gaia fit makes one); give --fit FILE"},
		{[]string{"score", "--model", filepath.Join(testenv.Testdata(t), "cifar_resnet20.script.pt"), "--fit", fit, "--detectors", "knn", "--data", "noise:uniform,n=4,shape=3x32x32"}, "was made for model"},
		{[]string{"score", "--model", model, "--fit", fit, "--detectors", "knn", "--knn-k", "500", "--data", noise}, "fewer than k = 500"},
		{[]string{"score", "--model", model, "--fit", filepath.Join(tmp, "none.safetensors"), "--detectors", "knn", "--data", noise}, "none.safetensors"},
		{[]string{"score", "--model", model, "--fit", id, "--detectors", "knn", "--data", noise}, "id.csv"},
	} {
		_, _, err := runCmd(c.args...)
		require.Error(t, err, strings.Join(c.args, " "))
		assert.Contains(t, err.Error(), c.msg, strings.Join(c.args, " "))
	}
	// Unlabelled data fits the detectors that need no labels; a tenth kept.
	unl := filepath.Join(tmp, "unl.safetensors")
	out, stderr, err = runCmd("fit", "--quiet", "--model", model, "--device", dev, "--data", "noise:uniform,n=300,shape=1x28x28",
		"--detectors", "knn,vim,react", "--knn-sample", "0.1", "--out", unl)
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "kept 30 feature vectors")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--fit", unl, "--detectors", "mahalanobis", "--data", noise)
	assert.ErrorContains(t, err, "needs the fit set's labels")
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--fit", unl, "--detectors", "knn,vim,react", "--knn-k", "5", "--data", noise, "--out", filepath.Join(tmp, "n.csv"))
	require.NoError(t, err, stderr)
	// One sample a class leaves the covariance nothing.
	tiny := filepath.Join(tmp, "tiny.safetensors")
	_, stderr, err = runCmd("fit", "--quiet", "--model", model, "--device", dev, "--data", "folder:"+digitFolder(t, 10, 1), "--out", tiny)
	require.NoError(t, err, stderr)
	_, _, err = runCmd("score", "--quiet", "--model", model, "--fit", tiny, "--detectors", "mahalanobis", "--data", noise)
	assert.ErrorContains(t, err, "no degrees of freedom")
}
