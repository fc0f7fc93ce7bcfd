package gaia

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// ModelConfig says which model to open, on which devices, and what to
// score with it.
type ModelConfig struct {
	Path string
	// Device is auto (the default), cpu, cuda, cuda:N, cuda:all or a list
	// (cuda:0,cuda:2): one model replica each.
	Device    string
	Detectors []string // none: replicas without scorers (gaia speed)
	Settings  Settings
	// Input ("3x32x32"), Mean and Std ("0.5,0.5,0.5") override MODEL.json.
	Input, Mean, Std string
	// Fit is a fit file (gaia fit) for the detectors that need one.
	Fit string
}

// Model is an opened model: its metadata (MODEL.json, with the overrides
// of its config), its identity, and one replica with a scorer per device.
// It is the one way every command opens a model.
type Model struct {
	Config   ModelConfig
	Meta     *Meta // Arch is "" when there is no MODEL.json
	SHA256   string
	Replicas []*torch.Module
	Scorers  []*Scorer // one per replica, when Config.Detectors names any
	Fit      *Fit      // Config.Fit's, when given
	FitSHA   string
}

// OpenModel reads the model's metadata, hashes it, and loads one replica
// per device with its scorer.
func OpenModel(cfg ModelConfig) (*Model, error) {
	m, err := ReadModel(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Load(); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadModel is OpenModel without loading anything into LibTorch: the
// metadata and the hash (what a shard checks before it decides to score).
func ReadModel(cfg ModelConfig) (*Model, error) {
	if cfg.Device == "" {
		cfg.Device = "auto"
	}
	if cfg.Settings == nil {
		cfg.Settings = Settings{}
	}
	if _, err := os.Stat(cfg.Path); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	meta, err := LoadMeta(cfg.Path)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && cfg.Input != "":
		meta = &Meta{}
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("model %s: %w; export the model with scripts/export.py, or give --input CxHxW (and --mean, --std)", cfg.Path, err)
	default:
		return nil, fmt.Errorf("model %s: %w", cfg.Path, err)
	}
	if err := applyOverrides(meta, cfg); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Meta: meta}
	if m.SHA256, err = FileSHA256(cfg.Path); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if cfg.Fit != "" {
		if m.Fit, err = ReadFit(cfg.Fit); err != nil {
			return nil, err
		}
		if m.FitSHA, err = FileSHA256(cfg.Fit); err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	return m, nil
}

// applyOverrides puts --input, --mean and --std into meta and checks the
// result as MODEL.json itself is checked.
func applyOverrides(meta *Meta, cfg ModelConfig) error {
	if cfg.Input != "" {
		chw, err := ParseCHW(cfg.Input)
		if err != nil {
			return fmt.Errorf("--input %w", err)
		}
		meta.InputSize = chw[:]
	}
	c := 0
	if len(meta.InputSize) == 3 {
		c = meta.InputSize[0]
	}
	for _, o := range []struct {
		flag, v string
		dst     *[]float64
		def     float64
	}{{"--mean", cfg.Mean, &meta.Mean, 0}, {"--std", cfg.Std, &meta.Std, 1}} {
		if o.v != "" {
			f, err := parseFloats(o.v)
			if err != nil {
				return fmt.Errorf("%s %w", o.flag, err)
			}
			*o.dst = f
		} else if *o.dst == nil && c > 0 {
			*o.dst = make([]float64, c)
			for i := range *o.dst {
				(*o.dst)[i] = o.def
			}
		}
	}
	if err := meta.check(); err != nil {
		what := "model metadata " + MetaPath(cfg.Path)
		switch {
		case cfg.Path == "":
			what = "--input, --mean and --std"
		case cfg.Input != "" || cfg.Mean != "" || cfg.Std != "":
			what = "--input, --mean and --std with " + what
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ApplyInput fills meta (empty, or a model's) from --input, --mean and
// --std (mean 0 and std 1 where neither gives them), checked as MODEL.json
// is: for commands that take an input size without a model.
func ApplyInput(meta *Meta, input, mean, std string) error {
	return applyOverrides(meta, ModelConfig{Input: input, Mean: mean, Std: std})
}

// ParseCHW parses "3x32x32".
func ParseCHW(s string) ([3]int, error) {
	var out [3]int
	f := strings.Split(s, "x")
	if len(f) != 3 {
		return out, fmt.Errorf("%q: want CxHxW, such as 3x32x32", s)
	}
	for i, v := range f {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return out, fmt.Errorf("%q: want CxHxW with positive numbers", s)
		}
		out[i] = n
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a list of numbers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// Load loads one replica per device, with a scorer each. CPU replicas
// share the cores.
func (m *Model) Load() error {
	devs, err := torch.Devices(m.Config.Device, torch.CUDADeviceCount())
	if err != nil {
		return err
	}
	cpus := 0
	for _, d := range devs {
		if d == "cpu" {
			cpus++
		}
	}
	for _, d := range devs {
		r, err := torch.Load(m.Config.Path, d)
		if err != nil {
			m.Close()
			return err
		}
		m.Replicas = append(m.Replicas, r)
		if m.Fit != nil {
			if err := m.Fit.CheckFor(m.SHA256, r.Taps()); err != nil {
				m.Close()
				return err
			}
		}
		if cpus > 1 && d == "cpu" {
			r.SetThreads(max(1, torch.NumThreads()/cpus))
		}
		if len(m.Config.Detectors) == 0 {
			continue
		}
		s, err := NewScorer(r, ScorerConfig{Detectors: m.Config.Detectors, Settings: m.Config.Settings, Std: m.Meta.Std, Fit: m.Fit})
		if err != nil {
			m.Close()
			return err
		}
		m.Scorers = append(m.Scorers, s)
	}
	return nil
}

// Close frees every replica.
func (m *Model) Close() error {
	for _, s := range m.Scorers {
		s.Close()
	}
	for _, r := range m.Replicas {
		r.Close()
	}
	m.Replicas, m.Scorers = nil, nil
	return nil
}

// Scorer is the first replica's scorer (nil before Load or without detectors).
func (m *Model) Scorer() *Scorer {
	if len(m.Scorers) == 0 {
		return nil
	}
	return m.Scorers[0]
}

// Devices names the replicas' devices ("cuda:0,cuda:1").
func (m *Model) Devices() string {
	var d []string
	for _, r := range m.Replicas {
		d = append(d, r.Device())
	}
	return strings.Join(d, ",")
}

// Input is the model's input size, C, H, W.
func (m *Model) Input() (c, h, w int) {
	return m.Meta.InputSize[0], m.Meta.InputSize[1], m.Meta.InputSize[2]
}

// Dataset is a data spec opened for a model: the source and the transform
// that makes its samples the model's inputs.
type Dataset struct {
	Spec      *data.Spec
	Source    data.Source
	Transform *data.Transform
}

// Dataset opens a data spec for the model; a spec that names no transform
// of its own takes the model's (MODEL.json's transform).
func (m *Model) Dataset(spec string) (*Dataset, error) {
	sp, err := data.ParseSpec(data.WithTransform(spec, m.Meta.Transform))
	if err != nil {
		return nil, err
	}
	src, err := data.Open(sp)
	if err != nil {
		return nil, err
	}
	c, h, w := m.Input()
	tf, err := data.NewTransform(sp, c, h, w, m.Meta.Mean, m.Meta.Std)
	if err != nil {
		return nil, err
	}
	return &Dataset{Spec: sp, Source: src, Transform: tf}, nil
}

// ScoreConfig is one line naming everything besides the model and data
// that decides a run's scores: settings and input overrides. Shards of one
// job must agree on it.
func (m *Model) ScoreConfig() string {
	c := m.Config
	return fmt.Sprintf("%s input=%q mean=%q std=%q fit=%q", c.Settings.For(c.Detectors).Canonical(), c.Input, c.Mean, c.Std, m.FitSHA)
}

// Provenance is what a score file's FILE.json (or a shard's manifest) says
// of scores of the data spec made by this model: its identity, the data,
// the detectors, their settings and taps.
func (m *Model) Provenance(spec string, rows int) *ScoreMeta {
	meta := &ScoreMeta{Model: m.Config.Path, ModelSHA256: m.SHA256, Data: spec, Detectors: m.Config.Detectors,
		Settings: m.Config.Settings.For(m.Config.Detectors), Taps: map[string][]string{},
		Device: m.Devices(), LibTorch: torch.Version(), Rows: rows, Created: time.Now().UTC().Format(time.RFC3339)}
	if m.Meta != nil {
		meta.Arch, meta.ClassNames = m.Meta.Arch, m.Meta.ClassNames
		c, h, w := m.Input()
		meta.Input = []int{c, h, w}
	}
	if m.Fit != nil {
		meta.Fit = &FitRef{Path: m.Config.Fit, SHA256: m.FitSHA}
	}
	if s := m.Scorer(); s != nil {
		for _, d := range s.Detectors() {
			if names := s.TapNames(d); len(names) > 0 {
				meta.Taps[d] = names
			}
		}
	}
	return meta
}
