package rawjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"
)

// decodeAny decodes JSON keeping numbers as written, for comparing two
// documents by meaning rather than by bytes.
func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return v
}

// aliases reports whether v lies inside doc (values alias the input, as
// documented) and is capped so that appending to it cannot write into doc.
func aliases(doc []byte, v []byte) bool {
	if len(v) == 0 {
		return false
	}
	if cap(v) != len(v) {
		return false
	}
	for i := range doc {
		if &doc[i] == &v[0] {
			return i+len(v) <= len(doc)
		}
	}
	return false
}

// FuzzSplitJoin checks that splitting a valid JSON object (Object) or array
// (Array) one level deep and joining the parts again gives an equivalent
// document, that every part is itself valid JSON aliasing the input, and
// that malformed input gives an error or a result, never a panic.
func FuzzSplitJoin(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, ` { "a" : 1 , "b" : [ 1 , 2 ] } `, `{"a":{"b":[1,"]"]},"c":"\""}`,
		`[1,{"a":"}"},"x,]",[[]],null,true,-1.5e3]`, `{"k\u00e9y":"\\","k\"":2}`,
		`{"dup":1,"dup":2}`, `{"a":1`, `[1,]`, `{"a":[}`, `{"a" 1}`, `[1 2]`, `{"\ud800":"x"}`,
		"{\n\t\"a\"\t:\r\n{\"b\":\"\\u0000\"}\n}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		obj, objErr := Object(doc)
		elems, isArray, arrErr := Array(doc)
		for _, v := range obj {
			if !aliases(doc, v) {
				t.Fatalf("Object(%q): member %q does not alias the input", doc, v)
			}
		}
		for _, v := range elems {
			if !aliases(doc, v) {
				t.Fatalf("Array(%q): element %q does not alias the input", doc, v)
			}
		}
		// Invalid UTF-8 is refused after splitting (encoding/json would
		// replace it), so the comparison takes valid text only.
		if !json.Valid(doc) || !utf8.Valid(doc) {
			return
		}
		want := decodeAny(t, doc)
		switch w := want.(type) {
		case map[string]any:
			if objErr != nil || obj == nil {
				t.Fatalf("Object(%s) = %v, %v on a valid object", doc, obj, objErr)
			}
			if isArray || arrErr != nil {
				t.Fatalf("Array(%s) says an object is an array (%v)", doc, arrErr)
			}
			keys := make([]string, 0, len(obj))
			for k, v := range obj {
				if !json.Valid(v) {
					t.Fatalf("Object(%s)[%q] = %q, not valid JSON", doc, k, v)
				}
				keys = append(keys, k)
			}
			slices.Sort(keys)
			joined := []byte{'{'}
			for i, k := range keys {
				if i > 0 {
					joined = append(joined, ',')
				}
				q, _ := json.Marshal(k)
				joined = append(append(append(joined, q...), ':'), obj[k]...)
			}
			joined = append(joined, '}')
			if !json.Valid(joined) {
				t.Fatalf("re-joined %s as %s: not valid JSON", doc, joined)
			}
			if got := decodeAny(t, joined); !reflect.DeepEqual(got, w) {
				t.Fatalf("re-joined %s as %s: a different document", doc, joined)
			}
		case []any:
			if !isArray || arrErr != nil {
				t.Fatalf("Array(%s) = %v, %v, %v on a valid array", doc, elems, isArray, arrErr)
			}
			if obj != nil || objErr != nil {
				t.Fatalf("Object(%s) = %v, %v; want nil for an array", doc, obj, objErr)
			}
			if len(elems) != len(w) {
				t.Fatalf("Array(%s) has %d elements, want %d", doc, len(elems), len(w))
			}
			joined := []byte{'['}
			for i, e := range elems {
				if !json.Valid(e) {
					t.Fatalf("Array(%s)[%d] = %q, not valid JSON", doc, i, e)
				}
				if i > 0 {
					joined = append(joined, ',')
				}
				joined = append(joined, e...)
			}
			joined = append(joined, ']')
			if got := decodeAny(t, joined); !reflect.DeepEqual(got, w) {
				t.Fatalf("re-joined %s as %s: a different document", doc, joined)
			}
		default: // a scalar: neither an object nor an array
			if obj != nil || objErr != nil || isArray || arrErr != nil || elems != nil {
				t.Fatalf("Object/Array(%s) = %v %v %v %v %v on a scalar", doc, obj, objErr, elems, isArray, arrErr)
			}
		}
	})
}

// FuzzString checks String against encoding/json on every valid JSON value
// (a string decodes to its text, anything else to ""), and that
// AppendString writes valid JSON that String and encoding/json read back
// as the same text.
func FuzzString(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b\\c"`, `"\u00e9\n\t"`, `"\ud83d\ude00"`, `"\ud800"`, `12`, `null`, `"`, `"\u0000"`, `{"a":"b"}`, "\"Zo\u00eb\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := String(raw) // never panics, whatever raw is
		if json.Valid(raw) && utf8.Valid(raw) {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil {
				want = "" // not a string
			}
			if got != want {
				t.Fatalf("String(%s) = %q, want %q", raw, got, want)
			}
		}
		// AppendString takes valid UTF-8 text.
		s := string(raw)
		if !utf8.ValidString(s) {
			return
		}
		out := AppendString([]byte("prefix"), s)
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatalf("AppendString(%q) lost the prefix: %q", s, out)
		}
		enc := out[len("prefix"):]
		if !json.Valid(enc) {
			t.Fatalf("AppendString(%q) = %s, not valid JSON", s, enc)
		}
		var back string
		if err := json.Unmarshal(enc, &back); err != nil || back != s {
			t.Fatalf("AppendString(%q) = %s, decodes to %q (%v)", s, enc, back, err)
		}
		if r := String(enc); r != s {
			t.Fatalf("String(AppendString(%q)) = %q", s, r)
		}
	})
}
