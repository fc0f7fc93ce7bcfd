package gaia

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// setting is one detector setting, declared by the detector that reads it:
// a key of Settings, score provenance, gates, bench configs and serve (and
// a command-line flag --NAME), with its default and help text.
type setting struct {
	Name    string // flag and key: "energy-temperature"
	Help    string
	Default any // a float64, int or string: the setting's kind
	// Check refuses a bad value of the right kind (nil: any value is fine).
	Check func(v any) error
	// Taps marks a tap selection (a SelectTaps spec). The taps it selected
	// are recorded with the scores, and a gate pins the setting to them.
	Taps bool
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
func lookupSetting(name string) (*setting, error) {
	for _, s := range allSettings() {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range allSettings() {
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSetting, name, strings.Join(names, ", "))
}

// get is a setting's value, its default when s does not have it; name is
// one the detector reading it declared.
func (s Settings) get(name string) any {
	if v, ok := s[name]; ok {
		return v
	}
	st, err := lookupSetting(name)
	if err != nil {
		panic("gaia: " + err.Error()) // a detector reading a setting it did not declare: a bug of gaia's
	}
	return st.Default
}

// float is a number setting's value (for the detector that declared it).
func (s Settings) float(name string) float64 { return toFloat(s.get(name)) }

// int is an integer setting's value (for the detector that declared it).
func (s Settings) int(name string) int {
	switch v := s.get(name).(type) {
	case int:
		return v
	case float64:
		return int(v)
	}
	return 0
}

// text is a text setting's value (for the detector that declared it).
func (s Settings) text(name string) string {
	v, _ := s.get(name).(string)
	return v
}

// Value is the named setting's value, its default where s does not set it:
// a float64, an int or a string, as the setting's kind is. A name no
// detector declares is ErrUnknownSetting.
func (s Settings) Value(name string) (any, error) {
	st, err := lookupSetting(name)
	if err != nil {
		return nil, err
	}
	if v, ok := s[name]; ok {
		return v, nil
	}
	return st.Default, nil
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

func (s Settings) put(st *setting, v any) error {
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
