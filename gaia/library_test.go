//go:build cgo && !gaia_nolibtorch

package gaia_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/testenv"
	"github.com/gaia-ood/gaia/internal/testhook"
	"github.com/gaia-ood/gaia/torch"
)

// libModel copies the committed MNIST ResNet (1x28x28, MODEL.json beside
// it) into a folder of the test's own: batch hooks go by model path.
func libModel(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, ext := range []string{".pt", ".json"} {
		b, err := os.ReadFile(filepath.Join(testenv.Root(), "models", "mnist_resnet"+ext))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "mnist_resnet"+ext), b, 0o644))
	}
	return filepath.Join(dir, "mnist_resnet.pt")
}

// digit is a seeded 28x28 gray image, PNG or JPEG: a bright stroke on noise.
func digit(t testing.TB, seed int, asJPEG bool) []byte {
	im := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			v := uint8((x*7 + y*13 + seed*31) % 40)
			if d := x - 8 - seed%12 - y*(seed%3-1)/3; d > -2 && d < 2 {
				v = 250
			}
			im.SetGray(x, y, color.Gray{v})
		}
	}
	var b bytes.Buffer
	if asJPEG {
		require.NoError(t, jpeg.Encode(&b, im, &jpeg.Options{Quality: 90}))
	} else {
		require.NoError(t, png.Encode(&b, im))
	}
	return b.Bytes()
}

var libDetectors = []string{"gaia-a", "gaia-z", "msp", "energy", "odin"}

func openLib(t testing.TB, path string, opt gaia.Options) *gaia.Model {
	t.Helper()
	opt.Device = testenv.Device()
	if opt.Detectors == nil {
		opt.Detectors = libDetectors
	}
	m, err := gaia.Open(context.Background(), path, opt)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func closeTo(t testing.TB, want, got gaia.Result, tol float64, what string) {
	t.Helper()
	assert.Equal(t, want.Pred, got.Pred, what)
	assert.InDelta(t, want.Prob, got.Prob, tol, what)
	for d, v := range want.Scores {
		assert.InDelta(t, v, got.Scores[d], tol*math.Max(1, math.Abs(v)), "%s %s", what, d)
	}
}

// ScoreImages decodes and transforms image bytes exactly as gaia score reads
// the same files from a folder: the scores are those of ScoreDataset (and
// so of a score file), within float noise of the different batch sizes.
func TestScoreImagesIsGaiaScore(t *testing.T) {
	path := libModel(t)
	dir := t.TempDir()
	var images [][]byte
	for i := 0; i < 12; i++ {
		b := digit(t, i, i%3 == 0)
		ext := ".png"
		if i%3 == 0 {
			ext = ".jpg"
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d%s", i, ext)), b, 0o644))
		images = append(images, b)
	}
	m := openLib(t, path, gaia.Options{})
	assert.Equal(t, libDetectors, m.Detectors())
	got, err := m.ScoreImages(context.Background(), images)
	require.NoError(t, err)
	require.Len(t, got, len(images))
	ds, err := m.Dataset("folder:" + dir)
	require.NoError(t, err)
	var rows []gaia.ScoreRow
	_, err = m.ScoreDataset(context.Background(), ds, gaia.DatasetOptions{Batch: 5}, func(r []gaia.ScoreRow) error {
		rows = append(rows, r...)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, rows, len(images))
	for i, r := range rows {
		assert.Equal(t, r.Pred, got[i].Pred, "image %d", i)
		for d, name := range m.Detectors() {
			want := r.Scores[d]
			assert.InDelta(t, want, got[i].Scores[name], 1e-5*math.Max(1, math.Abs(want)), "image %d %s", i, name)
		}
		assert.Equal(t, m.Meta().ClassNames[got[i].Pred], got[i].Class)
	}
}

// Calls from many goroutines are gathered into shared batches, and a
// result does not depend on which other calls shared its batch.
func TestConcurrentCallsShareBatches(t *testing.T) {
	path := libModel(t)
	var batches, inputs atomic.Int64
	var biggest atomic.Int64
	m := openLib(t, path, gaia.Options{MaxBatch: 8, MaxWait: 20 * time.Millisecond, OnBatch: func(n int, _ time.Duration) {
		batches.Add(1)
		inputs.Add(int64(n))
		for b := biggest.Load(); int64(n) > b && !biggest.CompareAndSwap(b, int64(n)); b = biggest.Load() {
		}
	}})
	const n = 32
	images := make([][]byte, n)
	alone := make([]gaia.Result, n)
	for i := range images {
		images[i] = digit(t, i, false)
		r, err := m.ScoreImages(context.Background(), images[i:i+1])
		require.NoError(t, err)
		alone[i] = r[0]
	}
	batches.Store(0)
	inputs.Store(0)
	var wg sync.WaitGroup
	together := make([]gaia.Result, n)
	errs := make([]error, n)
	for i := range images {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := m.ScoreImages(context.Background(), images[i:i+1])
			errs[i] = err
			if err == nil {
				together[i] = r[0]
			}
		}(i)
	}
	wg.Wait()
	for i := range images {
		require.NoError(t, errs[i])
		closeTo(t, alone[i], together[i], 1e-5, fmt.Sprintf("image %d", i))
	}
	assert.Equal(t, int64(n), inputs.Load(), "every input scored once")
	assert.Less(t, batches.Load(), int64(n), "calls shared batches")
	assert.Greater(t, biggest.Load(), int64(1))
}

// A call whose context ends while it waits returns the context's error and
// its inputs leave the queue; a full queue refuses a call at once.
func TestContextAndBackPressure(t *testing.T) {
	path := libModel(t)
	hold, entered := make(chan struct{}), make(chan struct{}, 8)
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	defer testhook.HoldBatches(path, func() { entered <- struct{}{}; <-hold })()
	var waiting atomic.Int64
	m := openLib(t, path, gaia.Options{MaxBatch: 2, Queue: 4, MaxWait: time.Millisecond, SkipWarmup: true,
		OnQueue: func(n int) { waiting.Store(int64(n)) }, Detectors: []string{"msp"}})
	x := make([]float32, 2*28*28)
	done := make(chan error, 1)
	go func() { _, err := m.ScoreTensor(context.Background(), x, 2); done <- err }()
	<-entered // that batch is held
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := m.ScoreTensor(ctx, make([]float32, 3*28*28), 3)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int64(0), waiting.Load(), "the ended call left the queue")

	// Four wait; a fifth is refused at once.
	gctx, gcancel := context.WithCancel(context.Background())
	queued := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { _, err := m.ScoreTensor(gctx, make([]float32, 28*28), 1); queued <- err }()
	}
	require.Eventually(t, func() bool { return waiting.Load() == 4 }, 10*time.Second, time.Millisecond)
	t0 := time.Now()
	_, err = m.ScoreTensor(context.Background(), make([]float32, 28*28), 1)
	assert.ErrorIs(t, err, gaia.ErrQueueFull)
	assert.Less(t, time.Since(t0), time.Second)
	gcancel()
	for i := 0; i < 4; i++ {
		assert.ErrorIs(t, <-queued, context.Canceled)
	}
	release()
	require.NoError(t, <-done)
}

// Close waits for the calls in flight, which are scored; later calls get
// ErrClosed; Close is idempotent and safe from several goroutines.
func TestCloseWaitsThenRefuses(t *testing.T) {
	path := libModel(t)
	hold, entered := make(chan struct{}), make(chan struct{}, 8)
	defer testhook.HoldBatches(path, func() { entered <- struct{}{}; <-hold })()
	m, err := gaia.Open(context.Background(), path, gaia.Options{Device: testenv.Device(), Detectors: []string{"gaia-z"}, SkipWarmup: true})
	require.NoError(t, err)
	img := digit(t, 3, false)
	res := make(chan error, 1)
	go func() { _, err := m.ScoreImages(context.Background(), [][]byte{img}); res <- err }()
	<-entered
	closed := make(chan error, 2)
	go func() { closed <- m.Close() }()
	go func() { closed <- m.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a call was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(hold)
	require.NoError(t, <-res, "the call in flight was scored")
	require.NoError(t, <-closed)
	require.NoError(t, <-closed)
	require.NoError(t, m.Close())
	_, err = m.ScoreImages(context.Background(), [][]byte{img})
	assert.ErrorIs(t, err, gaia.ErrClosed)
	_, err = m.ScoreTensor(context.Background(), make([]float32, 28*28), 1)
	assert.ErrorIs(t, err, gaia.ErrClosed)
}

// Bad options, detectors, settings and inputs are typed errors naming the
// thing, never a panic, and no library message names a command-line flag.
func TestOpenAndCallErrors(t *testing.T) {
	path := libModel(t)
	ctx := context.Background()
	for _, c := range []struct {
		opt  gaia.Options
		is   error
		text string
	}{
		{gaia.Options{Detectors: []string{"gaia-q"}}, gaia.ErrUnknownDetector, `unknown detector "gaia-q"`},
		{gaia.Options{Settings: gaia.Settings{"odin-warmth": 2.0}}, gaia.ErrUnknownSetting, `unknown setting "odin-warmth"`},
		{gaia.Options{Settings: gaia.Settings{"odin-temperature": "hot"}}, nil, "is not a number"},
		{gaia.Options{Detectors: []string{"knn", "msp"}}, gaia.ErrNeedsFit, "knn: needs a fit"},
		{gaia.Options{MaxBatch: -1}, gaia.ErrInvalidOptions, "MaxBatch -1 is negative"},
		{gaia.Options{MaxWait: -time.Second}, gaia.ErrInvalidOptions, "MaxWait"},
		{gaia.Options{Queue: 4, MaxBatch: 8}, gaia.ErrInvalidOptions, "Queue 4 is below MaxBatch 8"},
		{gaia.Options{Input: [3]int{1, 0, 28}}, gaia.ErrInvalidOptions, "Input"},
		{gaia.Options{Std: []float64{0}}, gaia.ErrInvalidOptions, "Std"},
		{gaia.Options{Transform: "resize=abc"}, nil, "resize"},
		{gaia.Options{Device: "tpu"}, nil, "tpu"},
		{gaia.Options{Fit: filepath.Join(t.TempDir(), "none.safetensors"), Detectors: []string{"knn"}}, os.ErrNotExist, "none.safetensors"},
	} {
		m, err := gaia.Open(ctx, path, c.opt)
		require.Error(t, err, "%+v", c.opt)
		assert.Nil(t, m)
		if c.is != nil {
			assert.ErrorIs(t, err, c.is, "%+v", c.opt)
		}
		assert.ErrorContains(t, err, c.text)
		assert.NotContains(t, err.Error(), "--", "a library error names no flag: %v", err)
	}
	_, err := gaia.Open(ctx, filepath.Join(t.TempDir(), "missing.pt"), gaia.Options{})
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, "missing.pt")
	bare := filepath.Join(t.TempDir(), "bare.pt")
	b, _ := os.ReadFile(path)
	require.NoError(t, os.WriteFile(bare, b, 0o644))
	_, err = gaia.Open(ctx, bare, gaia.Options{})
	assert.ErrorIs(t, err, gaia.ErrNoMetadata)
	assert.NotContains(t, err.Error(), "--")
	m, err := gaia.Open(ctx, bare, gaia.Options{Input: [3]int{1, 28, 28}, Detectors: []string{"msp"}, Device: testenv.Device()})
	require.NoError(t, err, "a model without MODEL.json opens with its input size")
	m.Close()

	m = openLib(t, path, gaia.Options{Detectors: []string{"msp"}, Queue: 40})
	var ie *gaia.ImageError
	_, err = m.ScoreImages(ctx, [][]byte{digit(t, 1, false), []byte("not an image"), {}})
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 1, ie.Index, "the first bad image is named")
	assert.ErrorContains(t, err, "image 1: not a readable PNG or JPEG image")
	var te *gaia.InputError
	_, err = m.ScoreTensor(ctx, make([]float32, 10), 1)
	require.ErrorAs(t, err, &te)
	assert.ErrorContains(t, err, "take 784 numbers, not 10")
	_, err = m.ScoreTensor(ctx, nil, 0)
	assert.ErrorAs(t, err, &te)
	_, err = m.ScoreTensor(ctx, make([]float32, 41*784), 41)
	require.ErrorAs(t, err, &te)
	assert.ErrorContains(t, err, "the queue holds at most 40")
	_, err = m.ScoreImages(ctx, nil)
	assert.ErrorAs(t, err, &te)
	v, err := gaia.Settings{}.Value("odin-temperature")
	require.NoError(t, err)
	assert.Equal(t, 1000.0, v)
	_, err = gaia.Settings{}.Value("odin-warmth")
	assert.ErrorIs(t, err, gaia.ErrUnknownSetting)
}

// Nothing of an opened Model changes from outside: what it hands out are
// copies.
func TestModelIsImmutable(t *testing.T) {
	m := openLib(t, libModel(t), gaia.Options{Detectors: []string{"gaia-z", "msp"}})
	meta := m.Meta()
	meta.InputSize[0], meta.Mean[0] = 99, 99
	m.Detectors()[0] = "odin"
	m.Settings()["taps-z"] = "nothing"
	assert.Equal(t, []int{1, 28, 28}, m.Meta().InputSize)
	assert.NotEqual(t, 99.0, m.Meta().Mean[0])
	assert.Equal(t, []string{"gaia-z", "msp"}, m.Detectors())
	assert.Equal(t, "", m.Settings()["taps-z"])
	c, h, w := m.Input()
	assert.Equal(t, [3]int{1, 28, 28}, [3]int{c, h, w})
	res, err := m.ScoreTensor(context.Background(), make([]float32, 784), 1)
	require.NoError(t, err)
	assert.Len(t, res[0].Scores, 2)
}

// gateFor calibrates a gate on the model's gaia-z scores of images.
func gateFor(t testing.TB, m *gaia.Model, images [][]byte, tpr float64) *gaia.Gate {
	t.Helper()
	res, err := m.ScoreImages(context.Background(), images)
	require.NoError(t, err)
	sf := &gaia.ScoreFile{Path: "calibration.csv", Detectors: m.Detectors()}
	for i, r := range res {
		row := gaia.ScoreRow{Index: i, Label: -1, Pred: r.Pred}
		for _, d := range m.Detectors() {
			row.Scores = append(row.Scores, r.Scores[d])
		}
		sf.Rows = append(sf.Rows, row)
	}
	g, err := gaia.NewGate(sf, m.Provenance("folder:calibration", len(res)), "gaia-z", tpr)
	require.NoError(t, err)
	return g
}

// writeFit fits m on images (one class) into a fit file.
func writeFit(t testing.TB, m *gaia.Model, images [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for i, b := range images {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.png", i)), b, 0o644))
	}
	ds, err := m.Dataset("folder:" + dir)
	require.NoError(t, err)
	fit, err := m.Fit(context.Background(), ds, gaia.FitOptions{})
	require.NoError(t, err)
	p := filepath.Join(dir, "fit.safetensors")
	require.NoError(t, gaia.WriteFit(p, fit))
	return p
}

// OpenGate applies a gate with every check gaia serve makes: the verdicts
// follow the threshold, and a gate for another model, fit, taps or settings
// is a *MismatchError saying which.
func TestOpenGateChecks(t *testing.T) {
	path := libModel(t)
	ctx := context.Background()
	var images [][]byte
	for i := 0; i < 10; i++ {
		images = append(images, digit(t, i, false))
	}
	m := openLib(t, path, gaia.Options{Detectors: []string{"gaia-z", "msp"}})
	g := gateFor(t, m, images, 0.8)
	gd, err := gaia.OpenGate(ctx, path, g, gaia.Options{Device: testenv.Device(), Detectors: []string{"energy"}})
	require.NoError(t, err)
	defer gd.Close()
	assert.Equal(t, []string{"gaia-z", "energy"}, gd.Model().Detectors(), "the gate's detector first")
	vs, err := gd.Check(ctx, images)
	require.NoError(t, err)
	accepted := 0
	for i, v := range vs {
		assert.Equal(t, v.Score <= g.Threshold, v.Accept, "image %d", i)
		assert.Equal(t, v.Score, v.Scores["gaia-z"])
		assert.Contains(t, v.Scores, "energy")
		if v.Accept {
			accepted++
		}
	}
	assert.Equal(t, 8, accepted, "80%% of the calibration images pass")
	require.NoError(t, gd.Close())
	_, err = gd.Check(ctx, images)
	assert.ErrorIs(t, err, gaia.ErrClosed)

	mismatch := func(what string, g *gaia.Gate, opt gaia.Options) {
		t.Helper()
		opt.Device = testenv.Device()
		gd, err := gaia.OpenGate(ctx, path, g, opt)
		if gd != nil {
			gd.Close()
		}
		var mm *gaia.MismatchError
		require.ErrorAs(t, err, &mm, what)
		assert.Equal(t, what, mm.What)
		assert.NotContains(t, err.Error(), "--")
	}
	other := *g
	other.ModelSHA256 = strings.Repeat("ab", 32)
	mismatch("model", &other, gaia.Options{})
	other = *g
	other.Taps = []string{"bn1"}
	other.Settings = gaia.Settings{"taps-z": "bn1,layer1.0.bn1"}
	mismatch("taps", &other, gaia.Options{})
	mismatch("settings", g, gaia.Options{Settings: gaia.Settings{"taps-z": "bn1"}})
	fitted := *g
	fitted.Fit = &gaia.FitRef{Path: writeFit(t, m, images), SHA256: strings.Repeat("cd", 32)}
	mismatch("fit", &fitted, gaia.Options{})

	// A gate that is no calibration's is refused before anything loads.
	bad := *g
	bad.Threshold = math.NaN()
	_, err = gaia.OpenGate(ctx, path, &bad, gaia.Options{})
	assert.ErrorIs(t, err, gaia.ErrInvalidGate)
	bad = *g
	bad.ModelSHA256 = ""
	_, err = gaia.OpenGate(ctx, path, &bad, gaia.Options{})
	assert.ErrorIs(t, err, gaia.ErrInvalidGate)
	_, err = gaia.OpenGate(ctx, path, nil, gaia.Options{})
	assert.ErrorIs(t, err, gaia.ErrInvalidGate)
}

// A Model's Fit, and a Fitter, free their device memory on Close; a closed
// Fitter refuses more work.
func TestFitAndFitterClose(t *testing.T) {
	path := libModel(t)
	dir := t.TempDir()
	for c := 0; c < 2; c++ {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, fmt.Sprint(c)), 0o755))
		for i := 0; i < 6; i++ {
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprint(c), fmt.Sprintf("%d.png", i)), digit(t, c*10+i, false), 0o644))
		}
	}
	m := openLib(t, path, gaia.Options{Detectors: []string{"msp"}, SkipWarmup: true})
	ds, err := m.Dataset("folder:" + dir)
	require.NoError(t, err)
	var done atomic.Int64
	fit, err := m.Fit(context.Background(), ds, gaia.FitOptions{DatasetOptions: gaia.DatasetOptions{Batch: 5, Progress: func(n int) { done.Add(int64(n)) }}})
	require.NoError(t, err)
	assert.Equal(t, 12, fit.N)
	assert.Equal(t, int64(12), done.Load())
	assert.Equal(t, m.SHA256(), fit.Meta.ModelSHA256)
	fp := filepath.Join(dir, "fit.safetensors")
	require.NoError(t, gaia.WriteFit(fp, fit))
	fm := openLib(t, path, gaia.Options{Detectors: []string{"knn", "mahalanobis"}, Fit: fp, Settings: gaia.Settings{"knn-k": 3}})
	res, err := fm.ScoreImages(context.Background(), [][]byte{digit(t, 40, false)})
	require.NoError(t, err)
	assert.False(t, math.IsNaN(res[0].Scores["knn"]))
	assert.Equal(t, fp, fm.FitFile().Path)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = m.Fit(ctx, ds, gaia.FitOptions{})
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
}

// A Fitter's Close frees its device memory once; a closed Fitter refuses
// more batches and its Finish.
func TestFitterClose(t *testing.T) {
	mod, err := torch.Load(libModel(t), testenv.Device())
	require.NoError(t, err)
	defer mod.Close()
	ft, err := gaia.NewFitter(mod, gaia.FitConfig{Total: 4})
	require.NoError(t, err)
	x := &torch.Tensor{Shape: []int{2, 1, 28, 28}, Data: make([]float32, 2*784)}
	require.NoError(t, ft.Add(x, nil, nil))
	require.NoError(t, ft.Close())
	require.NoError(t, ft.Close())
	assert.ErrorIs(t, ft.Add(x, nil, nil), gaia.ErrClosed)
	_, err = ft.Finish()
	assert.ErrorIs(t, err, gaia.ErrClosed)
}
