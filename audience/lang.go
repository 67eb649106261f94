// Package audience owns what marketers define about customers — computed
// traits ("orders in the last 90 days") and audiences ("bought twice in 90
// days and lives in NL") — and keeps the answer current for every profile.
//
// A definition has two equivalent forms: a JSON tree (Node) for programs and
// a short text form for people (Parse, Format). Both compile (Compile) into
// one Program, and that one Program is the only evaluator: the real-time
// engine, the backfill and the dry-run all call it, so they cannot disagree
// about missing values or empty lists. Aggregates over events are kept per
// profile as mergeable states (Agg), so a merge of two profiles combines
// their states and a time window expires on the exact instant it must.
package audience

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node is one node of a condition tree; exactly one group of fields is set:
// And, Or, Not (logic); Trait/Property/Aggregate with Op and Value (a
// comparison); Audience (membership of another audience); Consent (a
// consent category granted).
type Node struct {
	And []*Node `json:"and,omitempty"`
	Or  []*Node `json:"or,omitempty"`
	Not *Node   `json:"not,omitempty"`

	// Trait compares a profile trait (event, predicted or computed).
	Trait string `json:"trait,omitempty"`
	// Property compares a path in an event ("properties.total",
	// "context.campaign.name"); only inside an aggregate's where.
	Property string `json:"property,omitempty"`
	// Aggregate compares a value computed from the profile's events.
	Aggregate *Aggregate `json:"aggregate,omitempty"`
	Op        string     `json:"op,omitempty"`
	// Value is a string, number, bool, or a list of them (for "in"); for
	// "before"/"after" a date ("2024-05-01", RFC 3339) unless Ago is set.
	Value any `json:"value,omitempty"`
	// Ago makes "before"/"after" relative: a Duration before now.
	Ago Duration `json:"ago,omitempty"`

	Audience string `json:"audience,omitempty"`
	Consent  string `json:"consent,omitempty"`
}

// Aggregate functions (Segment's computed trait kinds).
const (
	FnCount        = "count"
	FnSum          = "sum"
	FnAvg          = "avg"
	FnMin          = "min"
	FnMax          = "max"
	FnMostFrequent = "most_frequent"
	FnFirst        = "first"
	FnLast         = "last"
	FnUniqueList   = "unique_list"
	FnUniqueCount  = "unique_count"
)

var aggFns = []string{FnCount, FnSum, FnAvg, FnMin, FnMax, FnMostFrequent, FnFirst, FnLast, FnUniqueList, FnUniqueCount}

// AnyEvent as an Aggregate's Event matches every event.
const AnyEvent = "*"

// Aggregate is a value computed from a profile's events: Fn over the
// events named Event (track event, or page/screen name; AnyEvent for all)
// that match Where, within Window, of the value at Property (every Fn but
// count needs one).
type Aggregate struct {
	Fn       string  `json:"fn"`
	Event    string  `json:"event"`
	Property string  `json:"property,omitempty"`
	Where    *Node   `json:"where,omitempty"`
	Window   *Window `json:"window,omitempty"`
}

// Window limits an aggregate to recent events: those within the last
// Within, or those between From and To ago (From < To).
type Window struct {
	Within Duration `json:"within,omitempty"`
	From   Duration `json:"from,omitempty"`
	To     Duration `json:"to,omitempty"`
}

// Duration is a time span written as a number and a unit: "90d", "12h",
// "2w", "30m" (minutes). It marshals to that text form.
type Duration time.Duration

var durRE = regexp.MustCompile(`^(\d+)(m|h|d|w)$`)

// ParseDuration reads the text form of a Duration.
func ParseDuration(s string) (Duration, error) {
	m := durRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("duration %q: want a number and a unit m, h, d or w, e.g. 90d", s)
	}
	// At most 878400 of a unit (100 years of hours), as always, and no
	// more than the count of nanoseconds can hold (about 292 years).
	unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	most := min(100*366*24, math.MaxInt64/int64(unit))
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 || n > most {
		return 0, fmt.Errorf("duration %q: out of range (1 to %d%s)", s, most, m[2])
	}
	return Duration(time.Duration(n) * unit), nil
}

// String prints the largest unit up to days that divides d exactly.
func (d Duration) String() string {
	td := time.Duration(d)
	for _, u := range []struct {
		s string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}} {
		if td%u.d == 0 {
			return strconv.FormatInt(int64(td/u.d), 10) + u.s
		}
	}
	return strconv.FormatInt(int64(td/time.Minute), 10) + "m"
}

// MarshalJSON writes the text form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads the text form.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"90d\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Comparison operators.
var ops = []string{"=", "!=", "<", ">", "<=", ">=", "contains", "starts_with", "ends_with", "exists", "in", "before", "after"}

// MaxDepth is how deeply a definition may nest: a node's depth is the
// number of nodes above it (each not, and, or, and an aggregate with its
// where, counts one), and no node may lie deeper. The text parser counts
// each not, "(" and where as it reads them and stops at the first one past
// the limit, and ParseJSON measures the JSON's nesting before decoding it,
// so a hostile definition (a megabyte of "not") fails after one linear pass
// instead of costing time quadratic in its size. Real definitions nest a
// few levels.
const MaxDepth = 100

// errTooDeep is the error for a definition nested deeper than MaxDepth.
func errTooDeep(at string) error {
	return fmt.Errorf("%s: nested deeper than %d levels (the limit on not, and, or, parentheses and where)", at, MaxDepth)
}

// maxJSONNesting bounds the JSON nesting of a tree within MaxDepth: the
// root is one object, and each level adds at most two (an and/or list and
// its element object; an aggregate object and its where), plus one for an
// "in" list at a leaf.
const maxJSONNesting = 2*MaxDepth + 2

// jsonTooDeep reports whether the JSON text b nests objects and arrays
// deeper than limit, in one pass over its bytes and without decoding it.
// Brackets inside strings do not count.
func jsonTooDeep(b []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// Validate checks a condition tree: known operators, values of the right
// shape, aggregates well formed, event paths only inside a where, no node
// deeper than MaxDepth. It is what ParseJSON runs; Parse produces only
// valid trees.
func (n *Node) Validate() error { return n.validate(false, "condition", 0) }

// validate checks n, which lies depth nodes below the root. The depth is
// checked before anything else, so the paths in error messages (at) never
// grow longer than MaxDepth steps.
func (n *Node) validate(inWhere bool, at string, depth int) error {
	if depth > MaxDepth {
		return errTooDeep(at)
	}
	if n == nil {
		return fmt.Errorf("%s: empty condition", at)
	}
	groups := 0
	for _, set := range []bool{n.And != nil, n.Or != nil, n.Not != nil, n.Trait != "" || n.Property != "" || n.Aggregate != nil, n.Audience != "", n.Consent != ""} {
		if set {
			groups++
		}
	}
	if groups != 1 {
		return fmt.Errorf("%s: a node has exactly one of and, or, not, a comparison (trait, property or aggregate with op), audience, consent", at)
	}
	switch {
	case n.And != nil || n.Or != nil:
		list, name := n.And, "and"
		if n.Or != nil {
			list, name = n.Or, "or"
		}
		if len(list) == 0 {
			return fmt.Errorf("%s.%s: empty list", at, name)
		}
		for i, c := range list {
			if err := c.validate(inWhere, fmt.Sprintf("%s.%s[%d]", at, name, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	case n.Not != nil:
		return n.Not.validate(inWhere, at+".not", depth+1)
	case n.Audience != "" || n.Consent != "":
		if inWhere {
			return fmt.Errorf("%s: audience and consent conditions are about profiles, not inside an event filter", at)
		}
		return nil
	}
	left := 0
	for _, set := range []bool{n.Trait != "", n.Property != "", n.Aggregate != nil} {
		if set {
			left++
		}
	}
	if left != 1 {
		return fmt.Errorf("%s: a comparison has exactly one of trait, property, aggregate", at)
	}
	if inWhere && n.Property == "" {
		return fmt.Errorf("%s: an event filter compares event properties (property), not traits or aggregates", at)
	}
	if !inWhere && n.Property != "" {
		return fmt.Errorf("%s: property %q compares an event's property: use it inside an aggregate's where", at, n.Property)
	}
	if n.Aggregate != nil {
		if err := n.Aggregate.validate(depth + 1); err != nil {
			return fmt.Errorf("%s.aggregate: %w", at, err)
		}
	}
	if n.Property != "" {
		if err := validPath(n.Property); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
	}
	if !slices.Contains(ops, n.Op) {
		return fmt.Errorf("%s: unknown op %q (want one of %s)", at, n.Op, strings.Join(ops, " "))
	}
	switch n.Op {
	case "exists":
		if n.Value != nil || n.Ago != 0 {
			return fmt.Errorf("%s: exists takes no value", at)
		}
	case "in":
		list, ok := n.Value.([]any)
		if !ok || len(list) == 0 {
			return fmt.Errorf("%s: in takes a non-empty list of values", at)
		}
		for _, v := range list {
			if !scalar(v) {
				return fmt.Errorf("%s: in takes a list of strings, numbers or booleans", at)
			}
		}
	case "before", "after":
		if n.Ago != 0 {
			if n.Value != nil {
				return fmt.Errorf("%s: %s takes a date or a duration ago, not both", at, n.Op)
			}
			break
		}
		s, ok := n.Value.(string)
		if !ok {
			return fmt.Errorf("%s: %s takes a date string or ago", at, n.Op)
		}
		if _, ok := parseTime(s); !ok {
			return fmt.Errorf("%s: %q is not a date (want 2006-01-02 or RFC 3339)", at, s)
		}
	case "contains", "starts_with", "ends_with":
		if !scalar(n.Value) {
			return fmt.Errorf("%s: %s takes a string, number or boolean", at, n.Op)
		}
	default:
		if !scalar(n.Value) {
			return fmt.Errorf("%s: %s takes a string, number or boolean", at, n.Op)
		}
		if n.Ago != 0 {
			return fmt.Errorf("%s: ago only goes with before and after", at)
		}
	}
	return nil
}

// Validate checks an aggregate on its own (a computed trait's definition).
func (a *Aggregate) Validate() error { return a.validate(0) }

// validate checks an aggregate that lies depth nodes below the root of its
// definition; its where lies one deeper.
func (a *Aggregate) validate(depth int) error {
	if depth > MaxDepth {
		return errTooDeep("aggregate")
	}
	if !slices.Contains(aggFns, a.Fn) {
		return fmt.Errorf("unknown function %q (want one of %s)", a.Fn, strings.Join(aggFns, " "))
	}
	if a.Event == "" {
		return fmt.Errorf("%s: event name missing (use %q for any event)", a.Fn, AnyEvent)
	}
	if a.Fn == FnCount && a.Property != "" {
		return fmt.Errorf("count takes no property")
	}
	if a.Fn != FnCount {
		if a.Property == "" {
			return fmt.Errorf("%s needs a property (e.g. %s(properties.revenue of event %q))", a.Fn, a.Fn, a.Event)
		}
		if err := validPath(a.Property); err != nil {
			return err
		}
	}
	if a.Where != nil {
		if err := a.Where.validate(true, "where", depth+1); err != nil {
			return err
		}
	}
	if w := a.Window; w != nil {
		switch {
		case w.Within != 0 && (w.From != 0 || w.To != 0):
			return fmt.Errorf("window: within, or from and to, not both")
		case w.Within == 0 && w.To == 0:
			return fmt.Errorf("window: empty (give within, or from and to)")
		case w.Within == 0 && w.From >= w.To:
			return fmt.Errorf("window: from (%s) must be less than to (%s)", w.From, w.To)
		}
	}
	return nil
}

func validPath(p string) error {
	parts := strings.Split(p, ".")
	if len(parts) < 2 || !slices.Contains([]string{"properties", "context", "traits"}, parts[0]) {
		return fmt.Errorf("event path %q: want properties.X, context.X or traits.X", p)
	}
	for _, s := range parts[1:] {
		if s == "" {
			return fmt.Errorf("event path %q: empty segment", p)
		}
	}
	return nil
}

func scalar(v any) bool {
	switch v.(type) {
	case string, float64, bool:
		return true
	}
	return false
}

// ParseJSON reads and validates a JSON condition tree. Numbers become
// float64, so a tree prints and parses back to itself.
func ParseJSON(b []byte) (*Node, error) {
	if jsonTooDeep(b, maxJSONNesting) {
		return nil, errTooDeep("condition")
	}
	var n Node
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&n); err != nil {
		return nil, fmt.Errorf("condition: %w", err)
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}

// ParseAggregateJSON reads and validates a computed trait's JSON form.
func ParseAggregateJSON(b []byte) (*Aggregate, error) {
	if jsonTooDeep(b, maxJSONNesting) {
		return nil, errTooDeep("computed trait")
	}
	var a Aggregate
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("computed trait: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Format prints a tree in the text form; Parse(Format(n)) equals n.
func Format(n *Node) string {
	var b strings.Builder
	formatNode(&b, n, 0)
	return b.String()
}

// FormatAggregate prints an aggregate in the text form.
func FormatAggregate(a *Aggregate) string {
	var b strings.Builder
	formatAgg(&b, a)
	return b.String()
}

// precedence: or 1, and 2, not/atoms 3.
func formatNode(b *strings.Builder, n *Node, outer int) {
	switch {
	case n.Or != nil || n.And != nil:
		list, word, prec := n.Or, " or ", 1
		if n.And != nil {
			list, word, prec = n.And, " and ", 2
		}
		if outer >= prec {
			b.WriteByte('(')
		}
		for i, c := range list {
			if i > 0 {
				b.WriteString(word)
			}
			formatNode(b, c, prec)
		}
		if outer >= prec {
			b.WriteByte(')')
		}
	case n.Not != nil:
		b.WriteString("not ")
		formatNode(b, n.Not, 3)
	case n.Audience != "":
		b.WriteString("audience " + strconv.Quote(n.Audience))
	case n.Consent != "":
		b.WriteString("consent " + strconv.Quote(n.Consent))
	default:
		switch {
		case n.Trait != "":
			b.WriteString(formatPath("traits", n.Trait))
		case n.Property != "":
			head, rest, _ := strings.Cut(n.Property, ".")
			b.WriteString(formatPath(head, rest))
		default:
			formatAgg(b, n.Aggregate)
		}
		b.WriteString(" " + n.Op)
		switch {
		case n.Op == "exists":
		case n.Ago != 0:
			b.WriteString(" " + n.Ago.String() + " ago")
		default:
			b.WriteString(" " + formatValue(n.Value))
		}
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// formatPath prints head.a.b, quoting segments that are not identifiers
// (head["a b"]). A key containing dots is quoted whole.
func formatPath(head, rest string) string {
	if identRE.MatchString(rest) {
		return head + "." + rest
	}
	segs := strings.Split(rest, ".")
	ok := true
	for _, s := range segs {
		ok = ok && identRE.MatchString(s)
	}
	if ok && head != "traits" {
		return head + "." + rest
	}
	return head + "[" + strconv.Quote(rest) + "]"
}

func formatAgg(b *strings.Builder, a *Aggregate) {
	b.WriteString(a.Fn + "(")
	if a.Property != "" {
		head, rest, _ := strings.Cut(a.Property, ".")
		b.WriteString(formatPath(head, rest) + " of ")
	}
	b.WriteString("event ")
	if a.Event == AnyEvent {
		b.WriteString("*")
	} else {
		b.WriteString(strconv.Quote(a.Event))
	}
	if a.Where != nil {
		b.WriteString(" where ")
		formatNode(b, a.Where, 0)
	}
	if w := a.Window; w != nil {
		if w.Within != 0 {
			b.WriteString(" within " + w.Within.String())
		} else {
			b.WriteString(" between " + w.From.String() + " and " + w.To.String() + " ago")
		}
	}
	b.WriteByte(')')
}

func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = formatValue(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "null"
}

// parseTime reads a date or an RFC 3339 time.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
