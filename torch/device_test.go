package torch

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDevices(t *testing.T) {
	d, err := Devices("cuda:all", 4)
	require.NoError(t, err)
	assert.Equal(t, []string{"cuda:0", "cuda:1", "cuda:2", "cuda:3"}, d)
	_, err = Devices("cuda:all", 0)
	assert.ErrorContains(t, err, "no CUDA device")
	d, err = Devices("cuda:0, cuda:2", 4)
	require.NoError(t, err)
	assert.Equal(t, []string{"cuda:0", "cuda:2"}, d)
	d, err = Devices("auto", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"auto"}, d)
	_, err = Devices("cuda:0,gpu", 4)
	assert.ErrorContains(t, err, `unknown device "gpu"`)
}
