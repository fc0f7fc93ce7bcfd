//go:build cgo && !gaia_nolibtorch

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
)

// A short run: every request answered once, with gaia score's scores, in a
// table row per server configuration and client count.
func TestLoad(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	var out, errb bytes.Buffer
	err := run([]string{"--model", model, "--device", testenv.Device(), "--data", "noise:uniform,n=24,shape=1x28x28,seed=3",
		"--requests", "48", "--clients", "1,8", "--max-batch", "1,8", "--detectors", "gaia-z,msp"}, &out, &errb)
	require.NoError(t, err, errb.String())
	rows := 0
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "| 1 |") || strings.HasPrefix(l, "| 8 |") {
			rows++
			assert.Contains(t, l, "| 48 |")
			assert.Contains(t, l, "| yes |")
		}
	}
	assert.Equal(t, 4, rows, out.String())

	err = run([]string{"--model", model, "--data", "noise:uniform,n=4,shape=1x28x28", "--clients", "0"}, &out, &errb)
	assert.ErrorContains(t, err, "-clients")
	err = run([]string{"--data", "noise:uniform,n=4,shape=1x28x28"}, &out, &errb)
	assert.ErrorContains(t, err, "-model")
}
