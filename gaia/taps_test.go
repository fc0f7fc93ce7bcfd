package gaia

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/torch"
)

// syntheticTaps is a CIFAR ResNet-20's tap list as gaia info shows it:
// the stem, three stages of three blocks with two BatchNorms each, the
// feature map and the classifier input.
func syntheticTaps() []torch.Tap {
	var taps []torch.Tap
	add := func(name string, kind torch.TapKind, ch int, gated bool) {
		taps = append(taps, torch.Tap{Index: len(taps), Name: name, Kind: kind, Channels: ch, Gated: gated})
	}
	add("bn1", torch.KindBatchNorm, 16, true)
	for stage, ch := range []int{16, 32, 64} {
		for b := 0; b < 3; b++ {
			add(fmt.Sprintf("layer%d.%d.bn1", stage+1, b), torch.KindBatchNorm, ch, true)
			add(fmt.Sprintf("layer%d.%d.bn2", stage+1, b), torch.KindBatchNorm, ch, b != 1)
		}
	}
	add("feature_map", torch.KindFeatureMap, 64, false)
	add("linear:input", torch.KindClassifierInput, 64, false)
	return taps
}

func names(taps []torch.Tap) string {
	var out []string
	for _, t := range taps {
		out = append(out, t.Name)
	}
	return strings.Join(out, ",")
}

func TestSelectTaps(t *testing.T) {
	all := syntheticTaps()
	cases := []struct {
		spec  string
		n     int
		first string
		last  string
		err   string
	}{
		{spec: "all", n: 19, first: "bn1", last: "layer3.2.bn2"},
		{spec: "kind:batch_norm", n: 19, first: "bn1", last: "layer3.2.bn2"},
		{spec: "layer3", n: 6, first: "layer3.0.bn1", last: "layer3.2.bn2"},
		{spec: "layer3.", n: 6, first: "layer3.0.bn1", last: "layer3.2.bn2"},
		{spec: "last:2", n: 12, first: "layer2.0.bn1", last: "layer3.2.bn2"},
		{spec: "last:9", n: 18, first: "layer1.0.bn1", last: "layer3.2.bn2"},
		{spec: "layer3.1.bn2,bn1", n: 2, first: "bn1", last: "layer3.1.bn2"},
		{spec: "layer1,layer1.0", n: 6, first: "layer1.0.bn1", last: "layer1.2.bn2"},
		{spec: "bn1", n: 1, first: "bn1", last: "bn1"},
		{spec: "layer", err: `"layer" matches no normalization tap`},
		{spec: "feature_map", err: `"feature_map" matches no normalization tap`},
		{spec: "kind:group_norm", err: `"kind:group_norm" matches no normalization tap`},
		{spec: "last:0", err: "want last:N with N a positive number"},
		{spec: "last:x", err: "want last:N with N a positive number"},
		{spec: ",", err: `taps: "," selects no tap`},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			got, err := SelectTaps(all, c.spec)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, c.n)
			assert.Equal(t, c.first, got[0].Name)
			assert.Equal(t, c.last, got[len(got)-1].Name)
			for i := 1; i < len(got); i++ {
				assert.Less(t, got[i-1].Index, got[i].Index, "graph order")
			}
		})
	}
}

func TestStages(t *testing.T) {
	cases := []struct {
		name  string
		stage int
		ok    bool
	}{
		{"layer3.1.bn2", 3, true},
		{"features.denseblock4.denselayer2.norm1", 4, true},
		{"features.transition3.norm", 3, true},
		{"stages.2.blocks.0.norm1", 3, true},
		{"body.block4.unit01.gn1", 4, true},
		{"bn1", 0, false},
		{"layer30x.bn", 0, false},
		{"features.norm5", 0, false},
	}
	for _, c := range cases {
		n, ok := stageOf(c.name)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.stage, n, c.name)
	}
	// A tap whose path names no stage takes the one before it (DenseNet's
	// norm5 belongs to its last block); the stem is stage 0.
	taps := []torch.Tap{{Name: "features.norm0"}, {Name: "features.denseblock4.denselayer1.norm1"}, {Name: "features.norm5"}}
	assert.Equal(t, []int{0, 4, 4}, Stages(taps))
}

func TestLastStagesWithoutStageNames(t *testing.T) {
	taps := []torch.Tap{{Index: 0, Name: "batch_norm#0", Kind: torch.KindBatchNorm}, {Index: 1, Name: "batch_norm#1", Kind: torch.KindBatchNorm}}
	got, ok := LastStages(taps, 2)
	assert.False(t, ok)
	assert.Len(t, got, 2, "every normalization tap")
	_, err := SelectTaps(taps, "last:2")
	assert.ErrorContains(t, err, "no stage numbers in the tap names")
}

func ExampleSelectTaps() {
	taps, _ := SelectTaps(syntheticTaps(), "last:1")
	fmt.Println(len(taps), names(taps[:2]))
	taps, _ = SelectTaps(syntheticTaps(), "layer2.0,kind:batch_norm")
	fmt.Println(len(taps))
	_, err := SelectTaps(syntheticTaps(), "layer4")
	fmt.Println(err)
	// Output:
	// 6 layer3.0.bn1,layer3.0.bn2
	// 19
	// taps: "layer4" matches no normalization tap (the model has: bn1, layer1.0.bn1, layer1.0.bn2, layer1.1.bn1, layer1.1.bn2, layer1.2.bn1, layer1.2.bn2, layer2.0.bn1, ... 11 more)
}

func ExampleStages() {
	taps := []torch.Tap{{Name: "bn1"}, {Name: "layer1.0.bn1"}, {Name: "layer2.0.bn1"}, {Name: "layer2.0.downsample.1"}}
	fmt.Println(Stages(taps))
	// Output: [0 1 2 2]
}
