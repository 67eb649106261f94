// Package rawjson splits JSON one level deep without decoding it. The
// ingest path and the indexer only need messages one level deep: their
// top-level members, with nested values carried over as bytes. Splitting
// already-validated JSON into members without decoding or copying the values
// is several times cheaper than json.Unmarshal into
// map[string]json.RawMessage.
//
// Callers validate input once with json.Valid first; on invalid input the
// functions return ErrMalformed rather than panicking, but they do not
// promise to detect every error.
package rawjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
)

// ErrMalformed reports input that is not well-formed JSON.
var ErrMalformed = errors.New("malformed JSON")

// String returns the JSON string raw as a Go string, or "" when raw is not
// a string.
func String(raw json.RawMessage) string {
	// Fast path: a string without escapes is its own bytes.
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 {
		return string(raw[1 : n-1])
	}
	var s string
	if len(raw) > 0 && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// AppendString appends s as a JSON string. s must be valid UTF-8: bytes of
// 0x80 and above are copied as they are, so this suits writers whose text
// is known to be valid (generators, fixed vocabularies), not arbitrary
// input.
func AppendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// AppendQuoted appends s as a JSON string, whatever s holds: plain ASCII
// is copied between quotes, anything else is encoded by encoding/json
// (invalid UTF-8 becomes U+FFFD). For keys and values from outside.
func AppendQuoted(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// AppendMembers appends the "key":value pairs of fields for keys, in that
// order and comma-separated, keys written with AppendQuoted and values as
// they are: the caller vouches that each is one valid JSON value.
func AppendMembers(dst []byte, keys []string, fields map[string]json.RawMessage) []byte {
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendQuoted(dst, k)
		dst = append(dst, ':')
		dst = append(dst, fields[k]...)
	}
	return dst
}

// AppendObject appends fields as a JSON object, keys sorted (as
// encoding/json orders a map's); see AppendMembers.
func AppendObject(dst []byte, fields map[string]json.RawMessage) []byte {
	var stack [16]string
	keys := stack[:0]
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = AppendMembers(append(dst, '{'), keys, fields)
	return append(dst, '}')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, ErrMalformed
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, ErrMalformed
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrMalformed
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, ErrMalformed
		}
		return j, nil
	}
}

// Object returns the members of the JSON object b; values alias b.
// It returns nil and no error when b is not an object (e.g. a number), so
// the caller can reject that one item.
func Object(b []byte) (map[string]json.RawMessage, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, nil
	}
	m := make(map[string]json.RawMessage, 16)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		if skipSpace(b, i+1) != len(b) {
			return nil, ErrMalformed
		}
		return m, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, ErrMalformed
		}
		kend, err := stringEnd(b, i)
		if err != nil {
			return nil, err
		}
		key := String(b[i:kend])
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return nil, ErrMalformed
		}
		i = skipSpace(b, i+1)
		vend, err := valueEnd(b, i)
		if err != nil {
			return nil, err
		}
		m[key] = b[i:vend:vend] // capped: appending never writes into b
		i = skipSpace(b, vend)
		if i >= len(b) {
			return nil, ErrMalformed
		}
		if b[i] == '}' {
			if skipSpace(b, i+1) != len(b) {
				return nil, ErrMalformed // trailing bytes
			}
			return m, nil
		}
		if b[i] != ',' {
			return nil, ErrMalformed
		}
		i = skipSpace(b, i+1)
	}
}

// Array returns the elements of the JSON array b; they alias b. ok is
// false when b is not an array.
func Array(b []byte) (elems []json.RawMessage, ok bool, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false, nil
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return []json.RawMessage{}, true, nil
	}
	for {
		end, err := valueEnd(b, i)
		if err != nil {
			return nil, true, err
		}
		elems = append(elems, b[i:end:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, true, ErrMalformed
		}
		if b[i] == ']' {
			return elems, true, nil
		}
		if b[i] != ',' {
			return nil, true, ErrMalformed
		}
		i = skipSpace(b, i+1)
	}
}
