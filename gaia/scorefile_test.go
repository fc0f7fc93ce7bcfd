package gaia

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia/data"
)

// A score file whose rows repeat a sample is refused, naming it and both
// lines (every row counted twice would change no mean, but skews ranks and
// counts); a line past MaxScoreLine is refused before it is held whole.
func TestScoreFileHostileInput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dup.csv")
	require.NoError(t, os.WriteFile(p, []byte("index,source,label,pred,msp\n0,a,,1,-0.5\n1,b,,1,-0.25\n0,a,,1,-0.5\n"), 0o644))
	_, err := ReadScoreFile(p)
	assert.ErrorContains(t, err, "dup.csv:4: sample 0 again (first on line 2)")

	long := filepath.Join(dir, "long.csv")
	f, err := os.Create(long)
	require.NoError(t, err)
	_, err = f.WriteString("index,source,label,pred,msp\n0," + strings.Repeat("x", 3*MaxScoreLine) + ",,1,0\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = ReadScoreFile(long)
	assert.ErrorContains(t, err, "a line of more than 1048576 bytes")
	assert.ErrorContains(t, err, "long.csv")
}

// A gate calibrated on seeded noise records no transform: the seed is the
// noise source's, not a preprocessing step (before: "transform": "seed=1").
func TestGateTransformOfNoise(t *testing.T) {
	for spec, want := range map[string]string{
		"noise:uniform,n=5,shape=1x8x8,seed=1": "",
		"folder:x,random-crop=8x8,seed=3":      "random-crop=8x8,seed=3",
		"folder:x,resize=32x32,center-crop=28": "resize=32x32,center-crop=28",
		"noise:gaussian,n=5,seed=2,resize=4x4": "resize=4x4",
	} {
		got, err := data.TransformOptions(spec)
		require.NoError(t, err)
		assert.Equal(t, want, got, spec)
	}
	sf := &ScoreFile{Path: "id.csv", Detectors: []string{"msp"}, Rows: []ScoreRow{{Scores: []float64{-0.5}}}}
	g, err := NewGate(sf, &ScoreMeta{Model: "m.pt", ModelSHA256: "ab", Data: "noise:uniform,n=1,shape=1x8x8,seed=1"}, "msp", 1)
	require.NoError(t, err)
	assert.Equal(t, "", g.Transform)
}
