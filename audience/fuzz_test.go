package audience

import (
	"encoding/json"
	"errors"
	"go/token"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// maxFuzzDefinition bounds fuzzed definitions: deeply nested nots take
// quadratic time today (being fixed separately), and real definitions are
// short.
const maxFuzzDefinition = 4 << 10

// durationInRange reports whether d is a duration ParseDuration can give
// without overflowing: those print as text that reads back to them (what
// FuzzParseDuration checks), while a wrapped-around one prints as a
// negative or too large number of minutes.
func durationInRange(d Duration) bool {
	back, err := ParseDuration(d.String())
	return err == nil && back == d
}

// collapse returns a copy of n with every one-element and/or list replaced
// by its element: Format prints such a list as its element alone, which
// means the same (reported on issue 14: the JSON form accepts them, so
// Parse(Format(n)) differs from n).
func collapse(n *Node) *Node {
	if n == nil {
		return nil
	}
	c := *n
	for len(c.And)+len(c.Or) == 1 {
		c = *append(c.And, c.Or...)[0]
	}
	if c.And != nil {
		c.And = collapseAll(c.And)
	}
	if c.Or != nil {
		c.Or = collapseAll(c.Or)
	}
	c.Not = collapse(c.Not)
	if c.Aggregate != nil {
		a := *c.Aggregate
		a.Where = collapse(a.Where)
		c.Aggregate = &a
	}
	return &c
}

func collapseAll(list []*Node) []*Node {
	out := make([]*Node, len(list))
	for i, x := range list {
		out[i] = collapse(x)
	}
	return out
}

// knownIssue names a reason a valid tree does not survive Format and Parse
// today, or "" when it must. Each is reported on issue 14; the fuzz
// targets step around them so that they keep looking for new ones:
//
//   - a path segment that is a Go keyword (traits["type"], properties.map):
//     Format prints it bare and the scanner reads a keyword, not a name;
//   - a duration past time.Duration's range ("878400w" is accepted and
//     wraps around to a negative window, printed as "-61654302m";
//     "100000w" wraps around to a positive one that prints as too many
//     minutes);
//   - "ago" on an operator other than before and after (the JSON form
//     accepts it, Format prints "contains 1d ago", which does not parse);
//   - op, value or ago on a node that is not a comparison (accepted by the
//     JSON form and dropped).
func knownIssue(n *Node) string {
	if n == nil {
		return ""
	}
	keyword := func(path string) bool {
		for _, seg := range strings.Split(path, ".") {
			if token.Lookup(seg).IsKeyword() {
				return true
			}
		}
		return false
	}
	comparison := n.Trait != "" || n.Property != "" || n.Aggregate != nil
	switch {
	case !comparison && (n.Op != "" || n.Value != nil || n.Ago != 0):
		return "op or value on a node that is not a comparison"
	case n.Ago != 0 && n.Op != "before" && n.Op != "after":
		return "ago on " + n.Op
	case n.Ago != 0 && !durationInRange(n.Ago):
		return "duration out of range"
	case keyword(n.Trait) || keyword(n.Property):
		return "keyword in a path"
	}
	if a := n.Aggregate; a != nil {
		if why := aggIssue(a); why != "" {
			return why
		}
	}
	for _, c := range append(append([]*Node{n.Not}, n.And...), n.Or...) {
		if why := knownIssue(c); why != "" {
			return why
		}
	}
	return ""
}

func aggIssue(a *Aggregate) string {
	for _, seg := range strings.Split(a.Property, ".") {
		if token.Lookup(seg).IsKeyword() {
			return "keyword in a path"
		}
	}
	if w := a.Window; w != nil {
		for _, d := range []Duration{w.Within, w.From, w.To} {
			if d != 0 && !durationInRange(d) {
				return "duration out of range"
			}
		}
	}
	return knownIssue(a.Where)
}

// storableTree reports whether every name and string in the tree is text
// the stores can hold. The text form's Go string literals can spell NUL and
// invalid UTF-8 ("\x00", "\xff"), which the JSON form cannot carry back:
// reported on issue 14, stepped around here.
func storableTree(v any) bool { return !hasBadText(v) }

// hasBadText reports whether any name or string of a tree (a *Node or an
// *Aggregate) cannot be stored as text.
func hasBadText(v any) bool {
	switch x := v.(type) {
	case *Node:
		if x == nil {
			return false
		}
		for _, s := range []string{x.Trait, x.Property, x.Op, x.Audience, x.Consent} {
			if kith.TextProblem(s) != "" {
				return true
			}
		}
		if hasBadValue(x.Value) || hasBadText(x.Aggregate) || hasBadText(x.Not) {
			return true
		}
		for _, c := range append(append([]*Node{}, x.And...), x.Or...) {
			if hasBadText(c) {
				return true
			}
		}
	case *Aggregate:
		if x == nil {
			return false
		}
		return kith.TextProblem(x.Event) != "" || kith.TextProblem(x.Property) != "" || hasBadText(x.Where)
	}
	return false
}

func hasBadValue(v any) bool {
	switch x := v.(type) {
	case string:
		return kith.TextProblem(x) != ""
	case []any:
		for _, e := range x {
			if hasBadValue(e) {
				return true
			}
		}
	}
	return false
}

// checkSyntaxError asserts that a text-form error points into the text.
func checkSyntaxError(t *testing.T, src string, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse(%q): error %T %v carries no position", src, err, err)
	}
	if se.Offset < 0 || se.Offset > len(src) || se.Msg == "" || !strings.Contains(se.Error(), "column") {
		t.Fatalf("Parse(%q): error %+v points outside the text", src, se)
	}
}

// checkTree asserts what a valid condition tree promises: Format prints
// text that Parse reads back to the same tree, the JSON form reads back to
// the same tree, the definition prepares with that text, and it compiles
// (unless it names other audiences, which must then exist).
func checkTree(t *testing.T, from string, n *Node) {
	t.Helper()
	if err := n.Validate(); err != nil {
		t.Fatalf("%s: accepted a tree that does not validate: %v", from, err)
	}
	if why := knownIssue(n); why != "" {
		return
	}
	text := Format(n)
	back, err := Parse(text)
	if err != nil {
		t.Fatalf("%s: Format printed %q, which does not parse: %v", from, text, err)
	}
	if !reflect.DeepEqual(back, collapse(n)) {
		t.Fatalf("%s: Format printed %q, which parses to another tree", from, text)
	}
	if again := Format(back); again != text {
		t.Fatalf("%s: Format printed %q, then %q", from, text, again)
	}
	if !storableTree(n) {
		return
	}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatalf("%s: the tree does not marshal: %v", from, err)
	}
	fromJSON, err := ParseJSON(b)
	if err != nil || !reflect.DeepEqual(fromJSON, n) {
		t.Fatalf("%s: its JSON %s reads back as another tree (%v)", from, b, err)
	}
	d, err := Prepare(kith.Definition{Kind: kith.KindAudience, Key: "a", Text: text})
	if err != nil || d.Text != text {
		t.Fatalf("%s: Prepare(%q) = %q, %v", from, text, d.Text, err)
	}
	// A reference to another audience compiles only when that audience
	// exists; alone, the definition (key "a") has none but itself, which
	// it may not refer to.
	if _, err := Compile([]kith.Definition{d}); err != nil && (len(audienceRefs(n)) == 0 ||
		!strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "refers to itself")) {
		t.Fatalf("%s: Compile(%q): %v", from, text, err)
	}
}

// checkAggregate is checkTree for a computed trait.
func checkAggregate(t *testing.T, from string, a *Aggregate) {
	t.Helper()
	if err := a.Validate(); err != nil {
		t.Fatalf("%s: accepted an aggregate that does not validate: %v", from, err)
	}
	if why := aggIssue(a); why != "" {
		return
	}
	text := FormatAggregate(a)
	back, err := ParseAggregate(text)
	want := *a
	want.Where = collapse(a.Where)
	if err != nil || !reflect.DeepEqual(back, &want) {
		t.Fatalf("%s: FormatAggregate printed %q, which parses to another aggregate (%v)", from, text, err)
	}
	if !storableTree(a) {
		return
	}
	d, err := Prepare(kith.Definition{Kind: kith.KindComputedTrait, Key: "c", Text: text})
	if err != nil || d.Text != text {
		t.Fatalf("%s: Prepare(%q) = %q, %v", from, text, d.Text, err)
	}
	if _, err := Compile([]kith.Definition{d}); err != nil {
		t.Fatalf("%s: Compile(%q): %v", from, text, err)
	}
}

// fuzzTextSeeds are definitions in the text form, valid and not.
var fuzzTextSeeds = []string{
	`traits.country = "NL" and count(event "Order Completed" within 90d) >= 2`,
	`not (traits.a = 1 or traits.b != "x") and audience "vip"`,
	`consent "Advertising" and traits.email exists`,
	`traits["first name"] starts_with "An" or traits.tags contains "gold"`,
	`traits.country in ["NL", "BE", 3, true, -0.5]`,
	`traits.signup before "2024-01-01" and traits.last_seen after 30d ago`,
	`sum(properties.revenue of event "Order Completed" where properties.currency = "EUR" and properties.revenue > 0 between 7d and 30d ago) > 100`,
	`count(event * within 30 days) = 0`,
	`unique_count(properties.sku of event "Product Viewed" where properties.category ends_with "shoes") >= 3`,
	`last(properties.plan of event "Subscribed" where not properties.trial exists) in ["pro", "team"]`,
	`traits["type"] = 1`,
	`count(event "x" within 878400w) > 1`,
	`traits.x = "\x00\xff"`,
	`traits.a == 1e300 or traits.b <= 0x1p-2 or traits.c > 1_000`,
	`traits.a = 1 or`, `count(event "X" within 90x) > 1`, `traits.country = "N`, "traits.a = 1 or\n traits.b = 2",
	`sum(properties.revenue of event "x")`, `most_frequent(context.page.path of event "page")`,
}

// FuzzParseText checks the text form of audiences (Parse) and computed
// traits (ParseAggregate): an error is a *SyntaxError that points into the
// text; a definition that parses survives Format, the JSON form, Prepare
// and Compile unchanged.
func FuzzParseText(f *testing.F) {
	for _, s := range fuzzTextSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > maxFuzzDefinition {
			return
		}
		n, err := Parse(src)
		if err != nil {
			checkSyntaxError(t, src, err)
		} else {
			checkTree(t, "Parse("+src+")", n)
		}
		a, err := ParseAggregate(src)
		if err != nil {
			checkSyntaxError(t, src, err)
		} else {
			checkAggregate(t, "ParseAggregate("+src+")", a)
		}
	})
}

// FuzzParseJSON checks the JSON tree form of audiences (ParseJSON) and
// computed traits (ParseAggregateJSON): an error says what it is about and,
// for a tree that does not validate, where in the tree; a tree that is
// accepted prints as text that reads back to the same tree, and prepares
// and compiles.
func FuzzParseJSON(f *testing.F) {
	for _, s := range fuzzTextSeeds {
		if n, err := Parse(s); err == nil {
			b, _ := json.Marshal(n)
			f.Add(b)
		}
		if a, err := ParseAggregate(s); err == nil {
			b, _ := json.Marshal(a)
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{"trait":"x","op":"contains","value":"a","ago":"1d"}`,
		`{"and":[{"trait":"x","op":"exists"}],"op":"=","value":1}`,
		`{"or":[]}`, `{"not":null}`, `{"trait":"x","op":"in","value":[]}`, `{"trait":"x","op":"=","value":{"a":1}}`,
		`{"aggregate":{"fn":"count","event":"e","window":{"from":"2d","to":"1d"}},"op":">","value":1}`,
		`{"fn":"sum","event":"*","property":"properties.total","where":{"property":"properties.x","op":"=","value":null}}`,
		`{"trait":"x","op":"before","value":"2024-13-01"}`, `{"audience":"vip","consent":"Ads"}`, `{"trait":"x","op":"=","value":1,"colour":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzDefinition {
			return
		}
		n, err := ParseJSON(b)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "condition") {
				t.Fatalf("ParseJSON(%s): error %q does not say where", b, msg)
			}
		} else {
			checkTree(t, "ParseJSON("+string(b)+")", n)
		}
		a, err := ParseAggregateJSON(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseAggregateJSON(%s): an empty error", b)
			}
		} else {
			checkAggregate(t, "ParseAggregateJSON("+string(b)+")", a)
		}
	})
}

// FuzzParseDuration checks durations: positive and within a Duration's
// range, or an error (once, "878400w" wrapped around to a negative
// duration); and the text a Duration prints reads back to it.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90d", "12h", "2w", "30m", "0d", "-1d", "1x", "99999999999999999999d", "878400h", "106751d", "106752d", "15250w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d <= 0 {
			t.Fatalf("ParseDuration(%q) = %d, not positive", s, int64(d))
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, which prints as %q and reads back as %v, %v", s, time.Duration(d), d.String(), time.Duration(back), err)
		}
	})
}
