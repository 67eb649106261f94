// Package imports turns files from channels that do not speak the Segment
// protocol (CRM contact exports, POS and order-management line items,
// e-mail engagement logs) into Segment messages, using a mapping file that
// says how columns become identifiers, traits, event names, properties and
// timestamps. It streams CSV and JSON Lines (gzip-compressed or not), names
// every row it cannot use with its line number and reason, derives each
// message's id from the source, the file and the row key so that importing
// the same file again stores nothing twice, and records how far an import
// got so that an interrupted one resumes.
//
// The package does not store anything itself: a Sink (the server's group
// committer, or an HTTP client of the admin API) takes the messages, and
// they flow through the same pipeline as live events.
package imports

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Mapping is a parsed mapping file. See the ready-made ones in the
// repository's mappings directory for the shapes it takes.
type Mapping struct {
	// Name identifies the mapping in summaries.
	Name string `yaml:"name"`
	// Type is the Segment call every row (or group of rows) becomes:
	// identify, track, page, screen or group.
	Type string `yaml:"type"`
	// Format is "csv" or "jsonl"; empty means: from the file extension.
	Format string `yaml:"format"`
	// Delimiter is the CSV field separator (default ",").
	Delimiter string `yaml:"delimiter"`
	// Event is the event name of a track (or the name of a page or
	// screen): a constant, or a column mapped through a table.
	Event *EventSpec `yaml:"event"`
	// Key lists the columns that identify a row (or group) across runs;
	// with GroupBy it defaults to that column, otherwise to the line
	// number. Message ids derive from it.
	Key []string `yaml:"key"`
	// GroupBy names a column; consecutive rows with the same value become
	// one message, each contributing an element to Items (an order and its
	// line items).
	GroupBy string `yaml:"group_by"`
	// Fields maps target paths in the message (userId, anonymousId,
	// timestamp, traits.email, properties.revenue, context.channel, ...)
	// to where their value comes from.
	Fields map[string]*Field `yaml:"fields"`
	// ExternalIDs become context.externalIds entries, which identity
	// resolution reads as identifiers of the given type.
	ExternalIDs []ExternalID `yaml:"external_ids"`
	// Items, with GroupBy, builds an array of objects (one per row).
	Items *Items `yaml:"items"`

	// hash is the SHA-256 of the mapping file, part of the resume state.
	hash    string
	targets []target // Fields, sorted by path
}

// EventSpec is where the event name comes from: in a mapping file a bare
// string is the name itself (event: Order Completed), an object a Field
// (event: {column: action, map: {...}}).
type EventSpec struct{ Field }

// UnmarshalYAML reads a constant name or a Field.
func (e *EventSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		e.Value = n.Value
		return nil
	}
	return n.Decode(&e.Field)
}

// ExternalID is one context.externalIds entry built from a column.
type ExternalID struct {
	Type  string
	Field Field
}

// UnmarshalYAML reads {type: ..., column: ..., ...}: the type beside the
// keys of a Field.
func (x *ExternalID) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an external id is {type: ..., column: ...}", n.Line)
	}
	rest := *n
	rest.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			x.Type = n.Content[i+1].Value
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	type plain Field
	return rest.Decode((*plain)(&x.Field))
}

// Items builds an array of objects at Path from each row of a group.
type Items struct {
	Path    string            `yaml:"path"`
	Fields  map[string]*Field `yaml:"fields"`
	targets []target
}

// Field says where one value comes from and how it is converted. In a
// mapping file it is either a column name or an object with these keys.
type Field struct {
	// Column is the CSV header name or the JSON Lines key (dots reach
	// into nested objects: customer.email).
	Column string `yaml:"column"`
	// Value is a constant, used when Column is empty.
	Value any `yaml:"value"`
	// Type converts the text: string (default), number, integer,
	// boolean, time (output as RFC 3339 in UTC) or date (YYYY-MM-DD).
	Type string `yaml:"type"`
	// Format is the time layout (Go reference-time form, or "unix",
	// "unix_ms"); empty accepts ISO 8601.
	Format string `yaml:"format"`
	// Timezone is the IANA zone of times written without an offset
	// (default UTC).
	Timezone string `yaml:"timezone"`
	// Decimal is the decimal separator of numbers ("." or ",").
	Decimal string `yaml:"decimal"`
	// Required rejects a row whose value is empty.
	Required bool `yaml:"required"`
	// Default replaces an empty value.
	Default any `yaml:"default"`
	// Transform lists text transforms applied in order: trim, lower,
	// upper, sha256 (lower-case hex digest).
	Transform []string `yaml:"transform"`
	// Prefix is prepended to a non-empty text value.
	Prefix string `yaml:"prefix"`
	// Map translates values (after Transform); a value not in it rejects
	// the row.
	Map map[string]string `yaml:"map"`
	// Or is where the value comes from when this field's is empty (a
	// loyalty card, else the receipt number).
	Or *Field `yaml:"or"`

	loc  *time.Location
	path []string // Column split on dots, for JSON Lines
}

type target struct {
	path  []string
	field *Field
}

// UnmarshalYAML accepts a bare column name as well as the full object.
func (f *Field) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		f.Column = n.Value
		return nil
	}
	type plain Field
	return n.Decode((*plain)(f))
}

var callTypes = []string{"identify", "track", "page", "screen", "group"}

// topLevel are the message keys a mapping may set; objects are reached
// with a dot.
var topLevel = map[string]bool{
	"userId": true, "anonymousId": true, "timestamp": true, "groupId": true,
	"traits": true, "properties": true, "context": true, "integrations": true,
}

// LoadMapping reads and checks a mapping file.
func LoadMapping(path string) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	m, err := ParseMapping(b)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	return m, nil
}

// ParseMapping parses and checks a mapping file's contents.
func ParseMapping(b []byte) (*Mapping, error) {
	if err := refuseAliases(b); err != nil {
		return nil, err
	}
	var m Mapping
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("invalid mapping: %w", err)
	}
	sum := sha256.Sum256(b)
	m.hash = hex.EncodeToString(sum[:])
	if err := m.compile(); err != nil {
		return nil, err
	}
	return &m, nil
}

// refuseAliases refuses a mapping file that uses YAML anchors and aliases
// (`&a` … `*a`). A mapping never needs them, and they are dangerous: the
// custom unmarshalers decode each node afresh, which loses yaml's check
// for an alias that refers to itself, so `userId: &a {column: x, or: *a}`
// recursed until the stack overflowed — a fatal error no recover catches,
// in a file a client uploads. The file is parsed to a node tree (aliases
// stay unresolved there) and walked once.
func refuseAliases(b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("invalid mapping: %w", err)
	}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			return fmt.Errorf("invalid mapping: line %d: YAML anchors and aliases (&name, *name) are not allowed in a mapping file", n.Line)
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&doc)
}

// Hash is the SHA-256 of the mapping file; a resumed import must use the
// same mapping.
func (m *Mapping) Hash() string { return m.hash }

func (m *Mapping) compile() error {
	if !slices.Contains(callTypes, m.Type) {
		return fmt.Errorf("type must be one of %s, not %q", strings.Join(callTypes, ", "), m.Type)
	}
	switch m.Format {
	case "", "csv", "jsonl":
	default:
		return fmt.Errorf("format must be csv or jsonl, not %q", m.Format)
	}
	if m.Delimiter == "" {
		m.Delimiter = ","
	}
	if r := []rune(m.Delimiter); len(r) != 1 || !validDelimiter(r[0]) {
		return fmt.Errorf("delimiter must be one character other than a quote or a line break, not %q", m.Delimiter)
	}
	if m.Type == "track" && m.Event == nil {
		return fmt.Errorf("a track mapping needs an event (a name, or {column: ...})")
	}
	if m.Event != nil {
		if err := m.Event.compile("event"); err != nil {
			return err
		}
	}
	if len(m.Key) == 0 && m.GroupBy != "" {
		m.Key = []string{m.GroupBy}
	}
	var err error
	if m.targets, err = compileTargets(m.Fields, true); err != nil {
		return err
	}
	for i := range m.ExternalIDs {
		x := &m.ExternalIDs[i]
		if x.Type == "" {
			return fmt.Errorf("external_ids[%d] needs a type", i)
		}
		if err := x.Field.compile("external_ids." + x.Type); err != nil {
			return err
		}
	}
	if m.Items != nil {
		if m.GroupBy == "" {
			return fmt.Errorf("items need group_by: the column whose consecutive equal values form one message")
		}
		if p := strings.Split(m.Items.Path, "."); len(p) < 2 || !topLevel[p[0]] || p[0] == "userId" || p[0] == "anonymousId" {
			return fmt.Errorf("items.path must be an object path such as properties.products, not %q", m.Items.Path)
		}
		if m.Items.targets, err = compileTargets(m.Items.Fields, false); err != nil {
			return err
		}
		if len(m.Items.targets) == 0 {
			return fmt.Errorf("items need fields")
		}
	}
	if len(m.targets) == 0 && len(m.ExternalIDs) == 0 {
		return fmt.Errorf("the mapping sets no fields")
	}
	return nil
}

func compileTargets(fields map[string]*Field, top bool) ([]target, error) {
	ts := make([]target, 0, len(fields))
	for p, f := range fields {
		if f == nil {
			return nil, fmt.Errorf("field %q has no column or value", p)
		}
		path := strings.Split(p, ".")
		for _, s := range path {
			if s == "" {
				return nil, fmt.Errorf("field %q: empty path segment", p)
			}
		}
		if top {
			if !topLevel[path[0]] {
				return nil, fmt.Errorf("field %q: a message has no %q (use one of userId, anonymousId, timestamp, groupId, traits.X, properties.X, context.X, integrations.X)", p, path[0])
			}
			scalar := path[0] == "userId" || path[0] == "anonymousId" || path[0] == "timestamp" || path[0] == "groupId"
			if scalar != (len(path) == 1) {
				if scalar {
					return nil, fmt.Errorf("field %q: %s is not an object", p, path[0])
				}
				return nil, fmt.Errorf("field %q: name a key inside %s, e.g. %s.email", p, path[0], path[0])
			}
			if path[0] == "context" && len(path) == 2 && path[1] == "externalIds" {
				return nil, fmt.Errorf("field %q: use external_ids", p)
			}
		}
		if err := f.compile(p); err != nil {
			return nil, err
		}
		if top && path[0] == "timestamp" && f.Type == "" {
			f.Type = "time"
		}
		ts = append(ts, target{path: path, field: f})
	}
	sort.Slice(ts, func(i, j int) bool { return strings.Join(ts[i].path, ".") < strings.Join(ts[j].path, ".") })
	return ts, nil
}

var fieldTypes = []string{"", "string", "number", "integer", "boolean", "time", "date"}
var transforms = []string{"trim", "lower", "upper", "sha256"}

func (f *Field) compile(name string) error {
	if f.Column == "" && f.Value == nil {
		return fmt.Errorf("field %q needs a column or a value", name)
	}
	if !slices.Contains(fieldTypes, f.Type) {
		return fmt.Errorf("field %q: type must be one of string, number, integer, boolean, time, date, not %q", name, f.Type)
	}
	for _, t := range f.Transform {
		if !slices.Contains(transforms, t) {
			return fmt.Errorf("field %q: unknown transform %q (trim, lower, upper, sha256)", name, t)
		}
	}
	switch f.Decimal {
	case "", ".", ",":
	default:
		return fmt.Errorf("field %q: decimal must be \".\" or \",\"", name)
	}
	f.loc = time.UTC
	if f.Timezone != "" {
		loc, err := time.LoadLocation(f.Timezone)
		if err != nil {
			return fmt.Errorf("field %q: unknown timezone %q", name, f.Timezone)
		}
		f.loc = loc
	}
	if f.Column != "" {
		f.path = strings.Split(f.Column, ".")
	}
	if f.Or != nil {
		return f.Or.compile(name + ".or")
	}
	return nil
}

// topFields are the fields of the message itself (not of its items): the
// event name, the targets, the external ids.
func (m *Mapping) topFields() []*Field {
	var fs []*Field
	if m.Event != nil {
		fs = append(fs, &m.Event.Field)
	}
	for _, t := range m.targets {
		fs = append(fs, t.field)
	}
	for i := range m.ExternalIDs {
		fs = append(fs, &m.ExternalIDs[i].Field)
	}
	return fs
}

// columns lists every column the mapping reads, for checking a CSV header.
func (m *Mapping) columns() []string {
	var cs []string
	var add func(f *Field)
	add = func(f *Field) {
		if f == nil {
			return
		}
		if f.Column != "" && !slices.Contains(cs, f.Column) {
			cs = append(cs, f.Column)
		}
		add(f.Or)
	}
	for _, f := range m.topFields() {
		add(f)
	}
	if m.Items != nil {
		for _, t := range m.Items.targets {
			add(t.field)
		}
	}
	for _, k := range append(slices.Clone(m.Key), m.GroupBy) {
		if k != "" && !slices.Contains(cs, k) {
			cs = append(cs, k)
		}
	}
	return cs
}
