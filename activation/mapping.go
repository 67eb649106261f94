package activation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/kithcdp/kith"
)

// Bounds of a mapping: what a destination's settings may hold.
const (
	maxMappingEntries = 100
	maxPathSegments   = 10
	maxSetValueBytes  = 4096
)

// fixedFields are the fields a mapping may not touch: the message's call
// type, and its messageId, which a receiver deduplicates by (the
// webhook-id of a single message).
var fixedFields = []string{"type", "messageId"}

// checkMapping refuses a mapping that names a path badly, touches a fixed
// field, sets a value that is not JSON, or is larger than the bounds,
// naming the entry.
func checkMapping(m *kith.Mapping) error {
	if m == nil {
		return nil
	}
	n := len(m.Drop) + len(m.Rename) + len(m.Set) + len(m.Traits)
	if n > maxMappingEntries {
		return invalid("mapping", "at most %d entries in all (it has %d)", maxMappingEntries, n)
	}
	for i, p := range m.Drop {
		if err := checkPath(fmt.Sprintf("mapping.drop[%d]", i), p); err != nil {
			return err
		}
	}
	for _, from := range slices.Sorted(maps.Keys(m.Rename)) {
		if err := checkPath("mapping.rename", from); err != nil {
			return err
		}
		if err := checkPath("mapping.rename."+from, m.Rename[from]); err != nil {
			return err
		}
	}
	for _, p := range slices.Sorted(maps.Keys(m.Set)) {
		field := "mapping.set." + p
		if err := checkPath("mapping.set", p); err != nil {
			return err
		}
		v := m.Set[p]
		if len(v) > maxSetValueBytes {
			return invalid(field, "at most %d bytes of JSON (it is %d)", maxSetValueBytes, len(v))
		}
		if !json.Valid(v) {
			return invalid(field, "must be a JSON value")
		}
		if err := kith.CheckText(field, string(v)); err != nil {
			return err
		}
	}
	for _, p := range slices.Sorted(maps.Keys(m.Traits)) {
		if err := checkPath("mapping.traits", p); err != nil {
			return err
		}
		key := m.Traits[p]
		field := "mapping.traits." + p
		switch {
		case key == "":
			return invalid(field, "empty trait key")
		case len(key) > maxItemBytes:
			return invalid(field, "at most %d bytes (it is %d)", maxItemBytes, len(key))
		}
		if err := kith.CheckText(field, key); err != nil {
			return err
		}
	}
	return nil
}

// checkPath refuses a path that is empty, has an empty segment, is too
// long or deep, is not storable text, or touches a fixed field.
func checkPath(field, p string) error {
	switch {
	case p == "":
		return invalid(field, "empty path")
	case len(p) > maxItemBytes:
		return invalid(field, "path %.40q… is longer than %d bytes", p, maxItemBytes)
	}
	if err := kith.CheckText(field, p); err != nil {
		return err
	}
	segs := strings.Split(p, ".")
	if len(segs) > maxPathSegments {
		return invalid(field, "path %q is deeper than %d fields", p, maxPathSegments)
	}
	if slices.Contains(segs, "") {
		return invalid(field, "path %q has an empty field name (write a.b.c)", p)
	}
	if slices.Contains(fixedFields, segs[0]) {
		return invalid(field, "path %q: %s cannot be mapped (receivers rely on them)", p, strings.Join(fixedFields, " and "))
	}
	return nil
}

// mapper applies a destination's mapping, its paths split once.
type mapper struct {
	drop   [][]string
	rename []struct{ from, to []string }
	set    []struct {
		path  []string
		value any
	}
	traits []struct {
		path []string
		key  string
	}
}

// newMapper compiles a valid mapping (nil for none).
func newMapper(m *kith.Mapping) (*mapper, error) {
	if m == nil || len(m.Drop)+len(m.Rename)+len(m.Set)+len(m.Traits) == 0 {
		return nil, nil
	}
	if err := checkMapping(m); err != nil {
		return nil, err
	}
	mp := &mapper{}
	for _, p := range m.Drop {
		mp.drop = append(mp.drop, strings.Split(p, "."))
	}
	for _, from := range slices.Sorted(maps.Keys(m.Rename)) {
		mp.rename = append(mp.rename, struct{ from, to []string }{strings.Split(from, "."), strings.Split(m.Rename[from], ".")})
	}
	for _, p := range slices.Sorted(maps.Keys(m.Set)) {
		v, err := decodeJSON(m.Set[p])
		if err != nil {
			return nil, invalid("mapping.set."+p, "must be a JSON value")
		}
		mp.set = append(mp.set, struct {
			path  []string
			value any
		}{strings.Split(p, "."), v})
	}
	for _, p := range slices.Sorted(maps.Keys(m.Traits)) {
		mp.traits = append(mp.traits, struct {
			path []string
			key  string
		}{strings.Split(p, "."), m.Traits[p]})
	}
	return mp, nil
}

// needsTraits reports whether the mapping reads the profile's traits.
func (mp *mapper) needsTraits() bool { return mp != nil && len(mp.traits) > 0 }

// apply returns body (a JSON object) reshaped; traits are the profile's
// (nil when the message is about no profile). A path through a value
// that is not an object is left as it is.
func (mp *mapper) apply(body []byte, traits map[string]json.RawMessage) ([]byte, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, fmt.Errorf("mapping: the message is not JSON: %w", err)
	}
	msg, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("mapping: the message is not a JSON object")
	}
	for _, p := range mp.drop {
		deletePath(msg, p)
	}
	moved := make([]any, len(mp.rename))
	found := make([]bool, len(mp.rename))
	for i, r := range mp.rename {
		moved[i], found[i] = getPath(msg, r.from)
	}
	for i, r := range mp.rename {
		if found[i] {
			deletePath(msg, r.from)
		}
	}
	for i, r := range mp.rename {
		if found[i] {
			setPath(msg, r.to, moved[i])
		}
	}
	for _, s := range mp.set {
		setPath(msg, s.path, s.value)
	}
	for _, t := range mp.traits {
		raw, ok := traits[t.key]
		if !ok {
			continue
		}
		tv, err := decodeJSON(raw)
		if err != nil {
			continue // a trait value the store holds is JSON; skip one that is not
		}
		setPath(msg, t.path, tv)
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("mapping: encoding the message: %w", err)
	}
	return out, nil
}

// decodeJSON decodes one JSON value, numbers kept as written.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("more after the JSON value")
	}
	return v, nil
}

func getPath(m map[string]any, path []string) (any, bool) {
	for i, k := range path {
		v, ok := m[k]
		if !ok {
			return nil, false
		}
		if i == len(path)-1 {
			return v, true
		}
		if m, ok = v.(map[string]any); !ok {
			return nil, false
		}
	}
	return nil, false
}

func deletePath(m map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k]
		if !ok {
			obj := map[string]any{}
			m[k] = obj
			m = obj
			continue
		}
		if m, ok = next.(map[string]any); !ok {
			return // not an object: left as it is
		}
	}
	m[path[len(path)-1]] = v
}
