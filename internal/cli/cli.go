// Package cli holds what gaia's commands share and a library user has no
// use for: the flags every command that opens a model declares (once, here),
// the detector settings as flags, help texts, and the parsing of the
// flags' text forms.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
)

// ModelFlags are the flags of a command that opens a model: -model,
// -device, -input, -mean, -std and -fit, declared the same way for every
// command.
type ModelFlags struct {
	Model, Device    string
	Input, Mean, Std string
	Fit              string
}

// Register declares the flags on fs, each with the one text every command
// shows: all six, or only those named ("model", "device", "input", "mean",
// "std", "fit"). devices is the -device help (OneDevice or ManyDevices).
func (f *ModelFlags) Register(fs *flag.FlagSet, devices string, names ...string) {
	all := []struct {
		name, help string
		dst        *string
		def        string
	}{
		{"model", "the TorchScript `file` (MODEL.json beside it gives input size, mean and std)", &f.Model, ""},
		{"device", "`device`: " + devices, &f.Device, "auto"},
		{"input", "input size `CxHxW` (default: from MODEL.json)", &f.Input, ""},
		{"mean", "per-channel `mean`s (default: from MODEL.json)", &f.Mean, ""},
		{"std", "per-channel `std`s (default: from MODEL.json)", &f.Std, ""},
		{"fit", "a fit `file` (gaia fit) for the detectors that need one (mahalanobis, react, knn, vim, ash, dice, klm)", &f.Fit, ""},
	}
	for _, fl := range all {
		if len(names) == 0 || slices.Contains(names, fl.name) {
			fs.StringVar(fl.dst, fl.name, fl.def, fl.help)
		}
	}
	if f.Device == "" {
		f.Device = "auto"
	}
}

// Devices are the -device help texts of commands that run one replica and
// of those that run one per device.
const (
	OneDevice   = "auto, cpu, cuda or cuda:N"
	ManyDevices = "auto, cpu, cuda, cuda:N, cuda:all or a list (cuda:0,cuda:2): one model replica per device"
)

// Options turns the flags into gaia.Options (the rest of them zero),
// refusing malformed -input, -mean and -std.
func (f *ModelFlags) Options() (gaia.Options, error) {
	o := gaia.Options{Device: f.Device, Fit: f.Fit}
	var err error
	if f.Input != "" {
		if o.Input, err = ParseCHW(f.Input); err != nil {
			return o, fmt.Errorf("-input %w", err)
		}
	}
	if f.Mean != "" {
		if o.Mean, err = ParseFloats(f.Mean); err != nil {
			return o, fmt.Errorf("-mean %w", err)
		}
	}
	if f.Std != "" {
		if o.Std, err = ParseFloats(f.Std); err != nil {
			return o, fmt.Errorf("-std %w", err)
		}
	}
	return o, nil
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

// ParseFloats parses "0.5,0.5,0.5".
func ParseFloats(s string) ([]float64, error) {
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

// settingFlag is a detector setting as a flag.Value.
type settingFlag struct {
	s  gaia.Settings
	st gaia.SettingInfo
}

func (f settingFlag) String() string {
	if f.st.Name == "" {
		return ""
	}
	if v, ok := f.st.Default.(string); ok {
		return v
	}
	return fmt.Sprint(f.st.Default)
}

func (f settingFlag) Set(v string) error { return f.s.Set(f.st.Name, v) }

// AddSettingFlags adds a flag --NAME for every detector setting, which sets
// s; its help names the detectors that read it.
func AddSettingFlags(fs *flag.FlagSet, s gaia.Settings) {
	for _, st := range gaia.AllSettings() {
		fs.Var(settingFlag{s, st}, st.Name, fmt.Sprintf("%s (%s)", st.Help, strings.Join(st.Readers, ", ")))
	}
}

// DetectorHelp lists every detector with what its score is, for -h texts.
func DetectorHelp() string {
	var b strings.Builder
	for _, d := range gaia.Detectors() {
		note := ""
		switch {
		case d.Group == "":
			note = " (by name only)"
		case d.NeedsFit:
			note = " (needs --fit)"
		}
		fmt.Fprintf(&b, "  %-12s %s%s\n", d.Name, d.Summary, note)
	}
	return b.String()
}

// Hint adds to a library error what a command-line user can do about it:
// the flag that gives what is missing.
func Hint(err error) error {
	var size *data.SizeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gaia.ErrNeedsFit):
		return fmt.Errorf("%w; give --fit FILE", err)
	case errors.Is(err, gaia.ErrNoMetadata):
		return fmt.Errorf("%w; or give --input CxHxW (and --mean, --std)", err)
	case errors.As(err, &size):
		return fmt.Errorf("%w; add resize=%dx%d or center-crop=%dx%d to the data spec (or --transform)", err, size.WantH, size.WantW, size.WantH, size.WantW)
	case errors.As(err, new(*data.SampleError)):
		return fmt.Errorf("%w (--skip-bad skips and counts unreadable samples)", err)
	}
	return err
}
