package torch

import "strings"

// TapKind says what a tap is.
type TapKind string

// Tap kinds.
const (
	KindBatchNorm       TapKind = "batch_norm"       // output of aten::batch_norm
	KindGroupNorm       TapKind = "group_norm"       // output of aten::group_norm
	KindInstanceNorm    TapKind = "instance_norm"    // output of aten::instance_norm
	KindReLUInput       TapKind = "relu_input"       // input of a ReLU (models without normalization)
	KindFeatureMap      TapKind = "feature_map"      // the final feature map, before global pooling
	KindClassifierInput TapKind = "classifier_input" // the pooled vector that enters the classifier
)

// IsNorm reports whether the tap is a normalization output (or, in a model
// without normalization layers, a ReLU input): the taps GAIA inspects.
func (k TapKind) IsNorm() bool {
	return k == KindBatchNorm || k == KindGroupNorm || k == KindInstanceNorm || k == KindReLUInput
}

// Tap is a point of the forward computation whose value and gradient can
// be read.
type Tap struct {
	Index    int    // position in Module.Taps, as Run takes it
	Name     string // module path, such as "layer3.1.bn2"
	Kind     TapKind
	Channels int // -1 when not known before a forward
	// Gated: a ReLU follows the tap (directly or after one addition) and does
	// not feed max-pooling, so its forward mask gives the gradient's zeros
	// wherever nothing further down zeroes them (LossGate, gaia-z-fast).
	Gated bool
}

// HasPrefix reports whether the tap's module path starts with the dotted
// prefix p: "layer3" matches "layer3.0.bn1" but not "layer30.bn1".
func (t Tap) HasPrefix(p string) bool {
	p = strings.TrimSuffix(p, ".")
	return t.Name == p || strings.HasPrefix(t.Name, p+".")
}
