package profilematch

import (
	"strings"
	"testing"
)

const sample = `{
	"fields": [
		{"name": "first_name", "traits": ["first_name"], "splitFirst": ["name"]},
		{"name": "last_name", "traits": ["last_name"], "splitLast": ["name"]},
		{"name": "birthday", "traits": ["birthday"], "date": true},
		{"name": "loyalty_points", "traits": ["points"]}
	],
	"comparisons": [
		{"field": "first_name", "kind": "name", "tf": true},
		{"field": "last_name", "kind": "jaro_winkler", "thresholds": [0.95, 0.8]},
		{"field": "birthday", "kind": "date"},
		{"field": "loyalty_points", "kind": "numeric", "differences": [10]}
	],
	"blocking": [{"fields": ["last_name", "first_name"]}, {"fields": ["first_name", "last_name"], "unordered": true}, {"fields": ["birthday"]}],
	"autoMerge": 0.995, "review": 0.7
}`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Fields) != 4 || len(cfg.Settings.Comparisons) != 4 || len(cfg.Settings.Blocking) != 3 ||
		cfg.Settings.AutoMerge != 0.995 || cfg.Settings.Review != 0.7 {
		t.Errorf("config = %+v", cfg)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"fields":[],"comparisons":[],"blocking":[]}`, "all required"},
		{strings.Replace(sample, `"kind": "date"`, `"kind": "soundex"`, 1), `unknown kind "soundex"`},
		{strings.Replace(sample, `{"fields": ["birthday"]}`, `{"fields": ["dob"]}`, 1), `unknown field "dob"`},
		{strings.Replace(sample, `"review": 0.7`, `"review": 0.999`, 1), "review ≤ autoMerge"},
		{strings.Replace(sample, `"thresholds": [0.95, 0.8]`, `"thresholds": []`, 1), "needs thresholds"},
		{strings.Replace(sample, `"autoMerge"`, `"colour": 1, "autoMerge"`, 1), "unknown field"},
	} {
		if _, err := ParseConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want one containing %q", err, tc.want)
		}
	}
}
