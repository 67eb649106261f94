package rawjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkSplit compares splitObject with encoding/json on valid input.
func checkSplit(t *testing.T, doc []byte) {
	t.Helper()
	// Invalid UTF-8 is rejected after normalisation (encoding/json would
	// silently replace it), so only valid text is compared.
	if !json.Valid(doc) || !utf8.Valid(doc) {
		return
	}
	var want map[string]json.RawMessage
	wantErr := json.Unmarshal(doc, &want)
	got, err := Object(doc)
	if wantErr != nil { // valid JSON but not an object
		if got != nil || err != nil {
			t.Fatalf("Object(%s) = %v, %v; want nil for a non-object", doc, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Object(%s): %v", doc, err)
	}
	if len(got) != len(want) {
		t.Fatalf("Object(%s) has %d members, want %d", doc, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(v)) {
			t.Fatalf("Object(%s)[%q] = %s, want %s", doc, k, got[k], v)
		}
	}
}

func TestObject(t *testing.T) {
	docs := []string{
		`{}`, ` { } `, `{"a":1}`, `{"a" : "x\"}" , "b":[1,{"c":"]"}], "d":{"e":{"f":null}}}`,
		`{"k\u00e9y":true,"e":false,"n":-1.5e3,"s":"\\"}`, `[1,2]`, `"str"`, `12`, `null`,
		"{\n\t\"a\"\t:\r\n{\"b\":\"\\u0000\"}\n}",
	}
	for _, d := range docs {
		checkSplit(t, []byte(d))
	}
	elems, ok, err := Array([]byte(` [ {"a":1} , 2, "x,]", [3,[4]] ] `))
	if !ok || err != nil || len(elems) != 4 || string(elems[2]) != `"x,]"` || string(elems[3]) != `[3,[4]]` {
		t.Fatalf("splitArray: %q %v %v", elems, ok, err)
	}
	if _, ok, _ := Array([]byte(`{"a":1}`)); ok {
		t.Fatal("an object is not an array")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \\ backslash`, "tab\tnewline\n\x00\x1f", "Zoë Müller ✓", "</script>"} {
		out := AppendString([]byte("x"), s)
		var got string
		if err := json.Unmarshal(out[1:], &got); err != nil || got != s {
			t.Errorf("AppendString(%q) = %s, decodes to %q (%v)", s, out[1:], got, err)
		}
	}
}

func FuzzObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,"]"]},"c":"\""}`, `{"x":null,"y":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkSplit(t, doc) })
}

func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \\ backslash`, "tab\tnewline\n\x00\x1f", "Zoë Müller ✓", "</script>", "bad \xff utf-8"} {
		out := AppendQuoted([]byte("x"), s)
		var got string
		if err := json.Unmarshal(out[1:], &got); err != nil || got != strings.ToValidUTF8(s, "\uFFFD") {
			t.Errorf("AppendQuoted(%q) = %s, decodes to %q (%v)", s, out[1:], got, err)
		}
	}
}

func TestAppendObject(t *testing.T) {
	fields := map[string]json.RawMessage{"b": json.RawMessage(`[1,{"x":"y"}]`), "a": json.RawMessage(`"s"`), `q"k`: json.RawMessage(`null`), "": json.RawMessage(`2`)}
	out := AppendObject([]byte("x"), fields)
	want := `x{"":2,"a":"s","b":[1,{"x":"y"}],"q\"k":null}`
	if string(out) != want {
		t.Errorf("AppendObject = %s, want %s", out, want)
	}
	if out := AppendObject(nil, nil); string(out) != `{}` {
		t.Errorf("AppendObject of no fields = %s, want {}", out)
	}
}
