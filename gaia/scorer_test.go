//go:build cgo && !gaia_nolibtorch

package gaia

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/npy"
	"github.com/gaia-ood/gaia/internal/testenv"
	"github.com/gaia-ood/gaia/torch"
)

type detRef struct {
	Model    string         `json:"model"`
	Arch     string         `json:"arch"`
	Std      []float64      `json:"std"`
	Settings map[string]any `json:"settings"`
	arr      map[string]*npy.Array
}

func TestMain(m *testing.M) {
	torch.TuneProcess()       // as the commands run (benchmarks)
	torch.SetAllowTF32(false) // references are float32
	code := m.Run()
	printBenchSummary()
	os.Exit(code)
}

var device = testenv.Device()

func loadDetRef(t *testing.T, dir, name string) *detRef {
	t.Helper()
	testenv.Need(t, filepath.Join(dir, name+".det.json"))
	raw, err := os.ReadFile(filepath.Join(dir, name+".det.json"))
	require.NoError(t, err, "run `make testdata`")
	r := &detRef{}
	require.NoError(t, json.Unmarshal(raw, r))
	r.arr, err = npy.ReadNPZ(filepath.Join(dir, name+".det.npz"))
	require.NoError(t, err)
	return r
}

// TestDetectorsMatchReference: every detector's score equals the eager
// PyTorch reference (scripts/reference.py) within 1e-4 relative, on random
// ResNet-18, DenseNet-121 and CIFAR ResNet-20, and on the real CIFAR-10
// ResNet-20 with real images when ../shared/data is there.
func TestDetectorsMatchReference(t *testing.T) {
	dir := testenv.Testdata(t)
	names := []string{"resnet18", "densenet121", "bit_s_r50x1", "cifar_resnet20", "cifar10_resnet20", "gaia_resnet18", "wrn_40_2"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if name == "cifar10_resnet20" {
				testenv.SharedData(t)
			}
			ref := loadDetRef(t, dir, name)
			testenv.Need(t, filepath.Join(dir, ref.Model))
			m, err := torch.Load(filepath.Join(dir, ref.Model), device)
			require.NoError(t, err)
			defer m.Close()
			s, err := NewScorer(m, ScorerConfig{Detectors: allNames(), Std: ref.Std})
			require.NoError(t, err)
			t.Log(s.Describe())
			x := ref.arr["x"]
			got, err := s.Score(&torch.Tensor{Shape: x.Shape, Data: x.Data})
			require.NoError(t, err)
			for d, det := range s.Detectors() {
				want := ref.arr["score_"+det]
				require.NotNil(t, want, det)
				for i, w := range want.Data {
					g := got.Scores[d][i]
					assert.InDelta(t, float64(w), g, 1e-4*math.Abs(float64(w))+1e-9,
						"%s sample %d: go %.8g reference %.8g", det, i, g, w)
				}
			}

			// The feature-based detectors, fitted on the reference's fit set.
			fit := fitOn(t, m, ref)
			settings := Settings{}
			for k, v := range ref.Settings {
				require.NoError(t, settings.SetValue(k, v))
			}
			features, err := ParseDetectors("features")
			require.NoError(t, err)
			fs, err := NewScorer(m, ScorerConfig{Detectors: features, Settings: settings, Std: ref.Std, Fit: fit})
			require.NoError(t, err)
			defer fs.Close()
			t.Log(fs.Describe())
			got, err = fs.Score(&torch.Tensor{Shape: x.Shape, Data: x.Data})
			require.NoError(t, err)
			for d, det := range fs.Detectors() {
				want := ref.arr["score_"+det]
				require.NotNil(t, want, det)
				for i, w := range want.Data {
					g := got.Scores[d][i]
					assert.InDelta(t, float64(w), g, 1e-4*math.Abs(float64(w))+1e-9,
						"%s sample %d: go %.8g reference %.8g", det, i, g, w)
				}
			}
		})
	}
}

// fitOn fits m on the reference's fit set (fit_x, fit_y), in batches of 64.
func fitOn(t *testing.T, m *torch.Module, ref *detRef) *Fit {
	t.Helper()
	fx, fy := ref.arr["fit_x"], ref.arr["fit_y"]
	require.NotNil(t, fx, "the reference has no fit set: run make testdata")
	n := fx.Shape[0]
	per := len(fx.Data) / n
	ft, err := NewFitter(m, FitConfig{Total: n, KNNSample: "all", Labelled: true})
	require.NoError(t, err)
	for lo := 0; lo < n; lo += 64 {
		hi := min(n, lo+64)
		labels := make([]int, hi-lo)
		for i := range labels {
			labels[i] = int(fy.Data[lo+i])
		}
		shape := append([]int{hi - lo}, fx.Shape[1:]...)
		require.NoError(t, ft.Add(&torch.Tensor{Shape: shape, Data: fx.Data[lo*per : hi*per]}, labels, nil))
	}
	fit, err := ft.Finish()
	require.NoError(t, err)
	require.Equal(t, n, fit.N)
	require.Equal(t, n, fit.M)
	return fit
}

// TestScoresDoNotDependOnBatch: a sample scored alone and inside a batch of
// 128 agrees within 1e-5 relative, for every detector.
func TestScoresDoNotDependOnBatch(t *testing.T) {
	dir := testenv.Testdata(t)
	testenv.Need(t, filepath.Join(dir, "cifar_resnet20.script.pt"))
	m, err := torch.Load(filepath.Join(dir, "cifar_resnet20.script.pt"), device)
	require.NoError(t, err)
	defer m.Close()
	tol := 1e-5 // CPU float32, as promised
	if testenv.OnCUDA() {
		tol = 1e-4 // cuDNN may pick other algorithms for other batch sizes
	}
	s, err := NewScorer(m, ScorerConfig{Detectors: allNames()})
	require.NoError(t, err)
	const n = 128
	x := &torch.Tensor{Shape: []int{n, 3, 32, 32}, Data: make([]float32, n*3*32*32)}
	seed := uint32(1)
	for i := range x.Data {
		seed = seed*1664525 + 1013904223
		x.Data[i] = float32(seed>>8)/float32(1<<24)*4 - 2
	}
	batch, err := s.Score(x)
	require.NoError(t, err)
	for _, i := range []int{0, 1, 63, 127} {
		one, err := s.Score(&torch.Tensor{Shape: []int{1, 3, 32, 32}, Data: x.Row(i)})
		require.NoError(t, err)
		assert.Equal(t, batch.Pred[i], one.Pred[0])
		for d, det := range s.Detectors() {
			b, o := batch.Scores[d][i], one.Scores[d][0]
			assert.InDelta(t, b, o, tol*math.Abs(b)+1e-12, "%s sample %d: batch %.9g alone %.9g", det, i, b, o)
		}
	}
}

func TestDefaultTaps(t *testing.T) {
	dir := testenv.Testdata(t)
	cases := []struct {
		model  string
		nZ, nA int
		firstA string
		lastA  string
		output string // where GAIA-A's output component is taken
	}{
		{"cifar_resnet20.script.pt", 19, 12, "layer2.0.bn1", "layer3.2.bn2", "at the feature map"},
		{"resnet18.trace.pt", 20, 10, "layer3.0.bn1", "layer4.1.bn2", "at the feature map"},
		{"resnet50.script.pt", 53, 29, "layer3.0.bn1", "layer4.2.bn3", "at the feature map"},
		{"densenet121.script.pt", 121, 82, "features.denseblock3.denselayer1.norm1", "features.norm5", "at the feature map"},
		// The GAIA authors' choices (hook.py): their ResNets layer3 + layer4
		// with layer4's output; WRN every BatchNorm with the pooled
		// features; BiT body.block4 for both, with the pooled features.
		{"gaia_resnet18.script.pt", 20, 10, "layer3.0.bn1", "layer4.1.bn2", "at the feature map"},
		{"gaia_resnet50.trace.pt", 53, 29, "layer3.0.bn1", "layer4.2.bn3", "at the feature map"},
		{"wrn_40_2.trace.pt", 37, 37, "block1.layer.0.bn1", "bn1", "at the pooled features"},
		{"bit_s_r50x1.script.pt", 9, 9, "body.block4.unit01.gn1", "body.block4.unit03.gn3", "at the pooled features"},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			testenv.Need(t, filepath.Join(dir, c.model))
			testenv.Need(t, filepath.Join(dir, c.model))
			m, err := torch.Load(filepath.Join(dir, c.model), "cpu")
			require.NoError(t, err)
			defer m.Close()
			s, err := NewScorer(m, ScorerConfig{Detectors: []string{"gaia-z", "gaia-a"}})
			require.NoError(t, err)
			assert.Len(t, s.Taps("gaia-z"), c.nZ)
			tapsA := s.Taps("gaia-a")
			require.Len(t, tapsA, c.nA)
			assert.Equal(t, c.firstA, tapsA[0].Name)
			assert.Equal(t, c.lastA, tapsA[len(tapsA)-1].Name)
			assert.Contains(t, s.Describe(), "output component "+c.output)
			if c.model == "bit_s_r50x1.script.pt" {
				return
			}
			sel, err := SelectTaps(m.Taps(), "kind:batch_norm")
			require.NoError(t, err)
			assert.Len(t, sel, c.nZ)
			_, err = SelectTaps(m.Taps(), "nosuchlayer")
			assert.ErrorContains(t, err, `"nosuchlayer" matches no normalization tap`)
			_, err = NewScorer(m, ScorerConfig{Detectors: []string{"gaia-z"}, Settings: Settings{"taps-z": "last:x"}})
			assert.ErrorContains(t, err, "last:N")
		})
	}
}

// GAIA-A's 0/0: a model whose ReLUs are all off and whose classifier is zero
// has a vanished output gradient o and vanished inner gradients; its score is
// +Inf (a vanished output gradient is the abnormality), not NaN.
func TestGAIAAZeroOverZero(t *testing.T) {
	dir := testenv.Testdata(t)
	testenv.Need(t, filepath.Join(dir, "degenerate_cnn.pt"))
	m, err := torch.Load(filepath.Join(dir, "degenerate_cnn.pt"), testenv.Device())
	require.NoError(t, err)
	defer m.Close()
	s, err := NewScorer(m, ScorerConfig{Detectors: []string{"gaia-a", "msp"}, Std: []float64{0.5}})
	require.NoError(t, err)
	x := &torch.Tensor{Shape: []int{3, 1, 28, 28}, Data: make([]float32, 3*28*28)}
	for i := range x.Data {
		x.Data[i] = float32(i%7) / 7
	}
	bs, err := s.Score(x)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		sc := bs.Sample(i)
		assert.True(t, math.IsInf(sc[0], 1), "sample %d: gaia-a %v", i, sc[0])
		assert.InDelta(t, -0.1, sc[1], 1e-6, "msp of a uniform softmax over 10 classes")
	}
}

// GAIA-Z on BiT with gaia's default taps (the GroupNorms of body.block4)
// ranks samples exactly as the authors' code does with `-hook before_head`
// (block4's GroupNorms plus the pooled features before the head): the pooled
// tap's gradient of the max logit has no zeros, so it adds a constant, and
// their score is (C4 S + D) / (C4 + D) of gaia's, C4 block4's channels and D
// the pooled ones.
func TestBiTGAIAZAsTheAuthors(t *testing.T) {
	dir := testenv.Testdata(t)
	ref := loadDetRef(t, dir, "bit_s_r50x1")
	authors := ref.arr["authors_gaia_z"]
	require.NotNil(t, authors, "make testdata writes authors_gaia_z for BiT")
	testenv.Need(t, filepath.Join(dir, ref.Model))
	m, err := torch.Load(filepath.Join(dir, ref.Model), device)
	require.NoError(t, err)
	defer m.Close()
	s, err := NewScorer(m, ScorerConfig{Detectors: []string{GAIAZ}, Std: ref.Std})
	require.NoError(t, err)
	taps := s.TapNames(GAIAZ)
	require.NotEmpty(t, taps)
	c4 := 0
	for _, tp := range m.Taps() {
		if tp.Kind.IsNorm() && len(tp.Name) > 11 && tp.Name[:11] == "body.block4" {
			c4 += tp.Channels
		}
	}
	for _, name := range taps {
		assert.Contains(t, name, "body.block4.", "the default taps are block4's")
	}
	cls, ok := findKind(m.Taps(), torch.KindClassifierInput)
	require.True(t, ok)
	x := ref.arr["x"]
	got, err := s.Score(&torch.Tensor{Shape: x.Shape, Data: x.Data})
	require.NoError(t, err)
	n := len(authors.Data)
	for i := 0; i < n; i++ {
		want := (float64(c4)*got.Scores[0][i] + float64(cls.Channels)) / float64(c4+cls.Channels)
		assert.InDelta(t, float64(authors.Data[i]), want, 1e-6, "sample %d", i)
		for j := 0; j < n; j++ {
			assert.Equal(t, authors.Data[i] < authors.Data[j], got.Scores[0][i] < got.Scores[0][j], "order of samples %d and %d", i, j)
		}
	}
}

// gaia-a-output: the output component at the map gives H*W times the score
// at the pooled features (WRN-40-2 at 32 x 32: an 8 x 8 map, 64 times).
func TestGAIAAOutputSetting(t *testing.T) {
	dir := testenv.Testdata(t)
	testenv.Need(t, filepath.Join(dir, "wrn_40_2.script.pt"))
	m, err := torch.Load(filepath.Join(dir, "wrn_40_2.script.pt"), device)
	require.NoError(t, err)
	defer m.Close()
	ref := loadDetRef(t, dir, "wrn_40_2")
	x := ref.arr["x"]
	score := func(out string) []float64 {
		s, err := NewScorer(m, ScorerConfig{Detectors: []string{"gaia-a"}, Settings: Settings{"gaia-a-output": out}})
		require.NoError(t, err)
		bs, err := s.Score(&torch.Tensor{Shape: x.Shape, Data: x.Data})
		require.NoError(t, err)
		return bs.Scores[0]
	}
	def, pooled, fmap := score("auto"), score("pooled"), score("map")
	for i := range def {
		assert.Equal(t, def[i], pooled[i])
		assert.InEpsilon(t, 64*pooled[i], fmap[i], 1e-4, "sample %d", i)
	}
	_, err = NewScorer(m, ScorerConfig{Detectors: []string{"gaia-a"}, Settings: Settings{"gaia-a-output": "avg"}})
	assert.ErrorContains(t, err, "must be auto, map or pooled")
}
