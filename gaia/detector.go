package gaia

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gaia-ood/gaia/torch"
)

// detectorSpec is one entry of the registry: everything gaia knows of a
// detector. Each lives in a file of its own (det_*.go) and is listed once,
// in detectors; nothing else names it. The scorer, provenance, gates,
// flags, serve, speed and bench all work from these entries.
type detectorSpec struct {
	Name    string
	Summary string // what the score is, in one line
	ByName  bool   // offered by name only, not part of any group
	// Group is the group name that lists it: "" for "all" (GAIA and the
	// baselines that need nothing more than the model), "features" for the
	// feature-based detectors. "every" is both.
	Group string
	// NeedsFit: it scores with statistics of in-distribution data (gaia fit).
	NeedsFit bool
	// Settings are the settings it reads, with their defaults and help;
	// one that several detectors read is the same *setting in each.
	Settings []*setting
	// Plan checks the detector against a model and says what it needs from
	// the one shared forward and how it scores a batch.
	Plan func(m modelInfo, s Settings) (*detectorPlan, error)
}

// modelInfo is what a detector plans from.
type modelInfo struct {
	Taps          []torch.Tap
	InputChannels int       // -1 when unknown
	Std           []float64 // the input normalization's std per channel (1 each when unknown)
	// Weight (K x D) and Bias (K) are the classifier's; nil when gaia found none.
	Weight, Bias *torch.Tensor
	Fit          *Fit // nil without one
}

// classifier returns the classifier's weight and bias, or an error saying
// the model has none.
func (m modelInfo) classifier() (w, b *torch.Tensor, err error) {
	if m.Weight == nil {
		return nil, nil, errors.New("no classifier weight found in the model (a Linear, or a 1x1 convolution on a pooled map)")
	}
	return m.Weight, m.Bias, nil
}

// fit returns the fit, or an error saying the detector needs one.
func (m modelInfo) fit() (*Fit, error) {
	if m.Fit == nil {
		return nil, fmt.Errorf("%w: statistics of in-distribution data (gaia fit makes a fit file)", ErrNeedsFit)
	}
	return m.Fit, nil
}

// planBuffer is data a plan puts on the model's device once, for its heads:
// a head's Buf[i] = torch.Buffer(j) names the plan's j-th buffer.
type planBuffer struct {
	F32   []float32
	F64   []float64
	Shape []int
}

// Plan is one detector's part of a Scorer's batch.
type detectorPlan struct {
	Passes []torch.Pass // backward passes (and perturbed second forwards)
	Values []int        // tap indices whose values it reads
	// Taps are the taps its tap selection setting chose (recorded with the
	// scores, pinned in gates); nil without one.
	Taps []torch.Tap
	// Uses says which taps it reads, for logs and reports ("" when it reads
	// only the logits).
	Uses string
	// Heads are computations after the forward on the device, reading the
	// plan's Buffers.
	Heads   []torch.Head
	Buffers []planBuffer
	// Warnings say what the plan had to leave out (a class without fit samples).
	Warnings []string
	// Score fills out (one score per sample, higher = more OOD) from the
	// batch's outputs.
	Score func(o *batchOutputs, out []float64) error
}

// Outputs are one batch's results as one detector sees them.
type batchOutputs struct {
	Logits *torch.Tensor     // N x K
	Pred   []int             // argmax of the logits
	Prob   []float64         // its softmax probability
	Values []*torch.Tensor   // in Plan.Values order
	Grads  [][]*torch.Tensor // in Plan.Passes order: Grads[p][i] is pass p at its i-th tap
	Heads  []*torch.Tensor   // in Plan.Heads order
}

// detectors is the registry, in the order "all", score files and reports
// list them. (Set in init: the entries' Plan functions read settings
// through the registry, which a variable initializer may not.)
var detectors []*detectorSpec

func init() {
	detectors = []*detectorSpec{gaiaA, gaiaZ, msp, maxLogit, energy, odin, gradNorm,
		mahalanobis, react, knn, vim, ash, dice, klm, gaiaZFast}
}

func allNames() []string { return groupNames("") }

// groupNames lists the detectors of a group ("" for all, "features").
func groupNames(group string) []string {
	var out []string
	for _, d := range detectors {
		if !d.ByName && d.Group == group {
			out = append(out, d.Name)
		}
	}
	return out
}

// lookup finds a detector by name.
func lookup(name string) (*detectorSpec, error) {
	for _, d := range detectors {
		if d.Name == name {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w %q (known: %s; groups all, features, every)", ErrUnknownDetector, name, strings.Join(registeredNames(), ", "))
}

// registeredNames lists every detector's name, in registry order.
func registeredNames() []string {
	var out []string
	for _, d := range detectors {
		out = append(out, d.Name)
	}
	return out
}

// DetectorInfo describes a detector of the registry.
type DetectorInfo struct {
	Name    string
	Summary string // what the score is, in one line
	// Group is the group that lists it: "all" (GAIA and the baselines that
	// need only the model), "features" (the feature-based detectors), or
	// "" for one offered by name only.
	Group    string
	NeedsFit bool          // it scores with a fit of in-distribution data
	Settings []SettingInfo // the settings it reads
}

// SettingInfo describes a detector setting.
type SettingInfo struct {
	Name    string // its key in Settings, gate files and configs
	Help    string
	Default any      // a float64, int or string: the setting's kind
	Readers []string // the detectors that read it
	Taps    bool     // a tap selection (SelectTaps), pinned by gates
}

// Detectors describes every detector, in registry order.
func Detectors() []DetectorInfo {
	var out []DetectorInfo
	for _, d := range detectors {
		info := DetectorInfo{Name: d.Name, Summary: d.Summary, Group: d.Group, NeedsFit: d.NeedsFit}
		switch {
		case d.ByName:
			info.Group = ""
		case d.Group == "":
			info.Group = "all"
		}
		for _, st := range d.Settings {
			info.Settings = append(info.Settings, st.info())
		}
		out = append(out, info)
	}
	return out
}

// AllSettings describes every detector setting once, in registry order.
func AllSettings() []SettingInfo {
	var out []SettingInfo
	for _, st := range allSettings() {
		out = append(out, st.info())
	}
	return out
}

func (st *setting) info() SettingInfo {
	return SettingInfo{Name: st.Name, Help: st.Help, Default: st.Default, Readers: readersOf(st), Taps: st.Taps}
}

// ParseDetectors reads a comma-separated list of detector names and groups
// ("all": GAIA and the baselines that need only the model; "features": the
// feature-based detectors; "every": both), keeping the order given and
// dropping repeats.
func ParseDetectors(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, d := range strings.Split(s, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		var names []string
		switch d {
		case "":
			continue
		case "all":
			names = allNames()
		case "features":
			names = groupNames("features")
		case "every":
			names = append(allNames(), groupNames("features")...)
		default:
			if _, err := lookup(d); err != nil {
				return nil, err
			}
			names = []string{d}
		}
		for _, n := range names {
			if !seen[n] {
				out = append(out, n)
				seen[n] = true
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no detector named")
	}
	return out, nil
}

// allSettings lists every registered setting once, in registry order.
func allSettings() []*setting { return settingsOf(registeredNames()) }

// settingsOf lists the settings the named detectors read, once each.
func settingsOf(names []string) []*setting {
	var out []*setting
	seen := map[*setting]bool{}
	for _, d := range detectors {
		want := false
		for _, n := range names {
			want = want || n == d.Name
		}
		if !want {
			continue
		}
		for _, s := range d.Settings {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// readersOf names the detectors that read a setting.
func readersOf(st *setting) []string {
	var out []string
	for _, d := range detectors {
		for _, s := range d.Settings {
			if s == st {
				out = append(out, d.Name)
			}
		}
	}
	return out
}

// tapSetting is the tap selection setting a detector reads, if any.
func (d *detectorSpec) tapSetting() *setting {
	for _, s := range d.Settings {
		if s.Taps {
			return s
		}
	}
	return nil
}
