package audience

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func day(n float64) time.Time { return t0.Add(time.Duration(n * 24 * float64(time.Hour))) }

func msg(seq int64, name string, at time.Time, props string) kith.Message {
	typ := "track"
	if name == "page" {
		typ = "page"
	}
	return kith.Message{Seq: seq, Type: typ, Event: name, Timestamp: at, ReceivedAt: at,
		Raw: json.RawMessage(fmt.Sprintf(`{"type":%q,"event":%q,"properties":%s}`, typ, name, props))}
}

func computed(key, text string) kith.Definition {
	d, err := Prepare(kith.Definition{Kind: kith.KindComputedTrait, Key: key, Text: text})
	if err != nil {
		panic(err)
	}
	return d
}

func audienceDef(key, text string) kith.Definition {
	d, err := Prepare(kith.Definition{Kind: kith.KindAudience, Key: key, Text: text})
	if err != nil {
		panic(err)
	}
	return d
}

func orders() []kith.Message {
	return []kith.Message{
		msg(1, "Order Completed", day(0), `{"revenue":10,"currency":"EUR","sku":"a","category":"shoes"}`),
		msg(2, "Order Completed", day(10), `{"revenue":"30.5","currency":"USD","sku":"b","category":"shoes"}`),
		msg(3, "Order Completed", day(20), `{"revenue":5,"currency":"EUR","sku":"a","category":"hats"}`),
		msg(4, "Order Completed", day(25), `{"currency":"EUR","sku":"c"}`),
		msg(5, "Product Viewed", day(26), `{"sku":"z"}`),
	}
}

// TestComputedTraitKinds checks every aggregate function, with and without
// filters and windows, at several instants of a controllable clock.
func TestComputedTraitKinds(t *testing.T) {
	tests := []struct {
		text string
		now  time.Time
		want any
	}{
		{`count(event "Order Completed")`, day(30), 4.0},
		{`count(event *)`, day(30), 5.0},
		{`count(event "Nothing")`, day(30), 0.0},
		{`count(event "Order Completed" where properties.currency = "EUR")`, day(30), 3.0},
		{`count(event "Order Completed" where properties.currency != "EUR")`, day(30), 1.0},
		{`count(event "Order Completed" where not properties.revenue exists)`, day(30), 1.0},
		{`count(event "Order Completed" within 7d)`, day(30), 1.0},              // day 25 only
		{`count(event "Order Completed" within 7d)`, day(32), 0.0},              // day 25 left at day 32
		{`count(event "Order Completed" within 7d)`, day(31.99), 1.0},           // not yet
		{`count(event "Order Completed" between 5d and 15d ago)`, day(30), 2.0}, // days 20 and 25
		{`count(event "Order Completed" between 5d and 15d ago)`, day(36), 1.0}, // day 25 entered, day 20 left (at 35)
		{`sum(properties.revenue of event "Order Completed")`, day(30), 45.5},
		{`sum(properties.revenue of event "Order Completed" within 1d)`, day(30), 0.0},
		{`avg(properties.revenue of event "Order Completed")`, day(30), 45.5 / 3},
		{`avg(properties.revenue of event "Order Completed" within 1d)`, day(30), nil},
		{`min(properties.revenue of event "Order Completed")`, day(30), 5.0},
		{`max(properties.revenue of event "Order Completed")`, day(30), 30.5},
		{`max(properties.revenue of event "Order Completed" where properties.revenue < 20)`, day(30), 10.0},
		{`first(properties.sku of event "Order Completed")`, day(30), "a"},
		{`last(properties.sku of event "Order Completed")`, day(30), "c"},
		{`last(properties.revenue of event "Order Completed")`, day(30), 5.0}, // the last event without revenue does not count
		{`most_frequent(properties.sku of event "Order Completed")`, day(30), "a"},
		{`most_frequent(properties.category of event "Order Completed")`, day(30), "shoes"},
		{`unique_list(properties.category of event "Order Completed")`, day(30), []any{"hats", "shoes"}},
		{`unique_list(properties.category of event "Order Completed" within 1d)`, day(30), []any{}},
		{`unique_count(properties.sku of event "Order Completed")`, day(30), 3.0},
		{`unique_count(properties.sku of event "Order Completed" within 12d)`, day(30), 2.0},
		{`count(event "Order Completed" where properties.category in ["hats", "caps"])`, day(30), 1.0},
		{`count(event "Order Completed" where properties.sku starts_with "a")`, day(30), 2.0},
		{`count(event "Order Completed" where properties.category ends_with "oes")`, day(30), 2.0},
		{`count(event "Order Completed" where properties.category contains "ho")`, day(30), 2.0},
		{`count(event "Order Completed" where properties.revenue >= 10)`, day(30), 2.0},
		{`count(event "Order Completed" where properties.revenue <= 10)`, day(30), 2.0},
		{`count(event "Order Completed" where properties.revenue > 10)`, day(30), 1.0},
	}
	for _, tt := range tests {
		prog, err := Compile([]kith.Definition{computed("x", tt.text)})
		if err != nil {
			t.Fatalf("%s: %v", tt.text, err)
		}
		st := &State{}
		for _, m := range orders() {
			prog.Apply(st, EventOf(m), day(26))
		}
		got := prog.ComputedValues(st, tt.now)["x"]
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s at day %.2f = %#v, want %#v", tt.text, tt.now.Sub(t0).Hours()/24, got, tt.want)
		}
	}
}

// TestConditions checks every condition type, including missing values and
// empty lists.
func TestConditions(t *testing.T) {
	traits := map[string]string{
		"country": `"NL"`, "age": `31`, "age_s": `"42"`, "vip": `true`, "name": `"Anna Jansen"`,
		"signup": `"2026-01-15"`, "seen": `"2026-02-20T10:00:00Z"`, "tags": `["gold","eu"]`, "nothing": `null`,
	}
	defs := []kith.Definition{
		computed("orders", `count(event "Order Completed")`),
		computed("cats", `unique_list(properties.category of event "Nothing")`),
		audienceDef("base", `traits.country = "NL"`),
	}
	tests := []struct {
		cond string
		want bool
	}{
		{`traits.country = "NL"`, true},
		{`traits.country != "NL"`, false},
		{`traits.country != "BE"`, true},
		{`traits.missing = "x"`, false},
		{`traits.missing != "x"`, false},   // a missing value compares false...
		{`not traits.missing = "x"`, true}, // ...and not turns that around
		{`traits.nothing exists`, false},   // null is missing
		{`traits.country exists`, true},
		{`traits.age > 30`, true},
		{`traits.age < 30`, false},
		{`traits.age >= 31 and traits.age <= 31`, true},
		{`traits.age_s = 42`, true}, // numeric strings compare as numbers
		{`traits.age_s > 40`, true},
		{`traits.country > 5`, false}, // a string does not order against a number
		{`traits.vip = true`, true},
		{`traits.vip = "true"`, false},
		{`traits.name contains "Jans"`, true},
		{`traits.name starts_with "Anna"`, true},
		{`traits.name ends_with "Anna"`, false},
		{`traits.tags contains "gold"`, true},
		{`traits.tags in ["eu", "us"]`, true},
		{`traits.country in ["BE", "DE"]`, false},
		{`traits.signup before "2026-02-01"`, true},
		{`traits.signup after "2026-02-01"`, false},
		{`traits.seen after 10d ago`, true},        // now is day 0 (2026-03-01 12:00)
		{`traits.seen after 5d ago`, false},        // seen 9 days ago
		{`traits.name before "2026-01-01"`, false}, // not a date
		{`traits.orders = 4`, true},                // computed traits are traits
		{`traits.cats contains "x"`, false},        // an empty list contains nothing
		{`traits.cats exists`, true},               // but exists
		{`count(event "Order Completed" within 30d) >= 2`, false},
		{`count(event "Order Completed") >= 2`, true},
		{`sum(properties.revenue of event "Order Completed") > 45`, true},
		{`avg(properties.revenue of event "Nothing") > 0`, false},
		{`not avg(properties.revenue of event "Nothing") > 0`, true},
		{`audience "base"`, true},
		{`not audience "base" or traits.vip = true`, true},
		{`(traits.country = "BE" or traits.age > 30) and not traits.vip = false`, true},
		{`consent "Advertising"`, true},
		{`consent "Analytics"`, false},
		{`consent "Unknown"`, false},
	}
	for _, tt := range tests {
		all := append(slices.Clone(defs), audienceDef("x", tt.cond))
		prog, err := Compile(all)
		if err != nil {
			t.Fatalf("%s: %v", tt.cond, err)
		}
		st := &State{}
		for k, v := range traits {
			if v != "null" {
				st.SetTrait(k, TraitValue{V: json.RawMessage(v)})
			}
		}
		for _, m := range orders() {
			prog.Apply(st, EventOf(m), day(-100))
		}
		consent := kith.Message{Seq: 9, Type: "track", Event: "Segment Consent Preference Updated", Timestamp: day(-50), ReceivedAt: day(-50),
			Raw: json.RawMessage(`{"context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":false}}}}`)}
		prog.Apply(st, EventOf(consent), day(-100))
		// At t0 only the order of day 0 is within the last 30 days.
		members, _ := prog.Evaluate(st, t0)
		if members["x"] != tt.want {
			t.Errorf("%s = %v, want %v", tt.cond, members["x"], tt.want)
		}
	}
}

func TestCompileRejectsCyclesAndUnknownAudiences(t *testing.T) {
	_, err := Compile([]kith.Definition{audienceDef("a", `audience "b"`), audienceDef("b", `not audience "a"`)})
	if err == nil || !strings.Contains(err.Error(), "refers to itself") {
		t.Errorf("cycle: %v", err)
	}
	_, err = Compile([]kith.Definition{audienceDef("a", `audience "nope"`)})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("unknown: %v", err)
	}
}

// TestWindowExpiryIsScheduled: "not seen for 30 days" flips exactly when
// the last event is 30 days old, and Evaluate says when that is.
func TestWindowExpiryIsScheduled(t *testing.T) {
	prog, err := Compile([]kith.Definition{
		audienceDef("lapsed", `count(event * within 30d) = 0 and count(event *) > 0`),
		audienceDef("recent_buyer", `count(event "Order Completed" between 1d and 7d ago) >= 1`),
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &State{}
	prog.Apply(st, EventOf(msg(1, "Order Completed", day(0), `{}`)), day(0))
	m, due := prog.Evaluate(st, day(0))
	if m["lapsed"] || m["recent_buyer"] || !due.Equal(day(1)) {
		t.Fatalf("day 0: %v, due %v (want day 1: the order enters recent_buyer)", m, due)
	}
	m, due = prog.Evaluate(st, day(1))
	if !m["recent_buyer"] || !due.Equal(day(7)) {
		t.Fatalf("day 1: %v, due %v", m, due)
	}
	m, due = prog.Evaluate(st, day(7))
	if m["recent_buyer"] || m["lapsed"] || !due.Equal(day(30)) {
		t.Fatalf("day 7: %v, due %v", m, due)
	}
	m, _ = prog.Evaluate(st, day(30).Add(-time.Microsecond))
	if m["lapsed"] {
		t.Fatal("lapsed before day 30")
	}
	m, due = prog.Evaluate(st, day(30))
	if !m["lapsed"] || !due.IsZero() {
		t.Fatalf("day 30: %v, due %v", m, due)
	}
	if len(st.Aggs) == 0 {
		t.Fatal("aggregate states dropped")
	}
}

// TestMergeEqualsOneProfile is the property the engine rests on: folding
// events into two profiles and merging them gives the same values as
// folding them all into one, for every function, window and split.
func TestMergeEqualsOneProfile(t *testing.T) {
	var defs []kith.Definition
	for i, fn := range aggFns {
		prop := "properties.v of "
		if fn == FnCount {
			prop = ""
		}
		defs = append(defs,
			computed(fmt.Sprintf("a%d", i), fmt.Sprintf(`%s(%sevent "E")`, fn, prop)),
			computed(fmt.Sprintf("w%d", i), fmt.Sprintf(`%s(%sevent "E" within 10d)`, fn, prop)),
			computed(fmt.Sprintf("b%d", i), fmt.Sprintf(`%s(%sevent * between 2d and 9d ago)`, fn, prop)))
	}
	prog, err := Compile(defs)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	vals := []string{`1`, `2.5`, `"x"`, `"y"`, `"3"`, `true`, `null`}
	for trial := 0; trial < 200; trial++ {
		n := r.IntN(30)
		var msgs []kith.Message
		for i := range n {
			props := `{}`
			if r.IntN(5) > 0 {
				props = fmt.Sprintf(`{"v":%s}`, vals[r.IntN(len(vals))])
			}
			name := "E"
			if r.IntN(4) == 0 {
				name = "F"
			}
			msgs = append(msgs, msg(int64(i+1), name, day(r.Float64()*20), props))
		}
		now := day(20)
		one := &State{}
		for _, m := range msgs {
			prog.Apply(one, EventOf(m), day(0))
		}
		a, b := &State{}, &State{}
		for _, m := range msgs {
			if r.IntN(2) == 0 {
				prog.Apply(a, EventOf(m), day(0))
			} else {
				prog.Apply(b, EventOf(m), day(0))
			}
		}
		b.Merge(a)
		for _, at := range []time.Time{now, day(25), day(29.5)} {
			if got, want := prog.ComputedValues(b, at), prog.ComputedValues(one, at); !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d at %v: merged %v, one profile %v", trial, at, got, want)
			}
		}
	}
}

// The stored form keeps everything: a state decoded from its encoding
// encodes to the same bytes and gives the same values.
func TestStateCodecRoundTrip(t *testing.T) {
	prog, err := Compile([]kith.Definition{
		computed("a", `most_frequent(properties.sku of event "Order Completed")`),
		computed("b", `avg(properties.revenue of event "Order Completed" within 20d)`),
		computed("c", `first(properties.sku of event *)`),
		computed("d", `last(properties.revenue of event *)`),
		audienceDef("x", `traits.country = "NL"`),
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Due: 7}
	st.SetTrait("country", TraitValue{V: json.RawMessage(`"NL"`), T: 5, P: true})
	for _, m := range orders() {
		prog.Apply(st, EventOf(m), day(26))
	}
	enc := st.Encode()
	got, err := DecodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Encode(), enc) || !reflect.DeepEqual(prog.ComputedValues(got, day(30)), prog.ComputedValues(st, day(30))) {
		t.Fatalf("round trip changed the state: %+v", got)
	}
	for i := range enc {
		if _, err := DecodeState(enc[:i]); err == nil {
			t.Fatalf("a state cut at %d bytes decoded", i)
		}
	}
}
