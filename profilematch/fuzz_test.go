package profilematch

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/kithcdp/kith/match"
)

// fuzzProfiles are the traits of a few profiles, some of them the same
// person spelled differently, for running an accepted configuration.
var fuzzProfiles = func() []map[string]json.RawMessage {
	var out []map[string]json.RawMessage
	for _, s := range []string{
		`{"first_name":"Ada","last_name":"Lovelace","birthday":"1985-12-10","email":"ada@example.com","points":120,"address":{"city":"Amsterdam","postal_code":"1015 CX"}}`,
		`{"name":"Ada  Lovelace","birthday":"19851210","email":"ada@example.com","points":"118","address":{"city":"amsterdam"}}`,
		`{"firstName":"Adda","lastName":"Lovelace","birthday":"1985-10-12","phone":"+31612345678","zip":"1015CX"}`,
		`{"first_name":"Grace","last_name":"Hopper","birthday":"1979-12-09","points":7.5,"city":"Utrecht"}`,
		`{"name":"Grace Hopper","birthday":"09.12.1979","email":"grace@example.com"}`,
		`{"first_name":"Alan","last_name":"Turing","birthday":"not a date","points":-3}`,
		`{"name":"Turing","address":"Wilmslow Road"}`,
		`{}`,
	} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}()

// FuzzParseConfig checks the matching configuration parser: any input is
// refused with an error that says it is about the matching configuration,
// or gives a configuration whose index builds and whose run over a few
// profiles ends with probabilities in [0, 1] and clusters of known
// records, or with an error that says why.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sample))
	for _, s := range []string{
		`{"fields":[{"name":"n","traits":["first_name"],"splitFirst":["name"]}],"comparisons":[{"field":"n","kind":"levenshtein","distances":[9223372036854775807]}],"blocking":[{"fields":["n"]}]}`,
		`{"fields":[{"name":"n","traits":["points"]}],"comparisons":[{"field":"n","kind":"numeric","differences":[-1,1e308]}],"blocking":[{"fields":["n"],"unordered":true}],"autoMerge":0.999999,"review":1e-9}`,
		`{"fields":[{"name":"d","traits":["birthday"],"date":true},{"name":"c","traits":["address.city","city"]}],"comparisons":[{"field":"d","kind":"date"},{"field":"c","kind":"jaro_winkler","thresholds":[2,-1,0.5],"tf":true}],"blocking":[{"fields":["c","d"]}],"training":[["d"],["nope"]]}`,
		`{"fields":[{"name":"e","traits":["email"]}],"comparisons":[{"field":"e","kind":"damerau","distances":[-5,0,3]},{"field":"e","kind":"exact"}],"blocking":[{"fields":["e"]}],"autoMerge":1}`,
		`{"fields":[{"name":"a","traits":["x"]},{"name":"a","traits":["y"]}],"comparisons":[],"blocking":[]}`,
		`{"fields":[{"name":"","traits":[]}]}`, `{"autoMerge":"high"}`, `[]`, `{} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4<<10 {
			return
		}
		cfg, err := ParseConfig(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "matching config: ") {
				t.Fatalf("ParseConfig(%q): error %q does not say what it is about", b, err)
			}
			return
		}
		if len(cfg.Fields) == 0 || len(cfg.Settings.Comparisons) == 0 || len(cfg.Settings.Blocking) == 0 {
			t.Fatalf("ParseConfig(%q): accepted an empty configuration", b)
		}
		names := make([]string, len(cfg.Fields))
		for i, fl := range cfg.Fields {
			names[i] = fl.Name
		}
		set := cfg.Settings
		set.Workers, set.USamples, set.MaxIterations = 1, 500, 20
		ix, err := match.NewIndex(match.NewSchema(names...), set)
		if err != nil {
			t.Fatalf("ParseConfig(%q) accepted what the index refuses: %v", b, err)
		}
		for i, traits := range fuzzProfiles {
			rec := match.Record{ID: string(rune('a' + i)), Fields: make([]string, len(cfg.Fields))}
			for k, fl := range cfg.Fields {
				rec.Fields[k] = fl.value(traits)
			}
			if _, err := ix.Add(0, rec); err != nil {
				t.Fatalf("ParseConfig(%q): adding %v: %v", b, rec, err)
			}
		}
		res, err := ix.Run()
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseConfig(%q): a run failed without a reason", b)
			}
			return
		}
		for _, p := range res.Pairs {
			if math.IsNaN(p.Probability) || p.Probability < 0 || p.Probability > 1 || math.IsNaN(p.Weight) {
				t.Fatalf("ParseConfig(%q): pair %+v", b, p)
			}
			if _, err := res.Model.Explain(ix, int(p.A), int(p.B)); err != nil {
				t.Fatalf("ParseConfig(%q): explaining %+v: %v", b, p, err)
			}
		}
		for _, g := range res.Clusters.Groups() {
			for _, r := range g {
				if r < 0 || int(r) >= ix.Len() {
					t.Fatalf("ParseConfig(%q): cluster %v names record %d of %d", b, g, r, ix.Len())
				}
			}
		}
	})
}
