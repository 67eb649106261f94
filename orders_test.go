package kith

import (
	"encoding/json"
	"testing"
)

// TestTraitsJSONMatchesMarshal checks TraitsJSON against encoding/json on
// the values its fast path takes and on those it hands over.
func TestTraitsJSONMatchesMarshal(t *testing.T) {
	tests := map[string]map[string]json.RawMessage{
		"predictions": {"p_alive": json.RawMessage(`0.93`), "rfm_segment": json.RawMessage(`"Champions"`),
			"next_best_products": json.RawMessage(`["prod-1","prod-2"]`), "clv_365d": json.RawMessage(`632.017`), "rfm_score": json.RawMessage(`555`)},
		"empty":              {},
		"nil":                nil,
		"spaces in a value":  {"seg": json.RawMessage(`"At Risk"`), "list": json.RawMessage(`[1, 2]`)},
		"html in a value":    {"name": json.RawMessage(`"Mugs & <cups>"`)},
		"unicode in a value": {"name": json.RawMessage(`"Köln\u2028"`), "raw": json.RawMessage("\"line\u2028sep\"")},
		"escapes in a key":   {"a\"b": json.RawMessage(`1`), "<k>": json.RawMessage(`2`), "tab\tkey": json.RawMessage(`3`)},
		"escaped value":      {"s": json.RawMessage(`"a\"b\\c"`)},
		"null value":         {"gone": json.RawMessage(`null`), "missing": nil},
	}
	for name, traits := range tests {
		p := ProfileInsights{ProfileID: "p1", Traits: traits}
		got, err := p.TraitsJSON()
		want, werr := json.Marshal(traits)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Errorf("%s: TraitsJSON = %s (%v), json.Marshal = %s (%v)", name, got, err, want, werr)
		}
	}
	for _, bad := range []string{`{`, `1 2`, `"open`, `[1,]`, ``} {
		p := ProfileInsights{Traits: map[string]json.RawMessage{"ok": json.RawMessage(`1`), "bad": json.RawMessage(bad)}}
		if b, err := p.TraitsJSON(); err == nil {
			t.Errorf("value %q encoded as %s without an error", bad, b)
		}
	}
}
