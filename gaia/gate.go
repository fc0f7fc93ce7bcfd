package gaia

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
)

// ScoreMeta is the provenance of a score file, written beside it as
// FILE.json: what made the scores, so that a gate calibrated on them can name
// its model, settings and taps.
type ScoreMeta struct {
	Model       string   `json:"model"`
	ModelSHA256 string   `json:"model_sha256"`
	Data        string   `json:"data"`
	Detectors   []string `json:"detectors"`
	// Settings are what the detectors read, defaults filled in.
	Settings Settings `json:"settings"`
	// Taps are, per detector with a tap selection, the taps it chose.
	Taps map[string][]string `json:"taps,omitempty"`
	// Fit is the fit file the feature-based detectors scored with.
	Fit      *FitRef `json:"fit,omitempty"`
	Device   string  `json:"device"`
	LibTorch string  `json:"libtorch"`
	Rows     int     `json:"rows"`
	Created  string  `json:"created"`
	// Arch, Input (C, H, W) and ClassNames are the model's (MODEL.json):
	// what a report needs to show the samples as the model saw them and
	// name their predicted classes without the model.
	Arch       string   `json:"arch,omitempty"`
	Input      []int    `json:"input,omitempty"`
	ClassNames []string `json:"class_names,omitempty"`
}

// UnmarshalJSON reads provenance, also in its earlier form (settings and
// taps under keys of their own, Setting.Legacy).
func (m *ScoreMeta) UnmarshalJSON(b []byte) error {
	type plain ScoreMeta
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = ScoreMeta(p)
	if m.Settings == nil {
		m.Settings = Settings{}
	}
	if m.Taps == nil {
		m.Taps = map[string][]string{}
	}
	return readLegacy(b, registeredNames(), m.Settings, m.Taps)
}

// FitRef names a fit file and its SHA-256.
type FitRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// ScoreMetaPath is where a score file's provenance lives.
func ScoreMetaPath(scoreFile string) string { return scoreFile + ".json" }

// ReadScoreMeta reads the provenance beside a score file.
func ReadScoreMeta(scoreFile string) (*ScoreMeta, error) {
	m := &ScoreMeta{}
	if err := readJSON("score provenance", ScoreMetaPath(scoreFile), m); err != nil {
		return nil, err
	}
	return m, nil
}

// Gate is a calibrated decision: a sample whose score is above Threshold is
// flagged out-of-distribution; at or below, it is accepted.
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
	// such as "resize=32x32"): gaia serve applies it to the images it gets.
	Transform   string `json:"transform,omitempty"`
	Calibration string `json:"calibration_scores"`
	Created     string `json:"created"`
}

// UnmarshalJSON reads a gate, also in its earlier form (settings under keys
// of their own, Setting.Legacy; the taps without their setting).
func (g *Gate) UnmarshalJSON(b []byte) error {
	type plain Gate
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*g = Gate(p)
	if g.Settings == nil {
		g.Settings = Settings{}
		if err := readLegacy(b, []string{g.Detector}, g.Settings, nil); err != nil {
			return err
		}
		g.pinTaps()
	}
	return nil
}

// pinTaps sets the detector's tap selection to exactly the gate's taps.
func (g *Gate) pinTaps() {
	d, err := Lookup(g.Detector)
	if err != nil || len(g.Taps) == 0 {
		return
	}
	if st := d.tapSetting(); st != nil {
		g.Settings[st.Name] = strings.Join(g.Taps, ",")
	}
}

// Accept reports whether a score passes the gate (looks in-distribution).
func (g *Gate) Accept(score float64) bool { return score <= g.Threshold } // NaN: false

// Calibrate returns the smallest threshold that accepts at least tpr of the
// in-distribution scores id, NaN counting as +Inf (never accepted). A
// threshold that would be +Inf (more than 1 - tpr of the scores NaN or
// +Inf) is refused: no finite threshold accepts that fraction.
func Calibrate(id []float64, tpr float64) (threshold, measured float64, err error) {
	if len(id) == 0 {
		return 0, 0, fmt.Errorf("calibrate: %w", ErrEmptySet)
	}
	if !(tpr > 0 && tpr <= 1) {
		return 0, 0, fmt.Errorf("calibrate: tpr %v must be in (0, 1]", tpr)
	}
	s, nan := rankNaN(id)
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	k := int(math.Ceil(tpr*float64(len(s)) - 1e-9))
	k = max(1, min(len(s), k))
	threshold = s[k-1]
	if math.IsInf(threshold, 0) {
		inf := len(s) - sort.Search(len(s), func(i int) bool { return math.IsInf(s[i], 1) })
		return 0, 0, fmt.Errorf("calibrate: %d of %d in-distribution scores are NaN (%d) or +Inf: no finite threshold accepts %.4g of them", inf, len(s), nan, tpr)
	}
	n := sort.Search(len(s), func(i int) bool { return s[i] > threshold })
	return threshold, float64(n) / float64(len(s)), nil
}

// NewGate calibrates a gate for one detector of an ID score file, taking the
// model's identity, the detector's settings and its taps from the file's
// provenance.
func NewGate(sf *ScoreFile, meta *ScoreMeta, detector string, tpr float64) (*Gate, error) {
	d, err := Lookup(detector)
	if err != nil {
		return nil, err
	}
	col, err := sf.Column(detector)
	if err != nil {
		return nil, err
	}
	th, measured, err := Calibrate(col, tpr)
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

// LoadGate reads a gate file.
func LoadGate(path string) (*Gate, error) {
	g := &Gate{}
	if err := readJSON("gate", path, g); err != nil {
		return nil, err
	}
	if g.Detector == "" || math.IsNaN(g.Threshold) {
		return nil, fmt.Errorf("gate %s: no detector or threshold", path)
	}
	if _, err := Lookup(g.Detector); err != nil {
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

// FileSHA256 is the hex SHA-256 of a file: a model's identity.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteJSON writes v as indented JSON, atomically.
func WriteJSON(path string, v any) error {
	raw, err := JSONFile(v)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, raw)
}

// JSONFile is v as WriteJSON writes it: indented, with a final newline.
func JSONFile(v any) ([]byte, error) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}
