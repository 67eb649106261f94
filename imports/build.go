package imports

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Reasons a row is rejected by the import itself (the server adds its own,
// such as missing_user_or_anonymous_id, when a built message fails the
// Segment rules).
const (
	ReasonMalformedRow = "malformed_row"
	// ReasonRowTooLarge: the row is longer than Limits.MaxRowBytes; it
	// was skipped without being read whole.
	ReasonRowTooLarge    = "row_too_large"
	ReasonMissingField   = "missing_field"
	ReasonInvalidNumber  = "invalid_number"
	ReasonInvalidInteger = "invalid_integer"
	ReasonInvalidBoolean = "invalid_boolean"
	ReasonInvalidTime    = "invalid_time"
	ReasonInvalidValue   = "invalid_value"
	ReasonMissingKey     = "missing_key"
	ReasonDuplicateKey   = "duplicate_key"
	ReasonInconsistent   = "inconsistent_group"
	// ReasonGroupTooLarge: the rows of one group come to more bytes
	// than one message may hold.
	ReasonGroupTooLarge = "group_too_large"
)

// reject is why a row (or a group of rows) was not imported.
type reject struct {
	Reason  string
	Message string
}

func rejectf(reason, format string, args ...any) *reject {
	return &reject{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// MessageID derives an imported message's id from the source name, the
// input's base name, the row key and the rows' text, so that importing the
// same file again repeats ids the event log deduplicates, while a row that
// changed in a later export of the same name is imported as new data.
func MessageID(source, file, key string, rows ...string) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(filepath.Base(file)))
	h.Write([]byte{0})
	h.Write([]byte(key))
	for _, r := range rows {
		h.Write([]byte{0})
		h.Write([]byte(r))
	}
	return "imp-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// convert reads and converts one field of a row. present is false when the
// value is empty and neither required nor defaulted.
func (f *Field) convert(r *row, idx map[string]int, name string) (v any, present bool, rej *reject) {
	var raw any
	if f.Column != "" {
		raw, present = r.value(idx, f)
	} else {
		raw, present = f.Value, true
	}
	if s, ok := raw.(string); ok && present {
		s = f.transform(s, false)
		raw, present = s, s != ""
	}
	if !present && f.Or != nil {
		return f.Or.convert(r, idx, name)
	}
	if !present {
		if f.Default == nil {
			if f.Required {
				return nil, false, rejectf(ReasonMissingField, "%s (column %q) is empty", name, f.Column)
			}
			return nil, false, nil
		}
		raw = f.Default
	}
	if f.Map != nil {
		s := textOf(raw)
		m, ok := f.Map[s]
		if !ok {
			keys := make([]string, 0, len(f.Map))
			for k := range f.Map {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, false, rejectf(ReasonInvalidValue, "%s: %q is not one of %s", name, s, strings.Join(keys, ", "))
		}
		raw = m
	}
	v, rej = f.typed(raw, name)
	if rej != nil {
		return nil, false, rej
	}
	if s, ok := v.(string); ok && f.Prefix != "" {
		v = f.Prefix + s
	}
	if s, ok := v.(string); ok && hasTransform(f.Transform, "sha256") {
		v = f.transform(s, true)
	}
	return v, true, nil
}

func hasTransform(ts []string, t string) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// transform applies the text transforms; the digest last, after the prefix.
func (f *Field) transform(s string, digest bool) string {
	if digest {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	for _, t := range f.Transform {
		switch t {
		case "trim":
			s = strings.TrimSpace(s)
		case "lower":
			s = strings.ToLower(s)
		case "upper":
			s = strings.ToUpper(s)
		}
	}
	return s
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// typed converts a raw value to the field's type.
func (f *Field) typed(raw any, name string) (any, *reject) {
	switch f.Type {
	case "", "string":
		switch x := raw.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case map[string]any, []any:
			return x, nil // nested JSON passes through as it is
		default:
			return fmt.Sprint(x), nil
		}
	case "number":
		if n, ok := raw.(json.Number); ok {
			raw = n.String()
		}
		s := strings.TrimSpace(textOf(raw))
		if f.Decimal == "," {
			s = strings.ReplaceAll(strings.ReplaceAll(s, ".", ""), ",", ".")
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, rejectf(ReasonInvalidNumber, "%s: %q is not a number", name, textOf(raw))
		}
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case "integer":
		s := strings.TrimSpace(textOf(raw))
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, rejectf(ReasonInvalidInteger, "%s: %q is not a whole number", name, textOf(raw))
		}
		return x, nil
	case "boolean":
		if b, ok := raw.(bool); ok {
			return b, nil
		}
		switch strings.ToLower(strings.TrimSpace(textOf(raw))) {
		case "true", "yes", "y", "1", "t":
			return true, nil
		case "false", "no", "n", "0", "f":
			return false, nil
		}
		return nil, rejectf(ReasonInvalidBoolean, "%s: %q is not yes/no, true/false or 1/0", name, textOf(raw))
	case "time":
		t, err := f.parseTime(raw)
		if err != nil {
			return nil, rejectf(ReasonInvalidTime, "%s: %v", name, err)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	case "date":
		layout := f.Format
		if layout == "" {
			layout = time.DateOnly
		}
		s := strings.TrimSpace(textOf(raw))
		t, err := time.Parse(layout, s)
		if err != nil {
			return nil, rejectf(ReasonInvalidTime, "%s: %q is not a date like %s", name, s, layout)
		}
		return t.Format(time.DateOnly), nil
	}
	return nil, rejectf(ReasonInvalidValue, "%s: unknown type %q", name, f.Type)
}

// isoLayouts are accepted when a time field names no format.
var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	time.DateOnly,
}

func (f *Field) parseTime(raw any) (time.Time, error) {
	s := strings.TrimSpace(textOf(raw))
	switch f.Format {
	case "unix", "unix_ms":
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a Unix time", s)
		}
		if f.Format == "unix_ms" {
			x /= 1000
		}
		sec, frac := math.Modf(x)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	case "":
		for _, l := range isoLayouts {
			if t, err := time.ParseInLocation(l, s, f.loc); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time", s)
	}
	t, err := time.ParseInLocation(f.Format, s, f.loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q does not match the format %q", s, f.Format)
	}
	return t, nil
}

// setPath sets obj[path...] = v, creating objects on the way.
func setPath(obj map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	obj[path[len(path)-1]] = v
}

// builder turns rows into messages for one input.
type builder struct {
	m      *Mapping
	source string
	file   string
	idx    map[string]int // CSV column positions; nil for JSON Lines
	// topColumns are the columns a group's rows must agree on.
	topColumns []string
}

func newBuilder(m *Mapping, source, file string, header []string) (*builder, error) {
	b := &builder{m: m, source: source, file: file}
	if header != nil {
		b.idx = make(map[string]int, len(header))
		for i, h := range header {
			if _, dup := b.idx[h]; !dup {
				b.idx[h] = i
			}
		}
		var missing []string
		for _, c := range m.columns() {
			if _, ok := b.idx[c]; !ok {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: the header has no column %s (it has: %s)", file, strings.Join(quoteAll(missing), ", "), strings.Join(header, ", "))
		}
	}
	if m.GroupBy != "" {
		seen := map[string]bool{m.GroupBy: true}
		for _, f := range m.topFields() {
			if f != nil && f.Column != "" && !seen[f.Column] {
				seen[f.Column] = true
				b.topColumns = append(b.topColumns, f.Column)
			}
		}
	}
	return b, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// key is a row's key text; an empty key column rejects the row.
func (b *builder) key(r *row) (string, *reject) {
	if len(b.m.Key) == 0 {
		return "line:" + strconv.Itoa(r.line), nil
	}
	parts := make([]string, len(b.m.Key))
	for i, c := range b.m.Key {
		parts[i] = r.text(b.idx, c)
		if parts[i] == "" {
			return "", rejectf(ReasonMissingKey, "the key column %q is empty", c)
		}
	}
	return strings.Join(parts, "\x1f"), nil
}

// build makes one message from a group of rows (one row unless the
// mapping groups). The first row supplies every message-level value.
func (b *builder) build(rows []row, key string) (json.RawMessage, *reject) {
	first := &rows[0]
	for i := 1; i < len(rows); i++ {
		for _, c := range b.topColumns {
			if x, y := first.text(b.idx, c), rows[i].text(b.idx, c); x != y {
				return nil, rejectf(ReasonInconsistent, "rows of %s %q disagree on %q (line %d: %q, line %d: %q)",
					b.m.GroupBy, first.text(b.idx, b.m.GroupBy), c, first.line, x, rows[i].line, y)
			}
		}
	}
	texts := make([]string, len(rows))
	for i := range rows {
		texts[i] = rows[i].raw
	}
	msg := map[string]any{
		"type":      b.m.Type,
		"messageId": MessageID(b.source, b.file, key, texts...),
	}
	if b.m.Event != nil {
		v, ok, rej := b.m.Event.convert(first, b.idx, "event")
		if rej != nil {
			return nil, rej
		}
		if ok {
			if b.m.Type == "track" {
				msg["event"] = v
			} else {
				msg["name"] = v
			}
		}
	}
	for _, t := range b.m.targets {
		v, ok, rej := t.field.convert(first, b.idx, strings.Join(t.path, "."))
		if rej != nil {
			return nil, rej
		}
		if ok {
			setPath(msg, t.path, v)
		}
	}
	var ext []any
	for i := range b.m.ExternalIDs {
		x := &b.m.ExternalIDs[i]
		v, ok, rej := x.Field.convert(first, b.idx, "external id "+x.Type)
		if rej != nil {
			return nil, rej
		}
		if ok {
			ext = append(ext, map[string]any{"id": textOf(v), "type": x.Type, "collection": "users", "encoding": "none"})
		}
	}
	if ext != nil {
		setPath(msg, []string{"context", "externalIds"}, ext)
	}
	if it := b.m.Items; it != nil {
		items := make([]any, 0, len(rows))
		for i := range rows {
			obj := map[string]any{}
			for _, t := range it.targets {
				v, ok, rej := t.field.convert(&rows[i], b.idx, it.Path+"."+strings.Join(t.path, "."))
				if rej != nil {
					return nil, &reject{Reason: rej.Reason, Message: fmt.Sprintf("line %d: %s", rows[i].line, rej.Message)}
				}
				if ok {
					setPath(obj, t.path, v)
				}
			}
			if len(obj) > 0 {
				items = append(items, obj)
			}
		}
		setPath(msg, strings.Split(it.Path, "."), items)
	}
	setPath(msg, []string{"context", "library"}, map[string]any{"name": "kith-import", "version": "1"})
	setPath(msg, []string{"context", "import"}, map[string]any{"file": filepath.Base(b.file), "line": first.line, "rows": len(rows)})
	out, err := json.Marshal(msg)
	if err != nil {
		return nil, rejectf(ReasonInvalidValue, "cannot encode the message: %v", err)
	}
	return out, nil
}
