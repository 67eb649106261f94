package kith

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzJSONText checks the one rule for storable text on any JSON document:
// JSONTextProblem finds a problem exactly when some member name or string
// decodes to text TextProblem refuses, and then JSONTextPath names where
// (in storable text); and on any text, QuoteText keeps storable text as it
// is and makes the rest storable.
func FuzzJSONText(f *testing.F) {
	for _, s := range []string{
		`{"a":"x"}`, `{"a":"x\u0000"}`, `{"a":"x\\u0000"}`, `{"a":"x\\\u0000"}`, "{\"a\":[1,\"\xff\"]}",
		`{"na\u0000me":1}`, `["ok",{"b":{"c":["\u0000"]}}]`, `"\u0000"`, `{"a":"\ud800"}`, `{"k":"v","batch":[{},{"event":"\u0000"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		problem := JSONTextProblem(b)
		if q := QuoteText(string(b)); (TextProblem(string(b)) == "") != (q == string(b)) || TextProblem(q) != "" {
			t.Fatalf("QuoteText(%q) = %q", b, q)
		}
		if !json.Valid(b) {
			return
		}
		want := false
		if !utf8.Valid(b) {
			want = true
		} else {
			var v any
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber() // 1E1000 is valid JSON, not a float64
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			want = hasBad(v)
		}
		if (problem != "") != want {
			t.Fatalf("JSONTextProblem(%q) = %q, want a problem: %v", b, problem, want)
		}
		path, why := JSONTextPath(b)
		if want && (path == "" || why == "") {
			t.Fatalf("JSONTextPath(%q) = %q, %q; want where the problem is", b, path, why)
		}
		if !want && (path != "" || why != "") {
			t.Fatalf("JSONTextPath(%q) = %q, %q on storable text", b, path, why)
		}
		if TextProblem(path) != "" {
			t.Fatalf("JSONTextPath(%q) = %q: the path itself is not storable text", b, path)
		}
	})
}

// hasBad reports whether decoded JSON holds a name or string with a NUL.
// (Invalid UTF-8 does not survive decoding: the caller checks the bytes.)
func hasBad(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, e := range x {
			if strings.IndexByte(k, 0) >= 0 || hasBad(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasBad(e) {
				return true
			}
		}
	}
	return false
}
