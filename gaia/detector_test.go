package gaia

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/torch"
)

func TestParseDetectors(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "all", want: []string{"gaia-a", "gaia-z", "msp", "maxlogit", "energy", "odin", "gradnorm"}},
		{in: " all ", want: allNames()},
		{in: "msp", want: []string{"msp"}},
		{in: "ODIN, msp,odin", want: []string{"odin", "msp"}},
		{in: "gaia-z-fast,gaia-z", want: []string{"gaia-z-fast", "gaia-z"}},
		{in: "msp,,energy,", want: []string{"msp", "energy"}},
		{in: "", err: "no detector named"},
		{in: " , ", err: "no detector named"},
		{in: "msp,mahalanobi", err: `unknown detector "mahalanobi"`},
		{in: "all,msp", want: []string{"gaia-a", "gaia-z", "msp", "maxlogit", "energy", "odin", "gradnorm"}},
		{in: "features", want: []string{"mahalanobis", "react", "knn", "vim", "ash", "dice", "klm"}},
		{in: "knn,every", want: []string{"knn", "gaia-a", "gaia-z", "msp", "maxlogit", "energy", "odin", "gradnorm", "mahalanobis", "react", "vim", "ash", "dice", "klm"}},
	}
	for _, c := range cases {
		got, err := ParseDetectors(c.in)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

func ExampleParseDetectors() {
	d, _ := ParseDetectors("all")
	fmt.Println(strings.Join(d, ","))
	d, _ = ParseDetectors("odin, gaia-z-fast, odin")
	fmt.Println(d)
	_, err := ParseDetectors("gaia-q")
	fmt.Println(err)
	// Output:
	// gaia-a,gaia-z,msp,maxlogit,energy,odin,gradnorm
	// [odin gaia-z-fast]
	// unknown detector "gaia-q" (known: gaia-a, gaia-z, msp, maxlogit, energy, odin, gradnorm, mahalanobis, react, knn, vim, ash, dice, klm, gaia-z-fast; groups all, features, every)
}

// TestRegistry: names and settings are unique, every setting's default is
// of a kind Settings handles and passes its own check, and every detector
// plans on a model's taps.
func TestRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range detectors {
		assert.False(t, seen[d.Name], "detector %s twice", d.Name)
		seen[d.Name] = true
		assert.NotEmpty(t, d.Summary, d.Name)
		assert.NotNil(t, d.Plan, d.Name)
		taps := 0
		for _, s := range d.Settings {
			if s.Taps {
				taps++
			}
		}
		assert.LessOrEqual(t, taps, 1, "%s: at most one tap selection", d.Name)
	}
	names := map[string]bool{}
	for _, s := range allSettings() {
		assert.False(t, names[s.Name], "setting %s twice", s.Name)
		names[s.Name] = true
		switch s.Default.(type) {
		case float64, int, string:
		default:
			t.Errorf("setting %s: default %v of kind %T", s.Name, s.Default, s.Default)
		}
		if s.Check != nil {
			assert.NoError(t, s.Check(s.Default), s.Name)
		}
		assert.NotEmpty(t, readersOf(s), s.Name)
	}
	info := syntheticInfo(t)
	for _, d := range detectors {
		p, err := d.Plan(info, Settings{})
		require.NoError(t, err, d.Name)
		require.NotNil(t, p.Score, d.Name)
		for _, h := range p.Heads {
			for _, b := range h.Buf {
				assert.True(t, b == torch.NoBuffer || int(b) < len(p.Buffers), "%s: a head reads buffer %d of %d", d.Name, b, len(p.Buffers))
			}
		}
		assert.Equal(t, d.NeedsFit, func() bool {
			_, err := d.Plan(modelInfo{Taps: info.Taps, Weight: info.Weight, Bias: info.Bias, InputChannels: 3}, Settings{})
			return err != nil
		}(),
			"%s: refuses to plan without a fit exactly when it needs one", d.Name)
	}
}

// syntheticInfo is syntheticTaps with a 10-class classifier on the 64
// features and a fit of 200 labelled random feature vectors.
func syntheticInfo(t testing.TB) modelInfo {
	rng := rand.New(rand.NewSource(5))
	const k, d, n = 10, 64, 200
	w := &torch.Tensor{Shape: []int{k, d}, Data: make([]float32, k*d)}
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64() / 8)
	}
	b := &torch.Tensor{Shape: []int{k}, Data: make([]float32, k)}
	f := &Fit{K: k, D: d, Sum: make([]float64, d), Gram: make([]float64, d*d), ClassCount: make([]float64, k),
		ClassSum: make([]float64, k*d), PredCount: make([]float64, k), PredSoftmax: make([]float64, k*k)}
	for s := 0; s < n; s++ {
		c := s % k
		h := make([]float32, d)
		for j := range h {
			h[j] = float32(math.Max(0, rng.NormFloat64()+float64(c%3)*0.2*float64(j%5)))
		}
		f.ClassCount[c]++
		for i, v := range h {
			f.Sum[i] += float64(v)
			f.ClassSum[c*d+i] += float64(v)
			for j, u := range h {
				f.Gram[i*d+j] += float64(v) * float64(u)
			}
		}
		f.PredCount[c]++
		for j := 0; j < k; j++ {
			f.PredSoftmax[c*k+j] += 1.0 / k
		}
		f.SampleH = append(f.SampleH, h...)
		f.SampleMaxLogit = append(f.SampleMaxLogit, 1+rng.Float64())
		f.M++
		f.N++
	}
	f.Meta = FitMeta{Labelled: true, ClassifierInput: "linear:input"}
	return modelInfo{Taps: syntheticTaps(), InputChannels: 3, Std: []float64{0.25, 0.5, 1}, Weight: w, Bias: b, Fit: f}
}

// TestFeaturePlans: what the fitted detectors derive, against the
// definitions computed directly.
func TestFeaturePlans(t *testing.T) {
	info := syntheticInfo(t)
	f := info.Fit
	plan := func(name string, s Settings) *detectorPlan {
		d, err := lookup(name)
		require.NoError(t, err)
		p, err := d.Plan(info, s)
		require.NoError(t, err, name)
		return p
	}
	// Mahalanobis: P S = identity (S is full rank here), means per class.
	p := plan("mahalanobis", nil)
	assert.Equal(t, []int{10, 64}, p.Buffers[0].Shape)
	mu0 := p.Buffers[0].F64[:64]
	for j := range mu0 {
		assert.InDelta(t, f.ClassSum[j]/f.ClassCount[0], mu0[j], 1e-12)
	}
	d := 64
	cov := make([]float64, d*d)
	for s := 0; s < f.N; s++ {
		c := s % 10
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				cov[i*d+j] += (float64(f.SampleH[s*d+i]) - p.Buffers[0].F64[c*d+i]) * (float64(f.SampleH[s*d+j]) - p.Buffers[0].F64[c*d+j]) / float64(f.N)
			}
		}
	}
	prec := p.Buffers[1].F64
	for i := 0; i < d; i += 13 {
		for j := 0; j < d; j += 11 {
			var v float64
			for q := 0; q < d; q++ {
				v += prec[i*d+q] * cov[q*d+j]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			assert.InDelta(t, want, v, 1e-8, "P S at %d %d", i, j)
		}
	}
	// ReAct: the threshold is numpy's linear percentile of every entry.
	p = plan("react", Settings{"react-percentile": 90.0})
	all := float64s(f.SampleH)
	sort.Float64s(all)
	pos := 0.9 * float64(len(all)-1)
	lo := int(pos)
	assert.InDelta(t, all[lo]+(pos-float64(lo))*(all[lo+1]-all[lo]), p.Heads[0].Arg[1], 1e-12)
	assert.Equal(t, 1.0, p.Heads[0].Arg[0])
	// DICE keeps the top 10% of the weights by contribution.
	p = plan("dice", nil)
	kept := 0
	for _, v := range p.Buffers[0].F32 {
		if v != 0 {
			kept++
		}
	}
	assert.InDelta(t, 64, kept, 1, "10% of 640 weights")
	// KNN: a bank of unit rows; too large a k is refused.
	p = plan("knn", Settings{"knn-k": 7})
	var ss float64
	for _, v := range p.Buffers[0].F32[:64] {
		ss += float64(v) * float64(v)
	}
	assert.InDelta(t, 1, ss, 1e-6)
	assert.Equal(t, 7.0, p.Heads[0].Arg[0])
	_, err := knn.Plan(info, Settings{"knn-k": 201})
	assert.ErrorContains(t, err, "kept 200 feature vectors, fewer than k = 201")
	// ViM: an orthonormal residual basis of 32 vectors, orthogonal to the top 32.
	p = plan("vim", nil)
	assert.Equal(t, []int{64, 32}, p.Buffers[1].Shape)
	ns := p.Buffers[1].F64
	for a := 0; a < 32; a += 5 {
		var dot float64
		for i := 0; i < 64; i++ {
			dot += ns[i*32+a] * ns[i*32+a]
		}
		assert.InDelta(t, 1, dot, 1e-9)
	}
	_, err = vim.Plan(info, Settings{"vim-dim": 64})
	assert.ErrorContains(t, err, "must leave a residual")
	// Without labels, Mahalanobis refuses; a class without samples is named.
	copyFit := func(f *Fit) *Fit {
		return &Fit{Meta: f.Meta, K: f.K, D: f.D, N: f.N, ClassCount: f.ClassCount, ClassSum: f.ClassSum, Sum: f.Sum,
			Gram: f.Gram, PredCount: f.PredCount, PredSoftmax: f.PredSoftmax, SampleH: f.SampleH, SampleMaxLogit: f.SampleMaxLogit, M: f.M}
	}
	unl := copyFit(f)
	unl.Meta.Labelled = false
	_, err = mahalanobis.Plan(modelInfo{Taps: info.Taps, Weight: info.Weight, Bias: info.Bias, Fit: unl}, nil)
	assert.ErrorContains(t, err, "needs the fit set's labels")
	gap := copyFit(f)
	gap.ClassCount = append([]float64(nil), f.ClassCount...)
	gap.ClassCount[3] = 0
	gap.ClassSum = append([]float64(nil), f.ClassSum...)
	for j := 0; j < 64; j++ {
		gap.ClassSum[3*64+j] = 0
	}
	p, err = mahalanobis.Plan(modelInfo{Taps: info.Taps, Weight: info.Weight, Bias: info.Bias, Fit: gap}, nil)
	require.NoError(t, err)
	assert.Equal(t, []int{9, 64}, p.Buffers[0].Shape)
	require.Len(t, p.Warnings, 1)
	assert.Contains(t, p.Warnings[0], "1 of 10 classes have no fit sample (such as class 3)")
	tiny := copyFit(f)
	tiny.N = 10
	_, err = mahalanobis.Plan(modelInfo{Taps: info.Taps, Weight: info.Weight, Bias: info.Bias, Fit: tiny}, nil)
	assert.ErrorContains(t, err, "no degrees of freedom")
}

// TestPlans: what each detector asks of the shared forward, on synthetic
// taps, and its arithmetic on synthetic outputs, against the definitions
// of docs/method.md worked by hand.
func TestPlans(t *testing.T) {
	info := modelInfo{Taps: syntheticTaps(), InputChannels: 3, Std: []float64{0.25, 0.5, 1}}
	plan := func(name string, s Settings) *detectorPlan {
		d, err := lookup(name)
		require.NoError(t, err)
		p, err := d.Plan(info, s)
		require.NoError(t, err, name)
		return p
	}
	vec := func(v ...float32) *torch.Tensor { return &torch.Tensor{Shape: []int{len(v)}, Data: v} }
	logits := &torch.Tensor{Shape: []int{2, 3}, Data: []float32{1, 2, 3, 0, 0, 0}}
	pred := []int{2, 0}
	prob := []float64{math.Exp(3) / (math.Exp(1) + math.Exp(2) + math.Exp(3)), 1.0 / 3}
	out := make([]float64, 2)

	z := plan("gaia-z", Settings{})
	require.Len(t, z.Passes, 1)
	assert.Equal(t, torch.LossMaxLogit, z.Passes[0].Loss)
	assert.Len(t, z.Passes[0].Taps, 19)
	assert.Equal(t, "19, 688 channels (bn1, layer1.0.bn1, layer1.0.bn2, layer1.1.bn1, ... 15 more)", z.Uses)
	require.NoError(t, z.Score(&batchOutputs{Grads: [][]*torch.Tensor{{vec(1, 2), vec(3, 4)}}}, out))
	assert.Equal(t, []float64{4.0 / 688, 6.0 / 688}, out)
	z = plan("gaia-z", Settings{"taps-z": "layer3"})
	assert.Len(t, z.Taps, 6)

	fast := plan("gaia-z-fast", Settings{})
	assert.Equal(t, torch.LossGate, fast.Passes[0].Loss)
	assert.Len(t, fast.Taps, 16, "the gated ones")

	a := plan("gaia-a", Settings{})
	require.Len(t, a.Passes, 2)
	assert.Equal(t, []int{19}, a.Passes[0].Taps, "the feature map")
	assert.Equal(t, 20, a.Passes[1].LossTap, "the classifier input")
	assert.Equal(t, "layer2.0.bn1", a.Taps[0].Name)
	assert.Len(t, a.Taps, 12)
	// S_A = sum / (o^2 * channels): 12 taps of 32 and 64 channels = 576.
	require.NoError(t, a.Score(&batchOutputs{Grads: [][]*torch.Tensor{{vec(2, 0)}, {vec(3, 1), vec(5, 1)}}}, out))
	assert.Equal(t, 8.0/(2*576), out[0])
	assert.True(t, math.IsInf(out[1], 1), "o = 0 gives +Inf")

	o := &batchOutputs{Logits: logits, Pred: pred, Prob: prob}
	require.NoError(t, plan("msp", nil).Score(o, out))
	assert.Equal(t, []float64{-prob[0], -prob[1]}, out)
	require.NoError(t, plan("maxlogit", nil).Score(o, out))
	assert.Equal(t, []float64{-3, 0}, out)
	require.NoError(t, plan("energy", Settings{}).Score(o, out))
	assert.InDelta(t, -math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3)), out[0], 1e-12)
	assert.InDelta(t, -math.Log(3), out[1], 1e-12)
	require.NoError(t, plan("energy", Settings{"energy-temperature": 2.0}).Score(o, out))
	assert.InDelta(t, -2*math.Log(math.Exp(0.5)+math.Exp(1)+math.Exp(1.5)), out[0], 1e-12)

	od := plan("odin", Settings{"odin-epsilon": 0.01})
	require.Len(t, od.Passes, 1)
	assert.Equal(t, torch.ReducePerturbForward, od.Passes[0].Reduce)
	assert.Equal(t, []float64{0.04, 0.02, 0.01}, od.Passes[0].Params, "epsilon over each channel's std")
	assert.Equal(t, 1000.0, od.Passes[0].LossParam)
	perturbed := &torch.Tensor{Shape: []int{2, 3}, Data: []float32{1000, 0, 0, 0, 0, 0}}
	require.NoError(t, od.Score(&batchOutputs{Grads: [][]*torch.Tensor{{perturbed}}}, out))
	assert.InDelta(t, -math.E/(math.E+2), out[0], 1e-12, "softmax at T = 1000")
	assert.InDelta(t, -1.0/3, out[1], 1e-12)

	gn := plan("gradnorm", nil)
	assert.Equal(t, []int{20}, gn.Values)
	h := &torch.Tensor{Shape: []int{2, 2}, Data: []float32{1, -2, 0.5, 0.5}}
	require.NoError(t, gn.Score(&batchOutputs{Logits: logits, Values: []*torch.Tensor{h}}, out))
	var l1 float64
	for _, v := range []float64{math.Exp(1), math.Exp(2), math.Exp(3)} {
		l1 += math.Abs(v/(math.Exp(1)+math.Exp(2)+math.Exp(3)) - 1.0/3)
	}
	assert.InDelta(t, -l1*3, out[0], 1e-12)
	assert.InDelta(t, 0, out[1], 1e-12, "a uniform softmax has no gradient")
}

func TestPlanErrors(t *testing.T) {
	noHead := modelInfo{Taps: syntheticTaps()[:19], InputChannels: 3}
	for _, c := range []struct {
		det  string
		info modelInfo
		s    Settings
		err  string
	}{
		{"gaia-a", noHead, nil, "no feature map before global pooling or no classifier input"},
		{"gradnorm", noHead, nil, "no classifier input tap"},
		{"gaia-z", noHead, Settings{"taps-z": "layer9"}, `"layer9" matches no normalization tap`},
		{"gaia-a", modelInfo{Taps: syntheticTaps()}, Settings{"taps-a": "last:x"}, "last:N"},
		{"gaia-z-fast", modelInfo{Taps: syntheticTaps()}, Settings{"taps-z": "layer1.1.bn2"}, "none of the taps is followed by a ReLU"},
		{"odin", modelInfo{Taps: syntheticTaps(), InputChannels: -1}, nil, "input channel count is unknown"},
	} {
		d, err := lookup(c.det)
		require.NoError(t, err)
		_, err = d.Plan(c.info, c.s)
		assert.ErrorContains(t, err, c.err, c.det)
	}
}

func TestSettings(t *testing.T) {
	s := Settings{}
	assert.Equal(t, 1000.0, s.float("odin-temperature"), "the default")
	require.NoError(t, s.Set("odin-temperature", "500"))
	assert.Equal(t, 500.0, s.float("odin-temperature"))
	assert.ErrorContains(t, s.Set("odin-temperature", "hot"), `setting odin-temperature: "hot" is not a number`)
	assert.ErrorContains(t, s.Set("odin-temperature", "0"), "must be a positive number")
	assert.ErrorContains(t, s.Set("odin-temperature", "NaN"), "must be a positive number")
	assert.ErrorContains(t, s.Set("odin-epsilon", "-1"), "must be a non-negative number")
	require.NoError(t, s.Set("odin-epsilon", "0"))
	assert.ErrorContains(t, s.Set("odin-warmth", "1"), `unknown setting "odin-warmth"`)
	assert.ErrorContains(t, s.SetValue("taps-z", 3.0), "is not text")
	require.NoError(t, s.Set("taps-z", "layer3"))

	got := s.For([]string{"odin", "msp"})
	assert.Equal(t, Settings{"odin-temperature": 500.0, "odin-epsilon": 0.0}, got)
	assert.Equal(t, `odin-epsilon=0 odin-temperature=500`, got.Canonical())
	assert.Equal(t, Settings{"taps-z": "layer3"}, s.For([]string{"gaia-z-fast"}), "a shared setting")

	raw, err := json.Marshal(s)
	require.NoError(t, err)
	var back Settings
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, s, back)
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"energy-temperature": "warm"}`), &back), "is not a number")
}
