package gaia

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/gaia-ood/gaia/torch"
)

var (
	stageNameRe = regexp.MustCompile(`^(layer|denseblock|transition|stage|block)(\d+)$`)
	stageListRe = regexp.MustCompile(`^(stages|layers|blocks)$`)
)

// stageOf reads a stage number from a module path: "layer3.1.bn2" -> 3,
// "features.denseblock4.denselayer2.norm1" -> 4, "features.transition3.norm"
// -> 3, "stages.2.blocks.0.norm1" -> 3 (a zero-based list counts from 1).
func stageOf(name string) (int, bool) {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if m := stageNameRe.FindStringSubmatch(p); m != nil {
			n, _ := strconv.Atoi(m[2])
			return n, true
		}
		if stageListRe.MatchString(p) && i+1 < len(parts) {
			if n, err := strconv.Atoi(parts[i+1]); err == nil {
				return n + 1, true
			}
		}
	}
	return 0, false
}

// Stages gives each normalization tap its stage: the number its module path
// names (layerK, denseblockK, transitionK, stages.K), or, for a tap whose path
// names none, the stage of the tap before it (DenseNet's final norm5 belongs to
// the last block), or 0 (the stem) before any.
func Stages(taps []torch.Tap) []int {
	out := make([]int, len(taps))
	cur := 0
	for i, t := range taps {
		if n, ok := stageOf(t.Name); ok {
			cur = n
		}
		out[i] = cur
	}
	return out
}

// NormTaps returns the normalization taps (or ReLU-input taps, for models
// without normalization), in graph order.
func NormTaps(all []torch.Tap) []torch.Tap {
	var out []torch.Tap
	for _, t := range all {
		if t.Kind.IsNorm() {
			out = append(out, t)
		}
	}
	return out
}

func findKind(all []torch.Tap, k torch.TapKind) (torch.Tap, bool) {
	for _, t := range all {
		if t.Kind == k {
			return t, true
		}
	}
	return torch.Tap{}, false
}

// LastStages returns the normalization taps of the last n stages. ok is false
// when no stage could be read from the tap names, and then every
// normalization tap is returned.
func LastStages(all []torch.Tap, n int) (taps []torch.Tap, ok bool) {
	norm := NormTaps(all)
	st := Stages(norm)
	maxStage := 0
	for _, s := range st {
		if s > maxStage {
			maxStage = s
		}
	}
	if maxStage == 0 {
		return norm, false
	}
	var distinct []int
	for _, s := range st {
		if s > 0 && (len(distinct) == 0 || distinct[len(distinct)-1] != s) {
			distinct = append(distinct, s)
		}
	}
	lo := distinct[0]
	if len(distinct) > n {
		lo = distinct[len(distinct)-n]
	}
	for i, t := range norm {
		if st[i] >= lo {
			taps = append(taps, t)
		}
	}
	return taps, true
}

// SelectTaps chooses normalization taps by a comma-separated spec. Each item
// is a module-path prefix ("layer3", "features.denseblock4"), "kind:KIND"
// (batch_norm, group_norm, instance_norm, relu_input), "last:N" (the last N
// stages) or "all". The result is the union, in graph order. An item that
// matches nothing is an error naming it.
func SelectTaps(all []torch.Tap, spec string) ([]torch.Tap, error) {
	norm := NormTaps(all)
	chosen := make(map[int]bool)
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		matched := 0
		switch {
		case item == "all":
			for _, t := range norm {
				chosen[t.Index] = true
				matched++
			}
		case strings.HasPrefix(item, "kind:"):
			k := torch.TapKind(strings.TrimPrefix(item, "kind:"))
			for _, t := range norm {
				if t.Kind == k {
					chosen[t.Index] = true
					matched++
				}
			}
		case strings.HasPrefix(item, "last:"):
			n, err := strconv.Atoi(strings.TrimPrefix(item, "last:"))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("taps: %q: want last:N with N a positive number", item)
			}
			ts, ok := LastStages(all, n)
			if !ok {
				return nil, fmt.Errorf("taps: %q: no stage numbers in the tap names (such as layer3 or denseblock4); name the taps by prefix", item)
			}
			for _, t := range ts {
				chosen[t.Index] = true
				matched++
			}
		default:
			for _, t := range norm {
				if t.HasPrefix(item) {
					chosen[t.Index] = true
					matched++
				}
			}
		}
		if matched == 0 {
			return nil, fmt.Errorf("taps: %q matches no normalization tap (the model has: %s)", item, tapNames(norm, 8))
		}
	}
	var out []torch.Tap
	for _, t := range norm {
		if chosen[t.Index] {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("taps: %q selects no tap", spec)
	}
	return out, nil
}

func tapNames(taps []torch.Tap, max int) string {
	var names []string
	for i, t := range taps {
		if i == max {
			names = append(names, fmt.Sprintf("... %d more", len(taps)-max))
			break
		}
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

func sumChannels(taps []torch.Tap) int {
	n := 0
	for _, t := range taps {
		n += t.Channels
	}
	return n
}

func indices(taps []torch.Tap) []int {
	out := make([]int, len(taps))
	for i, t := range taps {
		out[i] = t.Index
	}
	return out
}

// bitLastBlock is GAIA-A's default for BiT-style ResNetV2 models (GroupNorm
// taps under body.blockK, as the official port names them): the GroupNorms
// of the last block, as the GAIA authors chose for BiT; "" for other models.
func bitLastBlock(all []torch.Tap) string {
	last := 0
	for _, t := range NormTaps(all) {
		if t.Kind != torch.KindGroupNorm || !strings.HasPrefix(t.Name, "body.block") {
			continue
		}
		if n, ok := stageOf(t.Name); ok && n > last {
			last = n
		}
	}
	if last == 0 {
		return ""
	}
	return fmt.Sprintf("body.block%d", last)
}

// wrnTapRe is a BatchNorm of a Wide ResNet as Zagoruyko's code (and the GAIA
// authors' networks/wresnet.py) names them: blockK.layer.N.bn1|bn2.
var wrnTapRe = regexp.MustCompile(`^block\d+\.layer\.\d+\.bn[12]$`)

// isWRN reports whether the taps are a Wide ResNet's, for the authors'
// defaults: GAIA-A on every BatchNorm, its output component pooled.
func isWRN(all []torch.Tap) bool {
	for _, t := range NormTaps(all) {
		if wrnTapRe.MatchString(t.Name) {
			return true
		}
	}
	return false
}

// channels is the taps' channel count in all; a tap whose count is unknown
// is an error naming it.
func channels(taps []torch.Tap) (int, error) {
	for _, t := range taps {
		if t.Channels <= 0 {
			return 0, fmt.Errorf("tap %s: channel count unknown", t.Name)
		}
	}
	return sumChannels(taps), nil
}
