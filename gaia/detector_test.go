package gaia

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
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
		{in: " all ", want: AllDetectors},
		{in: "msp", want: []string{"msp"}},
		{in: "ODIN, msp,odin", want: []string{"odin", "msp"}},
		{in: "gaia-z-fast,gaia-z", want: []string{"gaia-z-fast", "gaia-z"}},
		{in: "msp,,energy,", want: []string{"msp", "energy"}},
		{in: "", err: "no detector named"},
		{in: " , ", err: "no detector named"},
		{in: "msp,mahalanobis", err: `unknown detector "mahalanobis"`},
		{in: "all,msp", err: `unknown detector "all"`},
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
	// unknown detector "gaia-q" (known: gaia-a, gaia-z, msp, maxlogit, energy, odin, gradnorm, gaia-z-fast, or all)
}

// TestRegistry: names and settings are unique, every setting's default is
// of a kind Settings handles and passes its own check, and every detector
// plans on a model's taps.
func TestRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Registered() {
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
	info := ModelInfo{Taps: syntheticTaps(), InputChannels: 3, Std: []float64{0.25, 0.5, 1}}
	for _, d := range Registered() {
		p, err := d.Plan(info, Settings{})
		require.NoError(t, err, d.Name)
		require.NotNil(t, p.Score, d.Name)
	}
}

// TestPlans: what each detector asks of the shared forward, on synthetic
// taps, and its arithmetic on synthetic outputs, against the definitions
// of docs/method.md worked by hand.
func TestPlans(t *testing.T) {
	info := ModelInfo{Taps: syntheticTaps(), InputChannels: 3, Std: []float64{0.25, 0.5, 1}}
	plan := func(name string, s Settings) *Plan {
		d, err := Lookup(name)
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
	require.NoError(t, z.Score(&Outputs{Grads: [][]*torch.Tensor{{vec(1, 2), vec(3, 4)}}}, out))
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
	require.NoError(t, a.Score(&Outputs{Grads: [][]*torch.Tensor{{vec(2, 0)}, {vec(3, 1), vec(5, 1)}}}, out))
	assert.Equal(t, 8.0/(2*576), out[0])
	assert.True(t, math.IsInf(out[1], 1), "o = 0 gives +Inf")

	o := &Outputs{Logits: logits, Pred: pred, Prob: prob}
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
	require.NoError(t, od.Score(&Outputs{Grads: [][]*torch.Tensor{{perturbed}}}, out))
	assert.InDelta(t, -math.E/(math.E+2), out[0], 1e-12, "softmax at T = 1000")
	assert.InDelta(t, -1.0/3, out[1], 1e-12)

	gn := plan("gradnorm", nil)
	assert.Equal(t, []int{20}, gn.Values)
	h := &torch.Tensor{Shape: []int{2, 2}, Data: []float32{1, -2, 0.5, 0.5}}
	require.NoError(t, gn.Score(&Outputs{Logits: logits, Values: []*torch.Tensor{h}}, out))
	var l1 float64
	for _, v := range []float64{math.Exp(1), math.Exp(2), math.Exp(3)} {
		l1 += math.Abs(v/(math.Exp(1)+math.Exp(2)+math.Exp(3)) - 1.0/3)
	}
	assert.InDelta(t, -l1*3, out[0], 1e-12)
	assert.InDelta(t, 0, out[1], 1e-12, "a uniform softmax has no gradient")
}

func TestPlanErrors(t *testing.T) {
	noHead := ModelInfo{Taps: syntheticTaps()[:19], InputChannels: 3}
	for _, c := range []struct {
		det  string
		info ModelInfo
		s    Settings
		err  string
	}{
		{"gaia-a", noHead, nil, "no feature map before global pooling or no classifier input"},
		{"gradnorm", noHead, nil, "no classifier input tap"},
		{"gaia-z", noHead, Settings{"taps-z": "layer9"}, `"layer9" matches no normalization tap`},
		{"gaia-a", ModelInfo{Taps: syntheticTaps()}, Settings{"taps-a": "last:x"}, "last:N"},
		{"gaia-z-fast", ModelInfo{Taps: syntheticTaps()}, Settings{"taps-z": "layer1.1.bn2"}, "none of the taps is followed by a ReLU"},
		{"odin", ModelInfo{Taps: syntheticTaps(), InputChannels: -1}, nil, "input channel count is unknown"},
	} {
		d, err := Lookup(c.det)
		require.NoError(t, err)
		_, err = d.Plan(c.info, c.s)
		assert.ErrorContains(t, err, c.err, c.det)
	}
}

func TestSettings(t *testing.T) {
	s := Settings{}
	assert.Equal(t, 1000.0, s.Float("odin-temperature"), "the default")
	require.NoError(t, s.Set("odin-temperature", "500"))
	assert.Equal(t, 500.0, s.Float("odin-temperature"))
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

// TestSettingFlags: every setting is a flag of its own, with the
// registry's help and default; -h lists them.
func TestSettingFlags(t *testing.T) {
	var help bytes.Buffer
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(&help)
	s := Settings{}
	AddSettingFlags(fs, s)
	require.NoError(t, fs.Parse([]string{"--odin-temperature", "10", "-taps-a", "layer4", "--energy-temperature=2"}))
	assert.Equal(t, Settings{"odin-temperature": 10.0, "taps-a": "layer4", "energy-temperature": 2.0}, s)
	err := fs.Parse([]string{"--odin-epsilon", "-0.1"})
	assert.ErrorContains(t, err, "must be a non-negative number")
	fs.PrintDefaults()
	assert.Contains(t, help.String(), "-odin-temperature temperature")
	assert.Contains(t, help.String(), "ODIN's softmax temperature (odin) (default 1000)")
	assert.Contains(t, help.String(), "(gaia-z, gaia-z-fast)")
}
