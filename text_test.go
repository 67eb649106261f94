package kith_test

import (
	"testing"

	"github.com/kithcdp/kith"
)

func TestTextProblem(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"", ""},
		{"Ada Lovelace", ""},
		{"Zoë 😀", ""},
		{"a\x00b", "contains a NUL character"},
		{"a\xffb", "is not valid UTF-8"},
		{"\xed\xa0\x80", "is not valid UTF-8"}, // a surrogate half
	} {
		if got := kith.TextProblem(tc.in); got != tc.want {
			t.Errorf("TextProblem(%q) = %q, want %q", tc.in, got, tc.want)
		}
		err := kith.CheckText("name", tc.in)
		if (err != nil) != (tc.want != "") || (err != nil && kith.ErrorCode(err) != kith.EINVALID) {
			t.Errorf("CheckText(%q) = %v", tc.in, err)
		}
		q := kith.QuoteText(tc.in)
		if kith.TextProblem(q) != "" {
			t.Errorf("QuoteText(%q) = %q, which cannot be stored", tc.in, q)
		}
		if tc.want == "" && q != tc.in {
			t.Errorf("QuoteText(%q) = %q, want it unchanged", tc.in, q)
		}
	}
	if got := kith.QuoteText("p_\xff\x00"); got != `"p_\xff\x00"` {
		t.Errorf("QuoteText = %s", got)
	}
}

func TestJSONTextProblemAndPath(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            string
		problem, path string
	}{
		{"clean", `{"a":"b","c":[1,"d"]}`, "", ""},
		{"escaped backslash is not NUL", `{"a":"\\u0000"}`, "", ""},
		{"NUL value", `{"a":{"b":["x","y\u0000"]}}`, "contains a NUL character (\\u0000)", "a.b[1]"},
		{"NUL member name", `{"rejected":{"x\u0000":1}}`, "contains a NUL character (\\u0000)", `rejected["x\x00"]`},
		{"NUL after escaped backslash", `{"a":"\\\u0000"}`, "contains a NUL character (\\u0000)", "a"},
		{"invalid UTF-8 value", "{\"a\":1,\"b\":\"\xff\"}", "is not valid UTF-8", "b"},
		{"invalid UTF-8 name", "{\"ok\":[{\"n\xffm\":1}]}", "is not valid UTF-8", "ok[0][\"n\uFFFDm\"]"},
		{"top-level string", `"\u0000"`, "contains a NUL character (\\u0000)", "(the body)"},
		{"second element after object", `[{"a":1},{"b":"\u0000"}]`, "contains a NUL character (\\u0000)", "[1].b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kith.JSONTextProblem([]byte(tc.in)); got != tc.problem {
				t.Errorf("JSONTextProblem = %q, want %q", got, tc.problem)
			}
			path, _ := kith.JSONTextPath([]byte(tc.in))
			if path != tc.path {
				t.Errorf("JSONTextPath = %q, want %q", path, tc.path)
			}
		})
	}
}
