package gaia

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// Meta describes a model file: what scripts/export.py writes beside it as
// MODEL.json.
type Meta struct {
	Arch         string    `json:"arch"`
	NumClasses   int       `json:"num_classes"`
	InputSize    []int     `json:"input_size"` // C, H, W
	Mean         []float64 `json:"mean"`
	Std          []float64 `json:"std"`
	ClassNames   []string  `json:"class_names"`
	ExportedWith string    `json:"exported_with"`
	TorchVersion string    `json:"torch_version"`
	Weights      string    `json:"weights"`
	// Transform is the image preprocessing the model was made for, as data
	// spec options ("resize=480x480" for BiT, "resize=256,center-crop=224"):
	// applied to a dataset whose spec names no transform of its own.
	Transform string `json:"transform,omitempty"`
}

// MetaPath is where a model's Meta lives: its path with .json for the extension.
func MetaPath(modelPath string) string {
	if i := strings.LastIndexByte(modelPath, '.'); i > strings.LastIndexByte(modelPath, '/') {
		return modelPath[:i] + ".json"
	}
	return modelPath + ".json"
}

// readJSON decodes the JSON file at path into v; errors name what it is
// ("model metadata") and, once it exists, the file.
func readJSON(what, path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return nil
}

// MinStd is the smallest normalization std accepted (MODEL.json, Options.Std):
// below it the normalized inputs overflow float32 models into NaN scores.
const MinStd = 1e-6

// LoadMeta reads and checks the Meta beside a model file.
func LoadMeta(modelPath string) (*Meta, error) {
	p := MetaPath(modelPath)
	m := &Meta{}
	if err := readJSON("model metadata", p, m); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("model metadata %s: %w", p, err)
	}
	return m, nil
}

func (m *Meta) check() error {
	if len(m.InputSize) != 3 {
		return fmt.Errorf("input_size %v: want [C, H, W]", m.InputSize)
	}
	for _, d := range m.InputSize {
		if d <= 0 {
			return fmt.Errorf("input_size %v has a non-positive entry", m.InputSize)
		}
	}
	c := m.InputSize[0]
	if len(m.Mean) != c || len(m.Std) != c {
		return fmt.Errorf("mean and std need %d entries each (one per channel), have %d and %d", c, len(m.Mean), len(m.Std))
	}
	for _, s := range m.Std {
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("std %v has a non-positive or non-finite entry", m.Std)
		}
		if s < MinStd {
			return fmt.Errorf("std %v has an entry below %g: it would scale the inputs by more than 1/%g, past what float32 models compute (NaN scores)", m.Std, MinStd, MinStd)
		}
	}
	for _, v := range m.Mean {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("mean %v has a non-finite entry", m.Mean)
		}
	}
	if m.NumClasses > 0 && len(m.ClassNames) > 0 && len(m.ClassNames) != m.NumClasses {
		return fmt.Errorf("%d class names for %d classes", len(m.ClassNames), m.NumClasses)
	}
	return nil
}

// clone is a deep copy.
func (m Meta) clone() Meta {
	m.InputSize = append([]int(nil), m.InputSize...)
	m.Mean = append([]float64(nil), m.Mean...)
	m.Std = append([]float64(nil), m.Std...)
	m.ClassNames = append([]string(nil), m.ClassNames...)
	return m
}
