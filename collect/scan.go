package collect

import (
	"encoding/json"
	"errors"
)

// The ingest path only needs messages one level deep: their top-level
// members, with nested values carried over as bytes. These scanners split
// already-validated JSON into members without decoding or copying the
// values, which is several times cheaper than json.Unmarshal into
// map[string]json.RawMessage. Callers validate the whole body once with
// json.Valid first; on invalid input the scanners return errBadJSON rather
// than panicking, but they do not promise to detect every error.

var errBadJSON = errors.New("malformed JSON")

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
	return 0, errBadJSON
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
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
		return 0, errBadJSON
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}

// splitObject returns the members of the JSON object b; values alias b.
// It returns nil and no error when b is not an object (e.g. a number), so
// the caller can reject that one item.
func splitObject(b []byte) (map[string]json.RawMessage, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, nil
	}
	m := make(map[string]json.RawMessage, 16)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, errBadJSON
		}
		kend, err := stringEnd(b, i)
		if err != nil {
			return nil, err
		}
		key := jsonString(b[i:kend])
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return nil, errBadJSON
		}
		i = skipSpace(b, i+1)
		vend, err := valueEnd(b, i)
		if err != nil {
			return nil, err
		}
		m[key] = b[i:vend:vend] // capped: appending never writes into b
		i = skipSpace(b, vend)
		if i >= len(b) {
			return nil, errBadJSON
		}
		if b[i] == '}' {
			return m, nil
		}
		if b[i] != ',' {
			return nil, errBadJSON
		}
		i = skipSpace(b, i+1)
	}
}

// splitArray returns the elements of the JSON array b; they alias b. ok is
// false when b is not an array.
func splitArray(b []byte) (elems []json.RawMessage, ok bool, err error) {
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
			return nil, true, errBadJSON
		}
		if b[i] == ']' {
			return elems, true, nil
		}
		if b[i] != ',' {
			return nil, true, errBadJSON
		}
		i = skipSpace(b, i+1)
	}
}
