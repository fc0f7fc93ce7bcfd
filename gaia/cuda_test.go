//go:build cgo && !gaia_nolibtorch

package gaia

import (
	"math"
	"path/filepath"
	"strings"
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
				testenv.Need(t, filepath.Join(dir, ref.Model))
				m, err := torch.Load(filepath.Join(dir, ref.Model), dev)
				require.NoError(t, err)
				s, err := NewScorer(m, ScorerConfig{Detectors: allNames(), Std: ref.Std})
				require.NoError(t, err)
				scores[i], err = s.Score(x)
				require.NoError(t, err)
				nz[i], err = m.Run(x, nil, []torch.Pass{{Loss: torch.LossMaxLogit, Taps: indices(s.Taps("gaia-z")), Reduce: torch.ReduceChannelNonzero}})
				require.NoError(t, err)
				m.Close()
			}
			for d, det := range allNames() {
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

// TestGateMaskMatchesGradientZeros: on gated taps, the forward ReLU mask's
// non-zero fractions equal those of the GAIA-Z gradient (entries counted),
// and gaia-z-fast equals GAIA-Z restricted to the same taps.
func TestGateMaskMatchesGradientZeros(t *testing.T) {
	dir := testenv.Testdata(t)
	for _, model := range []string{"cifar_resnet20.script.pt", "resnet18.trace.pt", "densenet121.script.pt"} {
		t.Run(model, func(t *testing.T) {
			testenv.Need(t, filepath.Join(dir, model))
			testenv.Need(t, filepath.Join(dir, model))
			m, err := torch.Load(filepath.Join(dir, model), device)
			require.NoError(t, err)
			defer m.Close()
			s, err := NewScorer(m, ScorerConfig{Detectors: []string{"gaia-z-fast"}})
			require.NoError(t, err)
			gated := indices(s.Taps("gaia-z-fast"))
			require.NotEmpty(t, gated)
			if strings.HasPrefix(model, "resnet") {
				for _, tp := range s.Taps("gaia-z-fast") {
					assert.NotEqual(t, "bn1", tp.Name, "torchvision's stem ReLU feeds max-pooling: excluded")
				}
			}
			x := &torch.Tensor{Shape: []int{4, 3, 32, 32}, Data: make([]float32, 4*3*32*32)}
			for i := range x.Data {
				x.Data[i] = float32(math.Sin(float64(i) * 0.37))
			}
			r, err := m.Run(x, nil, []torch.Pass{
				{Loss: torch.LossMaxLogit, Taps: gated, Reduce: torch.ReduceChannelNonzero},
				{Loss: torch.LossGate, Taps: gated, Reduce: torch.ReduceChannelNonzero},
			})
			require.NoError(t, err)
			differ, total := 0, 0
			for k := range gated {
				for j, v := range r.Grads[0][k].Data {
					total++
					if v != r.Grads[1][k].Data[j] {
						differ++
					}
				}
			}
			t.Logf("%d of %d (sample, channel) fractions differ between the gradient and the ReLU mask", differ, total)
			assert.LessOrEqual(t, float64(differ), 0.001*float64(total))
			sel := make([]string, 0, len(gated))
			for _, tp := range s.Taps("gaia-z-fast") {
				sel = append(sel, tp.Name)
			}
			exact, err := NewScorer(m, ScorerConfig{Detectors: []string{"gaia-z", "gaia-z-fast"}, Settings: Settings{"taps-z": strings.Join(sel, ",")}})
			require.NoError(t, err)
			bs, err := exact.Score(x)
			require.NoError(t, err)
			for i := range bs.Scores[0] {
				assert.InDelta(t, bs.Scores[0][i], bs.Scores[1][i], 1e-3*bs.Scores[0][i], "sample %d", i)
			}
		})
	}
}
