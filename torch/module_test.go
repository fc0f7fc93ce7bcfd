//go:build cgo && !gaia_nolibtorch

package torch

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/npy"
	"github.com/gaia-ood/gaia/internal/testenv"
)

func testdata(t testing.TB) string { return testenv.Testdata(t) }

type reference struct {
	Names  []string `json:"names"`
	arrays map[string]*npy.Array
}

func TestMain(m *testing.M) {
	TuneProcess()       // as the commands run
	SetAllowTF32(false) // references are float32
	os.Exit(m.Run())
}

var device = testenv.Device()

func loadReference(t testing.TB, dir, arch string) *reference {
	t.Helper()
	testenv.Need(t, filepath.Join(dir, arch+".ref.json"))
	raw, err := os.ReadFile(filepath.Join(dir, arch+".ref.json"))
	require.NoError(t, err, "GAIA_TESTDATA is set but %s is missing: run `make testdata`", arch)
	ref := &reference{}
	require.NoError(t, json.Unmarshal(raw, ref))
	ref.arrays, err = npy.ReadNPZ(filepath.Join(dir, arch+".ref.npz"))
	require.NoError(t, err)
	return ref
}

// openModel loads dir/file with the reference of arch; Close runs at cleanup.
func openModel(t testing.TB, dir, arch, file string) (*reference, *Module) {
	t.Helper()
	ref := loadReference(t, dir, arch)
	testenv.Need(t, filepath.Join(dir, file))
	m, err := Load(filepath.Join(dir, file), device)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return ref, m
}

// gaiaPasses are the three passes GAIA-Z and GAIA-A run, reduced per sample.
func gaiaPasses(m *Module) []Pass {
	norm := tapsOfKind(m, true, "")
	return []Pass{
		{Loss: LossMaxLogit, Taps: norm, Reduce: ReduceSumSqNonzero},
		{Loss: LossSumLogSoftmax, Taps: tapsOfKind(m, false, KindFeatureMap), Reduce: ReduceMeanAbsMean},
		{Loss: LossSumTap, LossTap: tapsOfKind(m, false, KindClassifierInput)[0], Taps: norm, Reduce: ReduceSumSqMean},
	}
}

func (r *reference) input(t testing.TB) *Tensor {
	x := r.arrays["x"]
	require.NotNil(t, x)
	return &Tensor{Shape: x.Shape, Data: x.Data}
}

// assertClose checks max|got-want| <= rtol * max|want| (plus a tiny floor).
func assertClose(t testing.TB, want *npy.Array, got *Tensor, rtol float64, what string) {
	t.Helper()
	require.NotNil(t, want, what)
	require.Equal(t, want.Shape, got.Shape, what)
	var maxDiff, scale float64
	for i := range want.Data {
		d := math.Abs(float64(got.Data[i]) - float64(want.Data[i]))
		if math.IsNaN(float64(got.Data[i])) {
			d = math.Inf(1)
		}
		maxDiff = math.Max(maxDiff, d)
		scale = math.Max(scale, math.Abs(float64(want.Data[i])))
	}
	assert.LessOrEqual(t, maxDiff, rtol*scale+1e-12, "%s: max |diff| %.3g against scale %.3g", what, maxDiff, scale)
}

func zeros(d []float32) int {
	n := 0
	for _, v := range d {
		if v == 0 {
			n++
		}
	}
	return n
}

func tapsOfKind(m *Module, norm bool, kind TapKind) []int {
	var idx []int
	for _, tp := range m.Taps() {
		if (norm && tp.Kind.IsNorm()) || (!norm && tp.Kind == kind) {
			idx = append(idx, tp.Index)
		}
	}
	return idx
}

var archs = []string{"cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56",
	"resnet18", "resnet34", "resnet50", "densenet121", "bit_s_r50x1",
	"gaia_resnet18", "gaia_resnet50", "wrn_40_2"} // the last three: the GAIA authors' CIFAR models

// TestTapsMatchEagerHooks compares logits, F, h and all three GAIA gradients
// with eager PyTorch forward hooks, for scripted and traced files.
func TestTapsMatchEagerHooks(t *testing.T) {
	dir := testdata(t)
	for _, arch := range archs {
		for _, kind := range []string{"script", "trace"} {
			t.Run(arch+"/"+kind, func(t *testing.T) {
				ref := loadReference(t, dir, arch)
				testenv.Need(t, filepath.Join(dir, arch+"."+kind+".pt"))
				m, err := Load(filepath.Join(dir, arch+"."+kind+".pt"), device)
				require.NoError(t, err)
				defer m.Close()
				assert.Empty(t, m.Warnings())
				norm := tapsOfKind(m, true, "")
				var names []string
				for _, i := range norm {
					names = append(names, m.Taps()[i].Name)
				}
				require.Equal(t, ref.Names, names, "norm taps and their order")
				fmap := tapsOfKind(m, false, KindFeatureMap)
				cls := tapsOfKind(m, false, KindClassifierInput)
				require.Len(t, fmap, 1)
				require.Len(t, cls, 1)

				r, err := m.Run(ref.input(t), []int{fmap[0], cls[0]}, []Pass{
					{Loss: LossMaxLogit, Taps: norm, Reduce: ReduceNone},
					{Loss: LossSumLogSoftmax, Taps: fmap, Reduce: ReduceNone},
					{Loss: LossSumTap, LossTap: cls[0], Taps: norm, Reduce: ReduceNone},
				})
				require.NoError(t, err)
				assertClose(t, ref.arrays["z"], r.Outputs[0], 1e-5, "logits")
				assertClose(t, ref.arrays["F"], r.Values[0], 1e-5, "F")
				assertClose(t, ref.arrays["h"], r.Values[1], 1e-5, "h")
				assertClose(t, ref.arrays["ga1"], r.Grads[1][0], 1e-4, "dL1/dF")
				for i, name := range names {
					want := ref.arrays["gz_"+name]
					assertClose(t, want, r.Grads[0][i], 1e-4, "dLz/d "+name)
					assert.Equal(t, zeros(want.Data), zeros(r.Grads[0][i].Data), "zeros of dLz/d %s", name)
					assertClose(t, ref.arrays["ga2_"+name], r.Grads[2][i], 1e-4, "dL2/d "+name)
				}
				// Channels known at load time agree with the values.
				for _, i := range norm {
					tp := m.Taps()[i]
					assert.Equal(t, ref.arrays["gz_"+tp.Name].Shape[1], tp.Channels, tp.Name)
				}
			})
		}
	}
}

// TestReductionsMatchFullGradient checks each on-device reduction against the
// same reduction of the full gradient done here.
func TestReductionsMatchFullGradient(t *testing.T) {
	ref, m := openModel(t, testdata(t), "resnet18", "resnet18.script.pt")
	norm := tapsOfKind(m, true, "")
	reduces := []Reduce{ReduceNone, ReduceChannelMean, ReduceChannelNonzero, ReduceSumSqNonzero, ReduceSumSqMean, ReduceMeanAbsMean, ReduceL1}
	var passes []Pass
	for _, rd := range reduces {
		passes = append(passes, Pass{Loss: LossMaxLogit, Taps: norm, Reduce: rd})
	}
	r, err := m.Run(ref.input(t), nil, passes)
	require.NoError(t, err)
	for i := range norm {
		g := r.Grads[0][i]
		n, c := g.Shape[0], g.Shape[1]
		hw := g.Shape[2] * g.Shape[3]
		for s := 0; s < n; s++ {
			var sumSqNZ, sumSqMean, meanAbs, l1 float64
			for k := 0; k < c; k++ {
				var sum, nz float64
				for _, v := range g.Data[(s*c+k)*hw : (s*c+k+1)*hw] {
					sum += float64(v)
					l1 += math.Abs(float64(v))
					if v != 0 {
						nz++
					}
				}
				mean, frac := sum/float64(hw), nz/float64(hw)
				assert.InDelta(t, mean, r.Grads[1][i].Data[s*c+k], 1e-6+1e-4*math.Abs(mean))
				assert.InDelta(t, frac, r.Grads[2][i].Data[s*c+k], 1e-6)
				sumSqNZ += frac * frac
				sumSqMean += mean * mean
				meanAbs += math.Abs(mean) / float64(c)
			}
			assert.InEpsilon(t, sumSqNZ, r.Grads[3][i].Data[s], 1e-5)
			assert.InDelta(t, sumSqMean, r.Grads[4][i].Data[s], 1e-4*sumSqMean+1e-12)
			assert.InDelta(t, meanAbs, r.Grads[5][i].Data[s], 1e-4*meanAbs+1e-12)
			assert.InDelta(t, l1, r.Grads[6][i].Data[s], 1e-4*l1+1e-12)
		}
	}
}

func TestReLUFallbackWithoutNorm(t *testing.T) {
	dir := testdata(t)
	ref := loadReference(t, dir, "plain_cnn")
	for _, kind := range []string{"script", "trace"} {
		t.Run(kind, func(t *testing.T) {
			testenv.Need(t, filepath.Join(dir, "plain_cnn."+kind+".pt"))
			m, err := Load(filepath.Join(dir, "plain_cnn."+kind+".pt"), device)
			require.NoError(t, err)
			defer m.Close()
			norm := tapsOfKind(m, true, "")
			var names []string
			for _, i := range norm {
				assert.Equal(t, KindReLUInput, m.Taps()[i].Kind)
				names = append(names, m.Taps()[i].Name)
			}
			require.Equal(t, ref.Names, names)
			r, err := m.Run(ref.input(t), nil, []Pass{{Loss: LossMaxLogit, Taps: norm}})
			require.NoError(t, err)
			assertClose(t, ref.arrays["z"], r.Outputs[0], 1e-5, "logits")
			for i, name := range names {
				assertClose(t, ref.arrays["gz_"+name], r.Grads[0][i], 1e-4, name)
				assert.Equal(t, zeros(ref.arrays["gz_"+name].Data), zeros(r.Grads[0][i].Data), name)
			}
		})
	}
}

func TestTapShapesAndLoadBytes(t *testing.T) {
	dir := testdata(t)
	raw, err := os.ReadFile(filepath.Join(dir, "cifar_resnet20.script.pt"))
	require.NoError(t, err)
	m, err := LoadBytes(raw, "cpu")
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, "cpu", m.Device())
	assert.Equal(t, 3, m.InputChannels())
	shapes, err := m.TapShapes([4]int{1, 3, 32, 32})
	require.NoError(t, err)
	taps := m.Taps()
	require.Len(t, shapes, len(taps))
	assert.Equal(t, "bn1", taps[0].Name)
	assert.Equal(t, []int{1, 16, 32, 32}, shapes[0])
	last := taps[len(taps)-1]
	assert.Equal(t, KindClassifierInput, last.Kind)
	assert.Equal(t, "linear:input", last.Name)
	assert.Equal(t, []int{1, 64}, shapes[len(taps)-1])
	assert.Equal(t, []int{1, 64, 8, 8}, shapes[len(taps)-2])
}

func TestBadInput(t *testing.T) {
	dir := testdata(t)
	good := filepath.Join(dir, "cifar_resnet20.script.pt")
	tmp := t.TempDir()

	_, err := Load(filepath.Join(tmp, "missing.pt"), "cpu")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.pt")
	assert.ErrorIs(t, err, os.ErrNotExist)

	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	truncated := filepath.Join(tmp, "truncated.pt")
	require.NoError(t, os.WriteFile(truncated, raw[:len(raw)/2], 0o644))
	_, err = Load(truncated, "cpu")
	var te *Error
	require.ErrorAs(t, err, &te)
	assert.Contains(t, err.Error(), "truncated.pt")

	text := filepath.Join(tmp, "notes.pt")
	require.NoError(t, os.WriteFile(text, []byte("this is not a model\n"), 0o644))
	_, err = Load(text, "cpu")
	require.ErrorAs(t, err, &te)

	npz := filepath.Join(dir, "resnet18.ref.npz") // a zip, but not TorchScript
	_, err = Load(npz, "cpu")
	require.ErrorAs(t, err, &te)

	_, err = LoadBytes(nil, "cpu")
	require.Error(t, err)
	_, err = Load(good, "tpu")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tpu")
	if !CUDAAvailable() {
		_, err = Load(good, "cuda:0")
		require.ErrorAs(t, err, &te)
		assert.Contains(t, te.Msg, "CUDA")
	}

	m, err := Load(good, "cpu")
	require.NoError(t, err)
	_, err = m.Forward(&Tensor{Shape: []int{3, 32, 32}, Data: make([]float32, 3*32*32)})
	require.ErrorAs(t, err, &te)
	assert.Equal(t, CodeInvalid, te.Code)
	assert.Contains(t, te.Msg, "4 axes")
	_, err = m.Forward(&Tensor{Shape: []int{1, 1, 32, 32}, Data: make([]float32, 32*32)})
	require.ErrorAs(t, err, &te)
	assert.Contains(t, te.Msg, "1 channels; the model expects 3")
	_, err = m.Forward(&Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 10)})
	require.ErrorAs(t, err, &te)
	_, err = m.Run(&Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)}, nil,
		[]Pass{{Loss: LossMaxLogit, Taps: []int{999}}})
	require.ErrorAs(t, err, &te)
	assert.Contains(t, te.Msg, "tap index 999")
	// Too small for the network: LibTorch's own error, as a Go error.
	_, err = m.Forward(&Tensor{Shape: []int{1, 3, 1, 1}, Data: make([]float32, 3)})
	if err != nil {
		require.ErrorAs(t, err, &te)
	}
	_, err = m.Run(&Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)}, nil,
		[]Pass{{Loss: LossODIN, LossParam: 0, Taps: []int{InputTap}}})
	require.ErrorAs(t, err, &te)
	assert.Contains(t, te.Msg, "temperature")
	// Indices the shim would refuse are refused in Go, each saying why.
	x := &Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)}
	for _, c := range []struct {
		values []int
		pass   Pass
		msg    string
	}{
		{values: []int{ParamsTap}, msg: "tap index -2 out of range"},
		{pass: Pass{Loss: LossSumTap, LossTap: InputTap, Taps: []int{0}}, msg: "tap index -1 out of range"},
		{pass: Pass{Loss: LossMaxLogit, Taps: []int{0, ParamsTap}}, msg: "tap index -2 out of range"},
		{pass: Pass{Loss: LossGate, Taps: []int{InputTap}}, msg: "tap index -1 out of range"},
		{pass: Pass{Loss: LossODIN, LossParam: 1000, Taps: []int{0}, Reduce: ReducePerturbForward, Params: []float64{1, 1, 1}}, msg: "input tap alone"},
		{pass: Pass{Loss: LossODIN, LossParam: 1000, Taps: []int{InputTap}, Reduce: ReducePerturbForward, Params: []float64{1}}, msg: "one step per input channel (3), has 1"},
	} {
		var passes []Pass
		if c.pass.Taps != nil {
			passes = []Pass{c.pass}
		}
		_, err = m.Run(x, c.values, passes)
		require.ErrorAs(t, err, &te, c.msg)
		assert.Equal(t, CodeInvalid, te.Code)
		assert.Contains(t, te.Msg, c.msg)
	}
	ungated := -1
	for _, tp := range m.Taps() {
		if tp.Kind.IsNorm() && !tp.Gated {
			ungated = tp.Index
		}
	}
	if ungated >= 0 {
		_, err = m.Run(x, nil, []Pass{{Loss: LossGate, Taps: []int{ungated}, Reduce: ReduceSumSqNonzero}})
		require.ErrorAs(t, err, &te)
		assert.Contains(t, te.Msg, "has no ReLU gate")
	}

	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "Close is idempotent")
	_, err = m.Forward(&Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)})
	assert.ErrorIs(t, err, ErrClosed)
	_, err = m.TapShapes([4]int{1, 3, 32, 32})
	assert.ErrorIs(t, err, ErrClosed)
}

// TestConcurrentUse: 8 goroutines share one Module; every result equals the
// serial one. Then Close races with calls in flight: each call either
// finishes or sees ErrClosed.
func TestConcurrentUse(t *testing.T) {
	dir := testdata(t)
	ref := loadReference(t, dir, "cifar_resnet20")
	testenv.Need(t, filepath.Join(dir, "cifar_resnet20.script.pt"))
	m, err := Load(filepath.Join(dir, "cifar_resnet20.script.pt"), device)
	require.NoError(t, err)
	norm := tapsOfKind(m, true, "")
	pass := []Pass{{Loss: LossMaxLogit, Taps: norm, Reduce: ReduceSumSqNonzero}}
	want, err := m.Run(ref.input(t), nil, pass)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				r, err := m.Run(ref.input(t), nil, pass)
				if err != nil {
					errs <- err
					return
				}
				for k := range norm {
					if !assert.Equal(t, want.Grads[0][k].Data, r.Grads[0][k].Data) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var wg2 sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for i := 0; i < 50; i++ {
				_, err := m.Run(ref.input(t), nil, pass)
				if errors.Is(err, ErrClosed) {
					return
				}
				assert.NoError(t, err)
			}
		}()
	}
	require.NoError(t, m.Close())
	wg2.Wait()
}

func rssBytes(t testing.TB) int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	f := strings.Fields(string(raw))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	require.NoError(t, err)
	return pages * int64(os.Getpagesize())
}

// TestNoLeak: 2,000 forward+backward batches grow resident memory by < 5%.
func TestNoLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the leak test runs 2,000 batches")
	}
	ref, m := openModel(t, testdata(t), "cifar_resnet20", "cifar_resnet20.script.pt")
	passes := gaiaPasses(m)
	cls := tapsOfKind(m, false, KindClassifierInput)
	x := ref.input(t)
	run := func(n int) {
		for i := 0; i < n; i++ {
			_, err := m.Run(x, cls, passes)
			require.NoError(t, err)
		}
	}
	run(200)
	runtime.GC()
	before := rssBytes(t)
	run(2000)
	runtime.GC()
	after := rssBytes(t)
	growth := float64(after-before) / float64(before)
	t.Logf("RSS %d -> %d bytes (%.2f%%)", before, after, 100*growth)
	assert.Less(t, growth, 0.05)
}

func TestVersionAndThreads(t *testing.T) {
	v := Version()
	assert.Regexp(t, `^\d+\.\d+`, v)
	assert.GreaterOrEqual(t, NumThreads(), 1)
	assert.GreaterOrEqual(t, CUDADeviceCount(), 0)

	// The thread count reaches the thread the module's calls run on.
	m, err := Load(filepath.Join(testdata(t), "plain_cnn.script.pt"), "cpu")
	require.NoError(t, err)
	defer m.Close()
	before := NumThreads()
	defer SetNumThreads(before)
	x := &Tensor{Shape: []int{1, 3, 16, 16}, Data: make([]float32, 3*16*16)}
	for _, n := range []int{1, 3} {
		SetNumThreads(n)
		_, err := m.Forward(x)
		require.NoError(t, err)
		assert.Equal(t, n, m.threadsInUse())
		assert.Equal(t, n, NumThreads())
	}
	// A module's own count wins over the process's, until reset to 0.
	m.SetThreads(2)
	_, err = m.Forward(x)
	require.NoError(t, err)
	assert.Equal(t, 2, m.threadsInUse())
	m.SetThreads(0)
	_, err = m.Forward(x)
	require.NoError(t, err)
	assert.Equal(t, 3, m.threadsInUse())
}

// TestReduceInHooksSameAsAfter: reducing each tap gradient in a hook as
// autograd produces it gives the numbers of taking all gradients first.
func TestReduceInHooksSameAsAfter(t *testing.T) {
	dir := testdata(t)
	for _, arch := range []string{"resnet50", "resnet18", "densenet121"} {
		t.Run(arch, func(t *testing.T) { checkHooksSameAsAfter(t, dir, arch) })
	}
}

func checkHooksSameAsAfter(t *testing.T, dir, arch string) {
	{
		ref := loadReference(t, dir, arch)
		testenv.Need(t, filepath.Join(dir, arch+".trace.pt"))
		m, err := Load(filepath.Join(dir, arch+".trace.pt"), device)
		require.NoError(t, err)
		norm := tapsOfKind(m, true, "")
		fmap := tapsOfKind(m, false, KindFeatureMap)
		cls := tapsOfKind(m, false, KindClassifierInput)
		passes := []Pass{
			{Loss: LossMaxLogit, Taps: norm, Reduce: ReduceSumSqNonzero},
			{Loss: LossSumLogSoftmax, Taps: fmap, Reduce: ReduceMeanAbsMean},
			{Loss: LossSumTap, LossTap: cls[0], Taps: norm[len(norm)/2:], Reduce: ReduceSumSqMean},
			{Loss: LossODIN, LossParam: 1000, Taps: []int{InputTap}, Reduce: ReduceL1},
		}
		hooks, err := m.Run(ref.input(t), nil, passes)
		require.NoError(t, err)
		m.SetReduceInHooks(false)
		after, err := m.Run(ref.input(t), nil, passes)
		require.NoError(t, err)
		for p := range passes {
			for i := range hooks.Grads[p] {
				assert.Equal(t, after.Grads[p][i].Data, hooks.Grads[p][i].Data, "%s pass %d tap %d", arch, p, i)
			}
		}
		m.Close()
	}
}
