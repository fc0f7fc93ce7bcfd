package cli

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/torch"
)

// TestSettingFlags: every setting is a flag of its own, with the
// registry's help and default; -h lists them.
func TestSettingFlags(t *testing.T) {
	var help bytes.Buffer
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(&help)
	s := gaia.Settings{}
	AddSettingFlags(fs, s)
	require.NoError(t, fs.Parse([]string{"--odin-temperature", "10", "-taps-a", "layer4", "--energy-temperature=2"}))
	assert.Equal(t, gaia.Settings{"odin-temperature": 10.0, "taps-a": "layer4", "energy-temperature": 2.0}, s)
	err := fs.Parse([]string{"--odin-epsilon", "-0.1"})
	assert.ErrorContains(t, err, "must be a non-negative number")
	fs.PrintDefaults()
	assert.Contains(t, help.String(), "-odin-temperature temperature")
	assert.Contains(t, help.String(), "ODIN's softmax temperature (odin) (default 1000)")
	assert.Contains(t, help.String(), "(gaia-z, gaia-z-fast)")
	assert.Contains(t, DetectorHelp(), "knn")
	assert.Contains(t, DetectorHelp(), "(needs --fit)")
}

func TestModelFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var f ModelFlags
	f.Register(fs, OneDevice)
	require.NoError(t, fs.Parse([]string{"-model", "m.pt", "-input", "3x32x32", "-mean", "0.5,0.5,0.5", "-std", "0.25, 0.25, 0.25"}))
	o, err := f.Options()
	require.NoError(t, err)
	assert.Equal(t, [3]int{3, 32, 32}, o.Input)
	assert.Equal(t, []float64{0.25, 0.25, 0.25}, o.Std)
	assert.Equal(t, "auto", o.Device)
	f.Input = "3x32"
	_, err = f.Options()
	assert.ErrorContains(t, err, "-input")
	f.Input, f.Mean = "", "a,b"
	_, err = f.Options()
	assert.ErrorContains(t, err, `-mean "a,b" is not a list of numbers`)
}

// Importing gaia and torch changes nothing of the process: the allocator
// and BLAS tuning happen only when TuneProcess is called (this test binary
// never called it before this test).
func TestImportChangesNothing(t *testing.T) {
	assert.False(t, torch.MallocTuned())
	assert.False(t, torch.BLASTuned())
	if !torch.Available() {
		t.Skip("no LibTorch in this build")
	}
	malloc, _ := torch.TuneProcess()
	if os.Getenv("GAIA_MALLOC") == "" && os.Getenv("GLIBC_TUNABLES") == "" {
		assert.True(t, malloc, "glibc's mallopt applies when asked")
		assert.True(t, torch.MallocTuned())
	}
}
