// Package bench runs a whole OOD benchmark from one small config file: one
// model, an in-distribution set, named OOD sets, detectors; it writes a report
// folder with the table (report.md), metrics.csv, metrics.json, one score file
// per set and plots, reusing score files whose inputs did not change.
package bench

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gaia-ood/gaia/gaia"
)

// Set is a named dataset.
type Set struct {
	Name string `yaml:"name" json:"name"`
	Data string `yaml:"data" json:"data"` // a data spec, ${VAR} expanded from the environment
}

// FitSet is a bench config's fit: a data spec with labels, and how many
// feature vectors to keep.
type FitSet struct {
	Data      string `yaml:"data" json:"data"`
	KNNSample string `yaml:"knn_sample" json:"knn_sample"`
	Seed      int64  `yaml:"seed" json:"seed"`
}

// Config is a benchmark, as YAML or JSON:
//
//	name: mnist-demo
//	model: models/mnist_resnet.pt
//	id: {name: MNIST, data: "mnist:${MNIST_DIR}/t10k-images-idx3-ubyte.gz"}
//	ood:
//	  - {name: Fashion-MNIST, data: "mnist:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"}
//	  - {name: Uniform, data: "noise:uniform,n=2000,shape=1x28x28,seed=1"}
//	detectors: all
//	batch: 128
//	device: auto
//	out: build/demo-report
//
// Paths are relative to the working directory. Optional: fit (data: SPEC,
// knn_sample, seed: what the feature-based detectors learn from), settings (any
// detector setting by its flag name, such as {taps-z: layer3,
// energy-temperature: 1}), workers, skip_bad, gallery (images per gallery of
// report.html, 16 by default, -1 for none), intervals (true by default:
// every metric with its interval, DeLong's for AUROC and a percentile
// bootstrap for the rest; false: point estimates alone), ci_level (0.95),
// bootstrap (resamples, 2000), bootstrap_seed (1), groups (OOD sets
// averaged together: [{name: near, sets: [A, B]}, {name: far, sets: [C]}]).
type Config struct {
	Name string `yaml:"name" json:"name"`
	// Protocol says, in the report, which published protocol the config
	// follows and how (free text).
	Protocol  string         `yaml:"protocol" json:"protocol"`
	Model     string         `yaml:"model" json:"model"`
	ID        Set            `yaml:"id" json:"id"`
	OOD       []Set          `yaml:"ood" json:"ood"`
	Detectors string         `yaml:"detectors" json:"detectors"`
	Batch     int            `yaml:"batch" json:"batch"`
	Device    string         `yaml:"device" json:"device"`
	Out       string         `yaml:"out" json:"out"`
	Settings  map[string]any `yaml:"settings" json:"settings"`
	// Fit is the in-distribution data the feature-based detectors are fitted
	// on (gaia fit), once, and again only when model or data change.
	Fit     *FitSet `yaml:"fit" json:"fit"`
	Workers int     `yaml:"workers" json:"workers"`
	// Gallery is how many images each gallery of report.html shows (0:
	// 16; -1: no galleries).
	Gallery int  `yaml:"gallery" json:"gallery"`
	SkipBad bool `yaml:"skip_bad" json:"skip_bad"`
	// Intervals, their level, resamples and seed, and the groups of sets
	// (gaia.EvalOptions).
	Intervals     *bool        `yaml:"intervals" json:"intervals"`
	CILevel       float64      `yaml:"ci_level" json:"ci_level"`
	Bootstrap     int          `yaml:"bootstrap" json:"bootstrap"`
	BootstrapSeed uint64       `yaml:"bootstrap_seed" json:"bootstrap_seed"`
	Groups        []gaia.Group `yaml:"groups" json:"groups"`

	detectors []string
	settings  gaia.Settings
}

// LoadConfig reads and checks a config file (YAML, or JSON, which YAML reads).
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) check() error {
	if c.Model == "" {
		return fmt.Errorf("no model")
	}
	c.Model = os.ExpandEnv(c.Model)
	if _, err := os.Stat(c.Model); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if c.ID.Data == "" {
		return fmt.Errorf("no id set (id: {name: ..., data: ...})")
	}
	if c.ID.Name == "" {
		c.ID.Name = "id"
	}
	if len(c.OOD) == 0 {
		return fmt.Errorf("no ood sets")
	}
	seen := map[string]bool{c.ID.Name: true}
	for i := range c.OOD {
		o := &c.OOD[i]
		if o.Name == "" || o.Data == "" {
			return fmt.Errorf("ood set %d needs a name and data", i+1)
		}
		if seen[o.Name] {
			return fmt.Errorf("set name %q used twice", o.Name)
		}
		if strings.ContainsAny(o.Name, "/\\") {
			return fmt.Errorf("set name %q: no slashes", o.Name)
		}
		seen[o.Name] = true
		var err error
		if o.Data, err = expandSpec(o.Name, o.Data); err != nil {
			return err
		}
	}
	var err error
	if c.ID.Data, err = expandSpec(c.ID.Name, c.ID.Data); err != nil {
		return err
	}
	if c.Fit != nil {
		if c.Fit.Data == "" {
			return fmt.Errorf("fit: no data")
		}
		if c.Fit.Data, err = expandSpec("fit", c.Fit.Data); err != nil {
			return err
		}
		if c.Fit.Seed == 0 {
			c.Fit.Seed = 1
		}
	}
	if c.Detectors == "" {
		c.Detectors = "all"
	}
	if c.detectors, err = gaia.ParseDetectors(c.Detectors); err != nil {
		return err
	}
	c.settings = gaia.Settings{}
	for k, v := range c.Settings {
		if err := c.settings.SetValue(k, v); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
	}
	if c.Batch == 0 {
		c.Batch = 128
	}
	if c.Batch < 0 {
		return fmt.Errorf("batch must be positive")
	}
	if c.Device == "" {
		c.Device = "auto"
	}
	if c.Out == "" {
		return fmt.Errorf("no out folder")
	}
	if c.CILevel != 0 && !(c.CILevel > 0 && c.CILevel < 1) {
		return fmt.Errorf("ci_level %v must be in (0, 1)", c.CILevel)
	}
	if c.Bootstrap < 0 || c.Bootstrap == 1 {
		return fmt.Errorf("bootstrap %d: want at least 2 resamples", c.Bootstrap)
	}
	setNames := map[string]bool{}
	for _, o := range c.OOD {
		setNames[o.Name] = true
	}
	for _, g := range c.Groups {
		if g.Name == "" || len(g.Sets) == 0 || setNames[g.Name] || g.Name == "mean" {
			return fmt.Errorf("group %q: a group needs a name of its own and sets", g.Name)
		}
		for _, s := range g.Sets {
			if !setNames[s] {
				return fmt.Errorf("group %s: %q is not one of the ood sets", g.Name, s)
			}
		}
	}
	c.Out = os.ExpandEnv(c.Out)
	return nil
}

// expandSpec expands ${VAR} in a data spec; an unset variable is an error
// naming it, not an empty string.
func expandSpec(set, s string) (string, error) {
	var missing []string
	out := os.Expand(s, func(k string) string {
		v, ok := os.LookupEnv(k)
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("set %s: %q uses $%s, which is not set in the environment", set, s, missing[0])
	}
	return out, nil
}

// DetectorList is the parsed detectors.
func (c *Config) DetectorList() []string { return c.detectors }

// DetectorSettings are the parsed settings.
func (c *Config) DetectorSettings() gaia.Settings { return c.settings.Clone() }

// EvalOptions is how the config's table is evaluated.
func (c *Config) EvalOptions() gaia.EvalOptions {
	return gaia.EvalOptions{Intervals: c.Intervals == nil || *c.Intervals, Level: c.CILevel, Bootstrap: c.Bootstrap,
		Seed: c.BootstrapSeed, Groups: c.Groups}
}
