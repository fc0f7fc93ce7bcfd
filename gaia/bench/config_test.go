package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bench.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestConfigErrors(t *testing.T) {
	model := filepath.Join(t.TempDir(), "m.pt")
	require.NoError(t, os.WriteFile(model, []byte("a model"), 0o644))
	good := "model: " + model + "\nid: {name: A, data: 'noise:uniform,n=8,shape=3x32x32'}\nood: [{name: B, data: 'noise:gaussian,n=8,shape=3x32x32'}]\nout: " + t.TempDir() + "\n"
	_, err := LoadConfig(writeConfig(t, good))
	require.NoError(t, err)
	cases := map[string]string{
		"no such file":         strings.Replace(good, model, "/nonexistent/m.pt", 1),
		`unknown detector`:     good + "detectors: gaia-a,magic\n",
		"field zoom not found": good + "zoom: 2\n",
		"no ood sets":          strings.Replace(good, "ood: [{name: B, data: 'noise:gaussian,n=8,shape=3x32x32'}]\n", "", 1),
		"used twice":           strings.Replace(good, "name: B", "name: A", 1),
		"is not set":           strings.Replace(good, "noise:gaussian", "${GAIA_NO_SUCH_VAR}noise:gaussian", 1),
	}
	for want, body := range cases {
		_, err := LoadConfig(writeConfig(t, body))
		assert.ErrorContains(t, err, want)
	}
	_, err = LoadConfig(filepath.Join(t.TempDir(), "none.yaml"))
	assert.ErrorContains(t, err, "none.yaml")
}

// TestConfigSettings: detector settings by their names under settings:,
// each checked; a key no config has is refused, naming it.
func TestConfigSettings(t *testing.T) {
	model := filepath.Join(t.TempDir(), "m.pt")
	require.NoError(t, os.WriteFile(model, []byte("a model"), 0o644))
	base := "model: " + model + "\nid: {name: A, data: 'noise:uniform,n=8,shape=3x32x32'}\nood: [{name: B, data: 'noise:gaussian,n=8,shape=3x32x32'}]\nout: " + t.TempDir() + "\n"
	c, err := LoadConfig(writeConfig(t, base+"settings: {odin-temperature: 500, taps-z: layer3, energy-temperature: 2}\n"))
	require.NoError(t, err)
	assert.Equal(t, gaia.Settings{"odin-temperature": 500.0, "taps-z": "layer3", "energy-temperature": 2.0}, c.DetectorSettings())
	c, err = LoadConfig(writeConfig(t, base+"workers: 2\n"))
	require.NoError(t, err)
	assert.Equal(t, 2, c.Workers)
	for body, want := range map[string]string{
		base + "settings: {odin-temperature: -1}\n": "must be a positive number",
		base + "settings: {odin-warmth: 1}\n":       `unknown setting "odin-warmth"`,
		base + "settings: {taps-z: 3}\n":            "is not text",
		base + "odin_temperature: 6\n":              "field odin_temperature not found",
	} {
		_, err := LoadConfig(writeConfig(t, body))
		assert.ErrorContains(t, err, want)
	}
}
