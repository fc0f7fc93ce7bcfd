package gaia

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Setting is one detector setting, declared by the detector that reads it:
// a command-line flag (--NAME), a key of score provenance, gates, bench
// configs and serve, with its default and help text.
type Setting struct {
	Name    string // flag and key: "energy-temperature"
	Help    string
	Default any // a float64, int or string: the setting's kind
	// Check refuses a bad value of the right kind (nil: any value is fine).
	Check func(v any) error
	// Taps marks a tap selection (a SelectTaps spec). The taps it selected
	// are recorded with the scores, and a gate pins the setting to them.
	Taps bool
	// Legacy is the key files of earlier versions kept it under: a number
	// setting's value in provenance and gates, or, for a tap selection, the
	// list of taps it chose in provenance ("taps_z").
	Legacy string
}

// positive and nonNegative are Checks for numbers.
func positive(v any) error {
	if f := toFloat(v); !(f > 0) || math.IsInf(f, 0) {
		return fmt.Errorf("must be a positive number, not %v", v)
	}
	return nil
}

func nonNegative(v any) error {
	if f := toFloat(v); !(f >= 0) || math.IsInf(f, 0) {
		return fmt.Errorf("must be a non-negative number, not %v", v)
	}
	return nil
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	}
	return math.NaN()
}

// Settings holds detector settings by name. A setting that is not there
// reads as its default; Set and JSON decoding check kinds and values.
type Settings map[string]any

// lookupSetting finds a registered setting.
func lookupSetting(name string) (*Setting, error) {
	for _, s := range allSettings() {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range allSettings() {
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("unknown setting %q (known: %s)", name, strings.Join(names, ", "))
}

func (s Settings) get(name string) any {
	if v, ok := s[name]; ok {
		return v
	}
	st, err := lookupSetting(name)
	if err != nil {
		panic("gaia: " + err.Error()) // a detector reading a setting it did not declare
	}
	return st.Default
}

// Float is a number setting's value.
func (s Settings) Float(name string) float64 { return toFloat(s.get(name)) }

// Int is an integer setting's value.
func (s Settings) Int(name string) int {
	switch v := s.get(name).(type) {
	case int:
		return v
	case float64:
		return int(v)
	}
	panic("gaia: setting " + name + " is not a number")
}

// String is a text setting's value.
func (s Settings) String(name string) string {
	v, ok := s.get(name).(string)
	if !ok {
		panic("gaia: setting " + name + " is not text")
	}
	return v
}

// Set parses text as the named setting's kind and stores it.
func (s Settings) Set(name, text string) error {
	st, err := lookupSetting(name)
	if err != nil {
		return err
	}
	var v any
	switch st.Default.(type) {
	case float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil {
			return fmt.Errorf("setting %s: %q is not a number", name, text)
		}
		v = f
	case int:
		n, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil {
			return fmt.Errorf("setting %s: %q is not a whole number", name, text)
		}
		v = n
	default:
		v = text
	}
	return s.put(st, v)
}

// SetValue stores a value of the setting's kind (a JSON or YAML number
// for a number setting: a whole one for an integer setting).
func (s Settings) SetValue(name string, v any) error {
	st, err := lookupSetting(name)
	if err != nil {
		return err
	}
	switch st.Default.(type) {
	case float64:
		switch x := v.(type) {
		case float64:
		case int:
			v = float64(x)
		default:
			return fmt.Errorf("setting %s: %v is not a number", name, v)
		}
	case int:
		switch x := v.(type) {
		case int:
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return fmt.Errorf("setting %s: %v is not a whole number", name, v)
			}
			v = int(x)
		default:
			return fmt.Errorf("setting %s: %v is not a whole number", name, v)
		}
	default:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("setting %s: %v is not text", name, v)
		}
	}
	return s.put(st, v)
}

func (s Settings) put(st *Setting, v any) error {
	if st.Check != nil {
		if err := st.Check(v); err != nil {
			return fmt.Errorf("setting %s: %w", st.Name, err)
		}
	}
	s[st.Name] = v
	return nil
}

// Validate checks every value as SetValue would (known name, kind, the
// setting's own check): settings made in Go, not parsed, are checked too.
func (s Settings) Validate() error {
	names := make([]string, 0, len(s))
	for k := range s {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := (Settings{}).SetValue(k, s[k]); err != nil {
			return err
		}
	}
	return nil
}

// Clone copies the settings.
func (s Settings) Clone() Settings {
	out := Settings{}
	for k, v := range s {
		out[k] = v
	}
	return out
}

// For returns the settings the named detectors read, defaults filled in:
// what provenance and gates record, so that a later change of a default
// does not change what a file means.
func (s Settings) For(detectors []string) Settings {
	out := Settings{}
	for _, st := range settingsOf(detectors) {
		out[st.Name] = s.get(st.Name)
	}
	return out
}

// Canonical is the settings as one line, sorted by name, for comparing
// runs (`energy-temperature=1 taps-z=""`).
func (s Settings) Canonical() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+formatSetting(s[k]))
	}
	return strings.Join(parts, " ")
}

func formatSetting(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case string:
		return strconv.Quote(x)
	}
	return fmt.Sprint(v)
}

// UnmarshalJSON reads settings, checking each by its registered kind.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := Settings{}
	for k, v := range raw {
		if err := out.SetValue(k, v); err != nil {
			return err
		}
	}
	*s = out
	return nil
}

// settingFlag is a Setting as a flag.Value.
type settingFlag struct {
	s  Settings
	st *Setting
}

func (f settingFlag) String() string {
	if f.st == nil {
		return ""
	}
	if v, ok := f.st.Default.(string); ok {
		return v
	}
	return formatSetting(f.st.Default)
}

func (f settingFlag) Set(v string) error { return f.s.Set(f.st.Name, v) }

// AddSettingFlags adds a flag --NAME for every registered setting, which
// sets s; its help names the detectors that read it.
func AddSettingFlags(fs *flag.FlagSet, s Settings) {
	for _, st := range allSettings() {
		fs.Var(settingFlag{s, st}, st.Name, fmt.Sprintf("%s (%s)", st.Help, strings.Join(readersOf(st), ", ")))
	}
}

// readLegacy fills settings (and, given taps, the recorded tap lists) from
// the keys files of earlier versions used (Setting.Legacy), for the named
// detectors, where the new keys did not already give them. A zero number
// under a legacy key meant "the default" and is skipped.
func readLegacy(b []byte, dets []string, settings Settings, taps map[string][]string) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, st := range settingsOf(dets) {
		v, ok := raw[st.Legacy]
		if st.Legacy == "" || !ok {
			continue
		}
		if st.Taps {
			var names []string
			if err := json.Unmarshal(v, &names); err != nil {
				return fmt.Errorf("%s: %w", st.Legacy, err)
			}
			owner := readersOf(st)[0]
			if _, have := taps[owner]; taps != nil && len(names) > 0 && !have {
				taps[owner] = names
			}
			continue
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return fmt.Errorf("%s: %w", st.Legacy, err)
		}
		if _, have := settings[st.Name]; !have && f != 0 {
			if err := settings.SetValue(st.Name, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// LegacySetting names the setting that earlier files and configs kept
// under key (Setting.Legacy), if any.
func LegacySetting(key string) (string, bool) {
	for _, st := range allSettings() {
		if st.Legacy != "" && st.Legacy == key {
			return st.Name, true
		}
	}
	return "", false
}
