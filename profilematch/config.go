package profilematch

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/kithcdp/kith/match"
)

// fileConfig is the JSON form of a Config, for a deployment's matching
// file (kith serve --match-config FILE).
type fileConfig struct {
	Fields      []Field          `json:"fields"`
	Comparisons []fileComparison `json:"comparisons"`
	Blocking    []fileBlocking   `json:"blocking"`
	// AutoMerge and Review are match probabilities (defaults 0.99, 0.5).
	AutoMerge float64 `json:"autoMerge"`
	Review    float64 `json:"review"`
	// Training lists EM sessions: the comparisons each session's pairs
	// agree on (see match.Settings.Training).
	Training [][]string `json:"training,omitempty"`
}

type fileComparison struct {
	Field string `json:"field"`
	// Kind is exact, name (Jaro-Winkler 0.92/0.88/0.7), jaro_winkler,
	// levenshtein, damerau, date or numeric.
	Kind        string    `json:"kind"`
	Thresholds  []float64 `json:"thresholds,omitempty"`  // jaro_winkler
	Distances   []int     `json:"distances,omitempty"`   // levenshtein, damerau
	Differences []float64 `json:"differences,omitempty"` // numeric
	TF          bool      `json:"tf,omitempty"`
}

type fileBlocking struct {
	Fields    []string `json:"fields"`
	Unordered bool     `json:"unordered,omitempty"`
}

// ParseConfig reads a matching configuration: which traits become which
// fields, how each field compares, the blocking rules and the thresholds.
// Every error names what is wrong.
func ParseConfig(b []byte) (Config, error) {
	var f fileConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Config{}, fmt.Errorf("matching config: %w", err)
	}
	if len(f.Fields) == 0 || len(f.Comparisons) == 0 || len(f.Blocking) == 0 {
		return Config{}, fmt.Errorf("matching config: fields, comparisons and blocking are all required")
	}
	var names []string
	for i, fl := range f.Fields {
		if fl.Name == "" || len(fl.Traits)+len(fl.SplitFirst)+len(fl.SplitLast) == 0 {
			return Config{}, fmt.Errorf("matching config: field %d needs a name and traits to read", i+1)
		}
		if slices.Contains(names, fl.Name) {
			return Config{}, fmt.Errorf("matching config: field %q declared twice", fl.Name)
		}
		names = append(names, fl.Name)
	}
	known := func(field, where string) error {
		if !slices.Contains(names, field) {
			return fmt.Errorf("matching config: %s names unknown field %q (fields: %s)", where, field, strings.Join(names, ", "))
		}
		return nil
	}
	cfg := Config{Fields: f.Fields, Settings: match.Settings{Mode: match.Dedupe, AutoMerge: f.AutoMerge, Review: f.Review, Training: f.Training, Seed: 1}}
	for _, c := range f.Comparisons {
		if err := known(c.Field, "a comparison"); err != nil {
			return Config{}, err
		}
		var mc match.Comparison
		switch c.Kind {
		case "exact":
			mc = match.ExactMatch(c.Field)
		case "name":
			mc = match.NameComparison(c.Field)
		case "jaro_winkler":
			if len(c.Thresholds) == 0 {
				return Config{}, fmt.Errorf("matching config: jaro_winkler on %q needs thresholds", c.Field)
			}
			mc = match.JaroWinklerAtThresholds(c.Field, c.Thresholds...)
		case "levenshtein":
			mc = match.LevenshteinAtThresholds(c.Field, c.Distances...)
		case "damerau":
			mc = match.DamerauAtThresholds(c.Field, c.Distances...)
		case "date":
			mc = match.DateComparison(c.Field)
		case "numeric":
			mc = match.NumericComparison(c.Field, c.Differences...)
		default:
			return Config{}, fmt.Errorf("matching config: comparison on %q: unknown kind %q (exact, name, jaro_winkler, levenshtein, damerau, date, numeric)", c.Field, c.Kind)
		}
		if c.TF {
			mc = mc.WithTF()
		}
		cfg.Settings.Comparisons = append(cfg.Settings.Comparisons, mc)
	}
	for _, bl := range f.Blocking {
		if len(bl.Fields) == 0 {
			return Config{}, fmt.Errorf("matching config: a blocking rule has no fields")
		}
		for _, fl := range bl.Fields {
			if err := known(fl, "a blocking rule"); err != nil {
				return Config{}, err
			}
		}
		r := match.On(bl.Fields...)
		if bl.Unordered {
			r = r.Unordered()
		}
		cfg.Settings.Blocking = append(cfg.Settings.Blocking, r)
	}
	if a, r := f.AutoMerge, f.Review; a < 0 || a > 1 || r < 0 || r > 1 || (a != 0 && r != 0 && r > a) {
		return Config{}, fmt.Errorf("matching config: thresholds must be probabilities with review ≤ autoMerge (got %v, %v)", r, a)
	}
	// Let the engine check the rest (field names, levels) now rather than
	// at the first run.
	if _, err := match.NewIndex(match.NewSchema(names...), cfg.Settings); err != nil {
		return Config{}, fmt.Errorf("matching config: %w", err)
	}
	return cfg, nil
}

// LoadConfig reads a matching configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("matching config: %w", err)
	}
	return ParseConfig(b)
}
