package kith

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text that reaches a store must be text every store can hold. PostgreSQL
// refuses a NUL character and invalid UTF-8 in text columns (and one such
// value fails the whole statement, so the whole group commit or index batch
// it rides in), while SQLite keeps them; refusing both at the door keeps the
// stores in agreement and one poisoned value from failing anyone else's
// work. This file is the one place that decides what storable text is.

// TextProblem says why s cannot be stored as text ("" when it can): it
// contains a NUL character or is not valid UTF-8.
func TextProblem(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character"
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}

// CheckText returns an EINVALID error naming field when s cannot be stored
// as text, nil when it can.
func CheckText(field, s string) error {
	if p := TextProblem(s); p != "" {
		return Errorf(EINVALID, "%s %s", field, p)
	}
	return nil
}

// QuoteText returns s when it can be stored as text and otherwise a
// printable, storable form of it: Go-quoted, so a NUL shows as \x00 and an
// invalid byte as \xff. Records that must keep whatever was presented (the
// audit log's request targets) store it this way; identifiers and other
// values that are looked up are refused instead (CheckText).
func QuoteText(s string) string {
	if TextProblem(s) == "" {
		return s
	}
	return strconv.Quote(s)
}

// JSONTextProblem says why encoded JSON holds text that cannot be stored
// ("" when it can): a string with an escaped NUL character (\u0000), or
// bytes that are not valid UTF-8 (encoding/json would silently turn those
// into U+FFFD; Kith refuses them instead). It does not validate the JSON.
func JSONTextProblem(b []byte) string {
	if hasEscapedNUL(b) {
		return "contains a NUL character (\\u0000)"
	}
	if !utf8.Valid(b) {
		return "is not valid UTF-8"
	}
	return ""
}

// hasEscapedNUL reports whether encoded JSON contains an escaped NUL
// character: a "\u0000" whose backslash is not itself escaped.
func hasEscapedNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = j + 1
	}
}

// JSONTextPath returns the path (such as `traits["na\x00me"]` or
// `batch[3].event`) of the first member name or string in the JSON document
// b that cannot be stored as text, and what is wrong with it; "" when there
// is none or b does not decode that far. It walks b's tokens, so callers use
// it only after JSONTextProblem found something, to name the field.
func JSONTextPath(b []byte) (path, problem string) {
	bad := len(b) // offset of the first invalid UTF-8 byte
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			bad = i
			break
		}
		i += n
	}
	var stack []jsonFrame
	here := func() string {
		p := ""
		for _, f := range stack {
			if f.array {
				p += fmt.Sprintf("[%d]", f.index)
			} else {
				p = memberPath(p, f.key)
			}
		}
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return "", ""
		}
		end := dec.InputOffset()
		var top *jsonFrame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				stack = append(stack, jsonFrame{array: d == '[', inKey: d == '{'})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].advance()
				}
			}
			continue
		}
		s, isString := tok.(string)
		if top != nil && !top.array && top.inKey {
			top.key, top.inKey = s, false
			problem := TextProblem(s)
			if problem == "" && bad >= int(start) && bad < int(end) {
				problem = "is not valid UTF-8"
			}
			if problem != "" {
				return orRoot(here()), "name " + problem
			}
			continue
		}
		if isString {
			problem := TextProblem(s)
			if problem == "" && bad >= int(start) && bad < int(end) {
				problem = "is not valid UTF-8"
			}
			if problem != "" {
				return orRoot(here()), problem
			}
		}
		if top != nil {
			top.advance()
		}
	}
}

// jsonFrame is one open array or object in JSONTextPath's walk.
type jsonFrame struct {
	array bool
	index int    // the current element of an array
	key   string // the current member of an object
	inKey bool   // an object's next string token is a member name
}

// advance moves the frame past one value.
func (f *jsonFrame) advance() {
	if f.array {
		f.index++
	} else {
		f.inKey = true
	}
}

func memberPath(at, k string) string {
	if isPlainName(k) {
		if at == "" {
			return k
		}
		return at + "." + k
	}
	return at + "[" + strconv.Quote(k) + "]"
}

func isPlainName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func orRoot(at string) string {
	if at == "" {
		return "(the body)"
	}
	return at
}

// SafeText returns s as text every store can hold (TextProblem is ""):
// invalid UTF-8 becomes U+FFFD and NUL characters are dropped. It is for
// text Kith records but does not look up, which comes from outside and
// cannot be refused, such as the error a receiving server answered with
// (Delivery.LastError); text that is looked up is refused instead
// (CheckText).
func SafeText(s string) string {
	if TextProblem(s) == "" {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
