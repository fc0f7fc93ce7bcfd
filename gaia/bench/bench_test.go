//go:build cgo && !gaia_nolibtorch

package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
)

func TestRunChecksBeforeScoringThenReuses(t *testing.T) {
	dir := testenv.Testdata(t)
	model := filepath.Join(dir, "cifar_resnet20.script.pt")
	out := filepath.Join(t.TempDir(), "report")
	base := "model: " + model + "\nid: {name: A, data: 'noise:uniform,n=24,shape=3x32x32,seed=1'}\nbatch: 16\nout: " + out + "\n"

	// A set whose images do not fit the model, and an empty folder: nothing is scored.
	empty := t.TempDir()
	for _, ood := range []string{
		"ood: [{name: B, data: 'noise:gaussian,n=8,shape=3x32x32'}, {name: C, data: 'noise:gaussian,n=8,shape=3x64x64'}]\n",
		"ood: [{name: B, data: 'folder:" + empty + "'}]\n",
	} {
		c, err := LoadConfig(writeConfig(t, base+ood))
		require.NoError(t, err)
		_, err = Run(context.Background(), c, nil)
		require.Error(t, err)
		_, statErr := os.Stat(filepath.Join(out, "scores"))
		assert.True(t, os.IsNotExist(statErr), "no score written before the inputs are checked: %v", err)
	}

	c, err := LoadConfig(writeConfig(t, base+"ood: [{name: B noise, data: 'noise:gaussian,n=16,shape=3x32x32,seed=2'}]\n"))
	require.NoError(t, err)
	res, err := Run(context.Background(), c, nil)
	require.NoError(t, err)
	for _, f := range []string{"report.md", "report.html", "scores/A.csv.json", "metrics.csv", "metrics.json", "roc-B_noise.png", "hist-gaia-a.png", "scores/A.csv", "scores/B_noise.csv"} {
		st, err := os.Stat(filepath.Join(out, f))
		require.NoError(t, err, f)
		assert.Greater(t, st.Size(), int64(0), f)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "| gaia-a |")
	assert.Contains(t, string(md), "LibTorch")
	assert.Contains(t, string(md), "gaia-a taps: 12")
	for _, p := range res.Phases {
		assert.False(t, p.Reused, p.Name)
	}
	res2, err := Run(context.Background(), c, nil)
	require.NoError(t, err)
	assert.True(t, res2.Phases[1].Reused)
	assert.True(t, res2.Phases[2].Reused)
	assert.Equal(t, res.Table.Rows, res2.Table.Rows)

	// Other detectors: the score files are made again.
	c.detectors = []string{"msp"}
	res3, err := Run(context.Background(), c, nil)
	require.NoError(t, err)
	assert.False(t, res3.Phases[1].Reused)

	// Interrupted: no partial file, no key for an unfinished set.
	c.detectors = []string{"gaia-z"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, c, nil)
	require.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(filepath.Join(out, "scores"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), "partial")
	}
	res4, err := Run(context.Background(), c, nil)
	require.NoError(t, err)
	assert.False(t, res4.Phases[1].Reused, "a rerun scores the unfinished set again")
}

// A config with a fit: fitted once, reused while model and data are the
// same, and the feature-based detectors scored with it.
func TestRunWithFit(t *testing.T) {
	dir := testenv.Testdata(t)
	model := filepath.Join(dir, "cifar_resnet20.script.pt")
	out := filepath.Join(t.TempDir(), "report")
	c, err := LoadConfig(writeConfig(t, "model: "+model+"\nid: {name: A, data: 'noise:uniform,n=24,shape=3x32x32,seed=1'}\n"+
		"ood: [{name: B, data: 'noise:gaussian,n=16,shape=3x32x32,seed=2'}]\nfit: {data: 'noise:uniform,n=80,shape=3x32x32,seed=9'}\n"+
		"detectors: knn,vim,msp\nsettings: {knn-k: 5}\nbatch: 16\nout: "+out+"\n"))
	require.NoError(t, err)
	res, err := Run(context.Background(), c, nil)
	require.NoError(t, err)
	require.Equal(t, "fit noise:uniform,n=80,shape=3x32x32,seed=9", res.Phases[1].Name)
	assert.False(t, res.Phases[1].Reused)
	assert.Equal(t, []string{"knn", "vim", "msp"}, func() []string {
		var d []string
		for _, r := range res.Table.Rows {
			d = append(d, r.Detector)
		}
		return d
	}())
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "Fit of the feature-based detectors")
	res, err = Run(context.Background(), c, nil)
	require.NoError(t, err)
	assert.True(t, res.Phases[1].Reused, "the fit")
	assert.True(t, res.Phases[2].Reused, "the scores of A")
	// Mahalanobis needs labels, which noise has not: refused before scoring.
	c.detectors = []string{"mahalanobis"}
	c.Fit.Data = "noise:uniform,n=81,shape=3x32x32,seed=9"
	_, err = Run(context.Background(), c, nil)
	assert.ErrorContains(t, err, "mahalanobis needs labels")
}

// The committed ImageNet-1K config loads with its paths set through the
// environment, as docs/imagenet.md tells a researcher to.
func TestImageNetConfig(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("GAIA_MODEL", filepath.Join(testenv.Root(), "models", "mnist_resnet.pt"))
	for _, v := range []string{"IMAGENET_VAL", "INATURALIST", "SUN", "PLACES", "TEXTURES"} {
		t.Setenv(v, filepath.Join(tmp, strings.ToLower(v)))
	}
	c, err := LoadConfig(filepath.Join(testenv.Root(), "configs", "imagenet1k.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "folder:"+filepath.Join(tmp, "imagenet_val"), c.ID.Data)
	var names []string
	for _, o := range c.OOD {
		names = append(names, o.Name)
	}
	assert.Equal(t, []string{"iNaturalist", "SUN", "Places", "Textures"}, names)
	assert.Equal(t, 16, c.Batch)
	assert.Len(t, c.DetectorList(), 7)
}
