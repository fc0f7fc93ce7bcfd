package gaia

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/gaia/metrics"
)

// Gate is a calibrated decision: a sample whose score is above Threshold is
// flagged out-of-distribution; at or below, it is accepted. gaia calibrate
// writes it as a gate file; OpenGate applies it.
type Gate struct {
	Detector    string  `json:"detector"`
	Threshold   float64 `json:"threshold"`
	TargetTPR   float64 `json:"target_tpr"`
	MeasuredTPR float64 `json:"measured_tpr"` // on the calibration set
	NumID       int     `json:"n_id"`
	Model       string  `json:"model"`
	ModelSHA256 string  `json:"model_sha256"`
	// Settings are the detector's settings as calibrated, its tap selection
	// pinned to the taps it chose (Taps).
	Settings Settings `json:"settings,omitempty"`
	Taps     []string `json:"taps,omitempty"`
	// Fit is the fit file the detector was calibrated with, if it needs one.
	Fit *FitRef `json:"fit,omitempty"`
	// Transform is the calibration data's preprocessing (data spec options
	// such as "resize=32x32"): OpenGate applies it to the images it gets.
	Transform   string `json:"transform,omitempty"`
	Calibration string `json:"calibration_scores"`
	Created     string `json:"created"`
}

// gateKeys are the fields every gate file has.
var gateKeys = []string{"detector", "threshold", "model_sha256"}

// UnmarshalJSON reads a gate, refusing one without a required field
// (a missing threshold would read as 0 and accept every MSP or Energy
// score).
func (g *Gate) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, gateKeys...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidGate, err)
	}
	type plain Gate
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*g = Gate(p)
	return nil
}

// check refuses a gate that no calibration makes.
func (g *Gate) check() error {
	d, err := lookup(g.Detector)
	switch {
	case g.Detector == "":
		return fmt.Errorf("%w: no detector", ErrInvalidGate)
	case err != nil:
		return err
	case math.IsNaN(g.Threshold) || math.IsInf(g.Threshold, 0):
		return fmt.Errorf("%w: threshold %v is not a finite number", ErrInvalidGate, g.Threshold)
	case g.ModelSHA256 == "":
		return fmt.Errorf("%w: no model_sha256: a gate names the model it was calibrated on", ErrInvalidGate)
	case d.NeedsFit && (g.Fit == nil || g.Fit.SHA256 == ""):
		return fmt.Errorf("%w: %s needs a fit, and the gate names none (fit.sha256)", ErrInvalidGate, g.Detector)
	}
	if err := g.Settings.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidGate, err)
	}
	return nil
}

// pinTaps sets the detector's tap selection to exactly the gate's taps.
func (g *Gate) pinTaps() {
	d, err := lookup(g.Detector)
	if err != nil || len(g.Taps) == 0 {
		return
	}
	if st := d.tapSetting(); st != nil {
		g.Settings[st.Name] = strings.Join(g.Taps, ",")
	}
}

// Accept reports whether a score passes the gate (looks in-distribution).
func (g *Gate) Accept(score float64) bool { return score <= g.Threshold } // NaN: false

// NewGate calibrates a gate for one detector of an ID score file, taking the
// model's identity, the detector's settings and its taps from the file's
// provenance.
func NewGate(sf *ScoreFile, meta *ScoreMeta, detector string, tpr float64) (*Gate, error) {
	d, err := lookup(detector)
	if err != nil {
		return nil, err
	}
	col, err := sf.Column(detector)
	if err != nil {
		return nil, err
	}
	th, measured, err := metrics.Calibrate(col, tpr)
	if err != nil {
		return nil, err
	}
	g := &Gate{Detector: detector, Threshold: th, TargetTPR: tpr, MeasuredTPR: measured, NumID: len(col),
		Model: meta.Model, ModelSHA256: meta.ModelSHA256, Calibration: sf.Path,
		Settings: Settings{}, Taps: meta.Taps[detector],
		Created: time.Now().UTC().Format(time.RFC3339)}
	for _, st := range d.Settings {
		if v, ok := meta.Settings[st.Name]; ok {
			g.Settings[st.Name] = v
		}
	}
	g.pinTaps()
	if d.NeedsFit {
		if meta.Fit == nil {
			return nil, fmt.Errorf("%s needs a fit, and the provenance of %s names none", detector, sf.Path)
		}
		g.Fit = meta.Fit
	}
	if meta.Data != "" {
		if g.Transform, err = data.TransformOptions(meta.Data); err != nil {
			return nil, fmt.Errorf("score provenance of %s: %w", sf.Path, err)
		}
	}
	return g, nil
}

// LoadGate reads a gate file, refusing one without a required field
// (detector, threshold, model_sha256) or with a value no calibration makes.
func LoadGate(path string) (*Gate, error) {
	g := &Gate{}
	if err := readJSON("gate", path, g); err != nil {
		return nil, err
	}
	if err := g.check(); err != nil {
		return nil, fmt.Errorf("gate %s: %w", path, err)
	}
	return g, nil
}

// AcceptedFraction is the fraction of scores the gate accepts.
func (g *Gate) AcceptedFraction(scores []float64) float64 {
	n := 0
	for _, s := range scores {
		if g.Accept(s) {
			n++
		}
	}
	return float64(n) / float64(len(scores))
}

// Gated is a model opened to apply a gate (OpenGate). It is safe for
// concurrent use, as its Model is.
type Gated struct {
	m    *Model
	gate Gate
}

// Verdict is the gate's decision on one input, with the model's prediction
// and every detector's score.
type Verdict struct {
	Accept    bool    // in-distribution by the gate: Score <= Threshold (never for NaN)
	Score     float64 // the gate's detector's score
	Threshold float64
	Pred      int
	Prob      float64
	Class     string             // the predicted class's name, if MODEL.json has class names
	Scores    map[string]float64 // every detector scored, the gate's included
}

// OpenGate opens the model at modelPath to apply gate g, with the gate's
// detector, its settings and taps as calibrated, its fit and its
// preprocessing (opt.Transform, else the gate's, else MODEL.json's), and
// makes every check that the scores are the ones the threshold was
// calibrated on: the model file's SHA-256, the fit's, the taps its selection
// gives, and opt's settings of the gate's detector must all be the gate's;
// a difference is a *MismatchError saying what differs. opt.Detectors are
// scored besides the gate's detector (nil: the gate's alone); opt.Fit, if
// given, must be the gate's fit.
func OpenGate(ctx context.Context, modelPath string, g *Gate, opt Options) (*Gated, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil", ErrInvalidGate)
	}
	gate := *g
	gate.Settings = g.Settings.Clone()
	gate.Taps = append([]string(nil), g.Taps...)
	name := gate.Detector
	if gate.Calibration != "" {
		name += " calibrated on " + gate.Calibration
	}
	if err := gate.check(); err != nil {
		return nil, fmt.Errorf("gate (%s): %w", name, err)
	}
	det, _ := lookup(gate.Detector)
	mismatch := func(what, calibrated, opened string) error {
		return &MismatchError{What: what, Gate: name, Calibrated: calibrated, Opened: opened}
	}
	// Settings: the gate's own for its detector; the caller's may not differ.
	settings := opt.Settings.Clone()
	for _, st := range det.Settings {
		want, calibrated := gate.Settings[st.Name]
		if !calibrated {
			want = st.Default
		}
		if v, ok := settings[st.Name]; ok && formatSetting(v) != formatSetting(want) {
			return nil, mismatch("settings", fmt.Sprintf("%s=%s", st.Name, formatSetting(want)), fmt.Sprintf("%s=%s", st.Name, formatSetting(v)))
		}
		settings[st.Name] = want
	}
	opt.Settings = settings
	dets := []string{gate.Detector}
	if len(opt.Detectors) > 0 {
		more, err := ParseDetectors(strings.Join(opt.Detectors, ","))
		if err != nil {
			return nil, err
		}
		for _, d := range more {
			if d != gate.Detector {
				dets = append(dets, d)
			}
		}
	}
	opt.Detectors = dets
	if opt.Fit == "" && gate.Fit != nil {
		opt.Fit = gate.Fit.Path
	}
	if opt.Transform == "" {
		opt.Transform = gate.Transform
	}
	m, err := prepare(modelPath, opt, dets)
	if err != nil {
		return nil, err
	}
	if m.sha != gate.ModelSHA256 {
		return nil, mismatch("model", fmt.Sprintf("%s (sha256 %.12s)", gate.Model, gate.ModelSHA256), fmt.Sprintf("%s (sha256 %.12s)", modelPath, m.sha))
	}
	if gate.Fit != nil && gate.Fit.SHA256 != m.fitSHA {
		return nil, mismatch("fit", fmt.Sprintf("%s (sha256 %.12s)", gate.Fit.Path, gate.Fit.SHA256), fmt.Sprintf("%q (sha256 %.12s)", m.opt.Fit, m.fitSHA))
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	if len(gate.Taps) > 0 {
		if taps := m.Taps(gate.Detector); strings.Join(taps, ",") != strings.Join(gate.Taps, ",") {
			m.Close()
			return nil, mismatch("taps", fmt.Sprintf("%d taps (%s)", len(gate.Taps), brief(gate.Taps)), fmt.Sprintf("%d taps (%s)", len(taps), brief(taps)))
		}
	}
	return &Gated{m: m, gate: gate}, nil
}

// brief lists at most four names.
func brief(names []string) string {
	if len(names) > 4 {
		return strings.Join(names[:4], ", ") + fmt.Sprintf(", ... %d more", len(names)-4)
	}
	return strings.Join(names, ", ")
}

// Check scores images as Model.ScoreImages does and applies the gate to
// each.
func (g *Gated) Check(ctx context.Context, images [][]byte) ([]Verdict, error) {
	res, err := g.m.ScoreImages(ctx, images)
	if err != nil {
		return nil, err
	}
	return g.verdicts(res), nil
}

// CheckTensor scores inputs as Model.ScoreTensor does and applies the gate
// to each.
func (g *Gated) CheckTensor(ctx context.Context, x []float32, n int) ([]Verdict, error) {
	res, err := g.m.ScoreTensor(ctx, x, n)
	if err != nil {
		return nil, err
	}
	return g.verdicts(res), nil
}

func (g *Gated) verdicts(res []Result) []Verdict {
	out := make([]Verdict, len(res))
	for i, r := range res {
		sc := r.Scores[g.gate.Detector]
		out[i] = Verdict{Accept: g.gate.Accept(sc), Score: sc, Threshold: g.gate.Threshold,
			Pred: r.Pred, Prob: r.Prob, Class: r.Class, Scores: r.Scores}
	}
	return out
}

// Gate is the gate applied (a copy).
func (g *Gated) Gate() Gate {
	c := g.gate
	c.Settings = g.gate.Settings.Clone()
	c.Taps = append([]string(nil), g.gate.Taps...)
	return c
}

// Model is the model the gate runs on: its detectors (the gate's first),
// metadata and identity, and scoring without the gate.
func (g *Gated) Model() *Model { return g.m }

// Close closes the model (Model.Close).
func (g *Gated) Close() error { return g.m.Close() }
