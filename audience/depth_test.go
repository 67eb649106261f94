package audience

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
)

// fill repeats unit to make a body of about 1 MB (the API's body limit)
// ending in tail.
func fill(unit, tail string) string {
	const mb = 1 << 20
	return strings.Repeat(unit, (mb-len(tail))/len(unit)) + tail
}

var tooDeep = fmt.Sprintf("nested deeper than %d levels", MaxDepth)

// TestDeepDefinitionsFailAtTheLimit: a megabyte of nesting (issue 14: 260k
// "not" took 31 s of CPU before failing) is refused with an error naming
// the depth limit, and the text parser stops at the first level past it
// (the offset proves it read no further), so the work is linear.
func TestDeepDefinitionsFailAtTheLimit(t *testing.T) {
	tests := []struct {
		name string
		def  kith.Definition
		// stop is the offset at which the parser must give up (text
		// forms); -1 for the JSON forms.
		stop int
	}{
		{"text nots", kith.Definition{Kind: kith.KindAudience, Text: fill("not ", "traits.x = 1")}, 4 * MaxDepth},
		{"text parentheses", kith.Definition{Kind: kith.KindAudience, Text: fill("(", "traits.x = 1")}, MaxDepth},
		{"text not and parentheses", kith.Definition{Kind: kith.KindAudience, Text: fill("not (traits.x = 1 or ", "traits.x = 1")}, len("not (traits.x = 1 or ") * MaxDepth / 2},
		{"text where", kith.Definition{Kind: kith.KindAudience, Text: `count(event "x" where ` + fill("not ", "properties.x = 1) > 1")}, len(`count(event "x" where `) + 4*(MaxDepth-1)},
		{"text computed trait", kith.Definition{Kind: kith.KindComputedTrait, Text: `count(event "x" where ` + fill("(", "properties.x = 1)")}, len(`count(event "x" where `) + MaxDepth - 1},
		{"json nots", kith.Definition{Kind: kith.KindAudience, Condition: []byte(fill(`{"not":`, `{"trait":"x","op":"=","value":1}`))}, -1},
		{"json ands", kith.Definition{Kind: kith.KindAudience, Condition: []byte(fill(`{"and":[`, `{"trait":"x","op":"=","value":1}`))}, -1},
		{"json computed trait", kith.Definition{Kind: kith.KindComputedTrait, Condition: []byte(`{"fn":"count","event":"x","where":` + fill(`{"not":`, `{"property":"properties.x","op":"=","value":1}`))}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.def.Key = "deep"
			_, err := Prepare(tt.def)
			var ke *kith.Error
			if !errors.As(err, &ke) || ke.Code != kith.EINVALID || !strings.Contains(err.Error(), tooDeep) {
				t.Fatalf("Prepare = %v, want EINVALID naming %q", err, tooDeep)
			}
			if tt.stop < 0 {
				return
			}
			var se *SyntaxError
			if tt.def.Kind == kith.KindAudience {
				_, err = Parse(tt.def.Text)
			} else {
				_, err = ParseAggregate(tt.def.Text)
			}
			if !errors.As(err, &se) || se.Offset != tt.stop {
				t.Fatalf("parse = %v, want a SyntaxError at offset %d (the first level past the limit)", err, tt.stop)
			}
		})
	}
}

// TestDepthLimitBoundary: definitions exactly MaxDepth deep are accepted in
// both forms (the JSON nesting pre-check refuses no valid tree), one level
// more is refused.
func TestDepthLimitBoundary(t *testing.T) {
	nots := func(k int) string { return strings.Repeat("not ", k) + "traits.x = 1" }
	if _, err := Parse(nots(MaxDepth)); err != nil {
		t.Errorf("%d nots: %v", MaxDepth, err)
	}
	if _, err := Parse(nots(MaxDepth + 1)); err == nil || !strings.Contains(err.Error(), tooDeep) {
		t.Errorf("%d nots: %v, want %q", MaxDepth+1, err, tooDeep)
	}
	// The JSON form nests deepest with and lists (two JSON levels per
	// node) down to an aggregate's where comparing with in.
	andChain := func(k int) string {
		leaf := `{"aggregate":{"fn":"count","event":"x","window":{"within":"1d"},"where":{"property":"properties.x","op":"in","value":[1,2]}},"op":">","value":1}`
		return strings.Repeat(`{"and":[`, k) + leaf + strings.Repeat(`]}`, k)
	}
	// and nodes at depths 0..k-1, the comparison at k, its where at k+2.
	if _, err := ParseJSON([]byte(andChain(MaxDepth - 2))); err != nil {
		t.Errorf("JSON tree %d deep: %v", MaxDepth, err)
	}
	if _, err := ParseJSON([]byte(andChain(MaxDepth - 1))); err == nil || !strings.Contains(err.Error(), tooDeep) {
		t.Errorf("JSON tree %d deep: %v, want %q", MaxDepth+1, err, tooDeep)
	}
	// Brackets inside strings are not nesting.
	if _, err := ParseJSON([]byte(`{"trait":"x","op":"=","value":"` + strings.Repeat(`[{\"`, 10*MaxDepth) + `"}`)); err != nil {
		t.Errorf("brackets in a string: %v", err)
	}
}

// BenchmarkParseDeepNots measures the refusal of a megabyte of "not"
// (issue 14): it should cost microseconds, not seconds.
func BenchmarkParseDeepNots(b *testing.B) {
	src := fill("not ", "traits.x = 1")
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse(src); err == nil {
			b.Fatal("parsed")
		}
	}
}
