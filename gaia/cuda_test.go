//go:build cgo

package gaia

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
	"github.com/gaia-ood/gaia/torch"
)

// TestCUDAMatchesCPU scores the same inputs on the CPU and on CUDA (TF32
// off): every detector within 1e-4 relative, and GAIA-Z's per-channel
// non-zero fractions compared tap by tap. Skipped without a CUDA device.
func TestCUDAMatchesCPU(t *testing.T) {
	if torch.CUDADeviceCount() == 0 {
		t.Skip("no CUDA device")
	}
	t.Logf("fused CUDA kernels built in: %v", torch.CUDAKernelsBuilt())
	dir := testenv.Testdata(t)
	for _, name := range []string{"cifar_resnet20", "resnet18", "cifar10_resnet20"} {
		t.Run(name, func(t *testing.T) {
			testenv.Need(t, filepath.Join(dir, name+".det.json"))
			if name == "cifar10_resnet20" {
				testenv.SharedData(t)
			}
			ref := loadDetRef(t, dir, name)
			x := &torch.Tensor{Shape: ref.arr["x"].Shape, Data: ref.arr["x"].Data}
			var scores [2]*BatchScores
			var nz [2]*torch.Result
			for i, dev := range []string{"cpu", "cuda"} {
				m, err := torch.Load(filepath.Join(dir, ref.Model), dev)
				require.NoError(t, err)
				s, err := NewScorer(m, Options{Detectors: AllDetectors, Std: ref.Std})
				require.NoError(t, err)
				scores[i], err = s.Score(x)
				require.NoError(t, err)
				nz[i], err = m.Run(x, nil, []torch.Pass{{Loss: torch.LossMaxLogit, Taps: indices(s.TapsZ()), Reduce: torch.ReduceChannelNonzero}})
				require.NoError(t, err)
				m.Close()
			}
			for d, det := range AllDetectors {
				for i, c := range scores[0].Scores[d] {
					g := scores[1].Scores[d][i]
					assert.InDelta(t, c, g, 1e-4*math.Abs(c)+1e-9, "%s sample %d: cpu %.8g cuda %.8g", det, i, c, g)
				}
			}
			differ, total := 0, 0
			for k := range nz[0].Grads[0] {
				for j, v := range nz[0].Grads[0][k].Data {
					total++
					if v != nz[1].Grads[0][k].Data[j] {
						differ++
					}
				}
			}
			t.Logf("GAIA-Z non-zero fractions: %d of %d (sample, channel) entries differ between CPU and CUDA", differ, total)
		})
	}
}
