package gaia

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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

// UnmarshalJSON reads provenance, refusing one without the fields every
// provenance has.
func (m *ScoreMeta) UnmarshalJSON(b []byte) error {
	if err := requireKeys(b, "model_sha256", "data", "detectors", "settings", "rows"); err != nil {
		return err
	}
	type plain ScoreMeta
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = ScoreMeta(p)
	if m.Taps == nil {
		m.Taps = map[string][]string{}
	}
	return nil
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

// requireKeys refuses a JSON object that lacks one of keys (or is null
// there), naming them: a file gaia wrote always has them, and a default in
// their place would change what the file means.
func requireKeys(b []byte, keys ...string) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var missing []string
	for _, k := range keys {
		if v, ok := raw[k]; !ok || string(v) == "null" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return fmt.Errorf("missing required field %s", strings.Join(missing, ", "))
}
