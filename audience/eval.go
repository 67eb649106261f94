package audience

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// Event is what aggregates see of a logged event: its name, time (event
// time, never later than when it was received) and log position; paths are
// read from its JSON on demand, decoded once.
type Event struct {
	Seq  int64
	Name string
	Type string
	Time time.Time
	Raw  json.RawMessage
	doc  map[string]json.RawMessage
	objs map[*byte]map[string]json.RawMessage
	bad  bool
}

// EventOf adapts a logged message.
func EventOf(m kith.Message) *Event {
	return &Event{Seq: m.Seq, Name: nameOf(m), Type: m.Type, Time: m.EventTime(), Raw: m.Raw}
}

// raw returns the JSON at path ("properties.total"), or nil when absent
// or null. Objects on the way are decoded once per event.
func (e *Event) raw(path string) json.RawMessage {
	if e.doc == nil && !e.bad {
		if json.Unmarshal(e.Raw, &e.doc) != nil {
			e.bad = true
		}
	}
	obj := e.doc
	for {
		seg, rest, nested := strings.Cut(path, ".")
		v, ok := obj[seg]
		if !ok {
			return nil
		}
		if !nested {
			if string(v) == "null" {
				return nil
			}
			return v
		}
		sub, ok := e.objs[v2key(v)]
		if !ok {
			if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &sub) != nil {
				sub = nil
			}
			if e.objs == nil {
				e.objs = map[*byte]map[string]json.RawMessage{}
			}
			e.objs[v2key(v)] = sub
		}
		if sub == nil {
			return nil
		}
		obj, path = sub, rest
	}
}

// v2key identifies a nested object by where its bytes start in the
// event's JSON (every sub-slice of Raw is distinct there).
func v2key(v json.RawMessage) *byte {
	if len(v) == 0 {
		return nil
	}
	return &v[0]
}

// Computed is a computed trait of a Program: the trait Key is the value of
// the aggregate in Slot.
type Computed struct {
	Key  string
	Slot *Slot
}

// Audience is a compiled audience of a Program.
type Audience struct {
	Key  string
	Node *Node
	eval func(*env) bool
	// next is the first instant after now at which the condition's value
	// can change with no new input (relative dates); zero for none.
	next func(*env) time.Time
}

// Program is a set of definitions compiled together: the distinct
// aggregates they use (shared), the computed traits, and the audiences in
// an order where each comes after those it refers to. It is immutable and
// safe for concurrent use.
type Program struct {
	Slots     []*Slot
	Computed  []Computed
	Audiences []*Audience
	byEvent   map[string][]*updater
	anyEvent  []*updater
	// TraitKeys are the event and predicted trait keys the audiences read
	// (computed traits excluded).
	TraitKeys  []string
	computedBy map[string]*Slot
	// ups are the distinct states the slots read, by key.
	ups      []*updater
	upByKey  map[string]*updater
	audIdx   map[string]int
	nTraits  int // event and predicted traits the compiled audiences number
	traitIdx map[string]int
}

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// updaters gives every slot the updater of its state: its own for running
// totals; for windows, one per (event, filter, property), reaching back as
// far as the longest window.
func (p *Program) updaters() error {
	p.byEvent, p.anyEvent, p.upByKey = map[string][]*updater{}, nil, map[string]*updater{}
	family := func(a *Aggregate) string {
		f := *a
		f.Fn, f.Window = FnCount, nil
		if a.Property != "" {
			f.Fn = FnLast // any function that takes the property
		}
		return FormatAggregate(&f)
	}
	horizon := map[string]time.Duration{}
	for _, s := range p.Slots {
		if w := s.Agg.Window; w != nil {
			f := family(s.Agg)
			horizon[f] = max(horizon[f], time.Duration(max(w.Within, w.To)))
		}
	}
	for _, s := range p.Slots {
		a := s.Agg
		key := s.ID
		if a.Window != nil {
			f := family(a)
			key = "w" + hashKey(f+" back "+Duration(horizon[f]).String())
		}
		if u, ok := p.upByKey[key]; ok {
			s.up = u
			continue
		}
		u := &updater{key: key, fn: a.Fn, property: a.Property, where: func(*Event) bool { return true }, windowed: a.Window != nil}
		if u.windowed {
			u.horizon = horizon[family(a)]
		}
		if a.Where != nil {
			f, err := compileWhere(a.Where)
			if err != nil {
				return err
			}
			u.where = f
		}
		s.up = u
		u.idx = len(p.ups)
		p.upByKey[key] = u
		p.ups = append(p.ups, u)
		if a.Event == AnyEvent {
			p.anyEvent = append(p.anyEvent, u)
		} else {
			p.byEvent[a.Event] = append(p.byEvent[a.Event], u)
		}
	}
	return nil
}

// Compile builds a Program from stored definitions; any invalid definition,
// unknown audience reference or cycle is an error naming it.
func Compile(defs []kith.Definition) (*Program, error) {
	p := &Program{}
	slots := map[string]*Slot{}
	slot := func(a *Aggregate) (*Slot, error) {
		key := FormatAggregate(a)
		if s, ok := slots[key]; ok {
			return s, nil
		}
		if a.Where != nil {
			if _, err := compileWhere(a.Where); err != nil {
				return nil, err
			}
		}
		s := &Slot{ID: hashKey(key), Agg: a, idx: len(p.Slots)}
		slots[key] = s
		p.Slots = append(p.Slots, s)
		return s, nil
	}
	computed := map[string]bool{}
	nodes := map[string]*Node{}
	var audKeys []string
	for _, d := range defs {
		switch d.Kind {
		case kith.KindComputedTrait:
			a, err := ParseAggregateJSON(d.Condition)
			if err != nil {
				return nil, fmt.Errorf("computed trait %q: %w", d.Key, err)
			}
			s, err := slot(a)
			if err != nil {
				return nil, fmt.Errorf("computed trait %q: %w", d.Key, err)
			}
			p.Computed = append(p.Computed, Computed{Key: d.Key, Slot: s})
			computed[d.Key] = true
		case kith.KindAudience:
			n, err := ParseJSON(d.Condition)
			if err != nil {
				return nil, fmt.Errorf("audience %q: %w", d.Key, err)
			}
			nodes[d.Key] = n
			audKeys = append(audKeys, d.Key)
		default:
			return nil, fmt.Errorf("definition %q: unknown kind %q", d.Key, d.Kind)
		}
	}
	sort.Strings(audKeys)
	traitKeys := map[string]bool{}
	computedSlot := map[string]*Slot{}
	for _, cp := range p.Computed {
		computedSlot[cp.Key] = cp.Slot
	}
	c := &compiler{slot: slot, computed: computed, computedSlot: computedSlot, traitKeys: traitKeys, traitIdx: map[string]int{}, audIdx: map[string]int{}}
	// Order audiences so each follows the ones it refers to.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(key string, path []string) error
	visit = func(key string, path []string) error {
		switch state[key] {
		case 1:
			return fmt.Errorf("audience %q refers to itself through %s", key, strings.Join(append(path, key), " → "))
		case 2:
			return nil
		}
		n, ok := nodes[key]
		if !ok {
			return fmt.Errorf("audience %q refers to audience %q, which does not exist", path[len(path)-1], key)
		}
		state[key] = 1
		for _, ref := range audienceRefs(n) {
			if err := visit(ref, append(path, key)); err != nil {
				return err
			}
		}
		state[key] = 2
		ev, next, err := c.node(n)
		if err != nil {
			return fmt.Errorf("audience %q: %w", key, err)
		}
		c.audIdx[key] = len(p.Audiences)
		p.Audiences = append(p.Audiences, &Audience{Key: key, Node: n, eval: ev, next: next})
		return nil
	}
	for _, k := range audKeys {
		if err := visit(k, nil); err != nil {
			return nil, err
		}
	}
	for k := range traitKeys {
		p.TraitKeys = append(p.TraitKeys, k)
	}
	if err := p.updaters(); err != nil {
		return nil, err
	}
	p.audIdx = c.audIdx
	p.nTraits, p.traitIdx = len(c.traitIdx), c.traitIdx
	p.computedBy = map[string]*Slot{}
	for _, cp := range p.Computed {
		p.computedBy[cp.Key] = cp.Slot
	}
	sort.Strings(p.TraitKeys)
	return p, nil
}

func audienceRefs(n *Node) []string {
	var out []string
	var walk func(*Node)
	walk = func(n *Node) {
		if n == nil {
			return
		}
		if n.Audience != "" {
			out = append(out, n.Audience)
		}
		for _, c := range n.And {
			walk(c)
		}
		for _, c := range n.Or {
			walk(c)
		}
		walk(n.Not)
	}
	walk(n)
	return out
}

// env is what one profile's evaluation reads: its state at now, with each
// aggregate value and trait decoded at most once, and the memberships
// decided so far (audiences are evaluated in dependency order).
type env struct {
	now       time.Time
	st        *State
	prog      *Program
	aggs      []any
	aggSet    []bool
	states    []*Agg // the profile's aggregate states, by updater
	traitVals []any
	traitSet  []bool
	members   []bool
}

func (e *env) agg(s *Slot) any {
	if e.aggSet[s.idx] {
		return e.aggs[s.idx]
	}
	v := s.Value(e.states[s.up.idx], e.now)
	e.aggs[s.idx], e.aggSet[s.idx] = v, true
	return v
}

// trait is a trait's value: a computed trait's, else the cached event or
// predicted trait's.
// traitAt is the value of the event or predicted trait the compiler
// numbered i: decoded at most once per evaluation, without a map.
func (e *env) traitAt(i int, key string) any {
	if e.traitSet[i] {
		return e.traitVals[i]
	}
	var v any
	if tv, ok := e.st.Traits[key]; ok {
		v = decode(tv.V)
	}
	e.traitVals[i], e.traitSet[i] = v, true
	return v
}

type compiler struct {
	slot         func(*Aggregate) (*Slot, error)
	computedSlot map[string]*Slot
	traitIdx     map[string]int
	computed     map[string]bool
	traitKeys    map[string]bool
	audIdx       map[string]int
}

// node compiles a profile condition.
func (c *compiler) node(n *Node) (func(*env) bool, func(*env) time.Time, error) {
	switch {
	case n.And != nil || n.Or != nil:
		list, isAnd := n.Or, false
		if n.And != nil {
			list, isAnd = n.And, true
		}
		evs := make([]func(*env) bool, len(list))
		nexts := make([]func(*env) time.Time, len(list))
		for i, child := range list {
			var err error
			if evs[i], nexts[i], err = c.node(child); err != nil {
				return nil, nil, err
			}
		}
		ev := func(e *env) bool {
			for _, f := range evs {
				if f(e) != isAnd {
					return !isAnd
				}
			}
			return isAnd
		}
		return ev, earliest(nexts), nil
	case n.Not != nil:
		ev, next, err := c.node(n.Not)
		if err != nil {
			return nil, nil, err
		}
		return func(e *env) bool { return !ev(e) }, next, nil
	case n.Audience != "":
		i, ok := c.audIdx[n.Audience]
		if !ok {
			return nil, nil, fmt.Errorf("audience %q does not exist", n.Audience)
		}
		return func(e *env) bool { return e.members[i] }, nil, nil
	case n.Consent != "":
		// Consent as the Segment spec carries it: the latest event that
		// states the category decides.
		s, err := c.slot(&Aggregate{Fn: FnLast, Event: AnyEvent, Property: "context.consent.categoryPreferences." + n.Consent})
		if err != nil {
			return nil, nil, err
		}
		return func(e *env) bool { return e.agg(s) == true }, nil, nil
	}
	var get func(*env) any
	if n.Aggregate != nil {
		s, err := c.slot(n.Aggregate)
		if err != nil {
			return nil, nil, err
		}
		get = func(e *env) any { return e.agg(s) }
	} else if s := c.computedSlot[n.Trait]; s != nil {
		get = func(e *env) any { return e.agg(s) }
	} else {
		key := n.Trait
		if !c.computed[key] {
			c.traitKeys[key] = true
		}
		i, ok := c.traitIdx[key]
		if !ok {
			i = len(c.traitIdx)
			c.traitIdx[key] = i
		}
		get = func(e *env) any { return e.traitAt(i, key) }
	}
	cmp := comparer(n)
	ev := func(e *env) bool { return cmp(get(e), e.now) }
	var next func(*env) time.Time // nil: the value does not change with time alone
	if n.Ago != 0 {
		ago := time.Duration(n.Ago)
		next = func(e *env) time.Time {
			// The value's truth flips when now - ago passes it.
			t, ok := asTime(get(e))
			if !ok {
				return time.Time{}
			}
			if flip := t.Add(ago); flip.After(e.now) {
				return flip
			}
			return time.Time{}
		}
	}
	return ev, next, nil
}

// earliest combines the children's next-change functions; nil when none
// of them depends on time (most conditions), so evaluating skips it.
func earliest(all []func(*env) time.Time) func(*env) time.Time {
	var fs []func(*env) time.Time
	for _, f := range all {
		if f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(e *env) time.Time {
		var best time.Time
		for _, f := range fs {
			if t := f(e); !t.IsZero() && (best.IsZero() || t.Before(best)) {
				best = t
			}
		}
		return best
	}
}

// compileWhere compiles an event filter.
func compileWhere(n *Node) (func(*Event) bool, error) {
	switch {
	case n.And != nil || n.Or != nil:
		list, isAnd := n.Or, false
		if n.And != nil {
			list, isAnd = n.And, true
		}
		fs := make([]func(*Event) bool, len(list))
		for i, child := range list {
			var err error
			if fs[i], err = compileWhere(child); err != nil {
				return nil, err
			}
		}
		return func(e *Event) bool {
			for _, f := range fs {
				if f(e) != isAnd {
					return !isAnd
				}
			}
			return isAnd
		}, nil
	case n.Not != nil:
		f, err := compileWhere(n.Not)
		if err != nil {
			return nil, err
		}
		return func(e *Event) bool { return !f(e) }, nil
	}
	cmp := comparer(n)
	path := n.Property
	return func(e *Event) bool {
		var v any
		if raw := e.raw(path); raw != nil {
			v = decode(raw)
		}
		// Relative dates in a filter are measured from the event's time.
		return cmp(v, e.Time)
	}, nil
}

// comparer returns the comparison of node n: value v (nil when missing)
// against n's operand, with now for relative dates. A missing value makes
// every comparison false except that it does not exist; "not" turns any
// false into true, so `not traits.x = 1` includes profiles without x.
func comparer(n *Node) func(v any, now time.Time) bool {
	op, want := n.Op, n.Value
	switch op {
	case "exists":
		return func(v any, _ time.Time) bool { return v != nil }
	case "in":
		list := want.([]any)
		return func(v any, _ time.Time) bool {
			for _, w := range list {
				if matchAny(v, func(x any) bool { return equal(x, w) }) {
					return true
				}
			}
			return false
		}
	case "before", "after":
		var abs time.Time
		if n.Ago == 0 {
			abs, _ = parseTime(want.(string))
		}
		ago := time.Duration(n.Ago)
		return func(v any, now time.Time) bool {
			t, ok := asTime(v)
			if !ok {
				return false
			}
			ref := abs
			if ago != 0 {
				ref = now.Add(-ago)
			}
			if op == "before" {
				return t.Before(ref)
			}
			return t.After(ref)
		}
	case "contains":
		return func(v any, _ time.Time) bool {
			if list, ok := v.([]any); ok {
				for _, x := range list {
					if equal(x, want) {
						return true
					}
				}
				return false
			}
			s, ok := v.(string)
			return ok && strings.Contains(s, text(want))
		}
	case "starts_with", "ends_with":
		return func(v any, _ time.Time) bool {
			s, ok := v.(string)
			if !ok {
				return false
			}
			if op == "starts_with" {
				return strings.HasPrefix(s, text(want))
			}
			return strings.HasSuffix(s, text(want))
		}
	case "=":
		return func(v any, _ time.Time) bool { return v != nil && equal(v, want) }
	case "!=":
		return func(v any, _ time.Time) bool { return v != nil && !equal(v, want) }
	}
	return func(v any, _ time.Time) bool {
		c, ok := order(v, want)
		if !ok {
			return false
		}
		switch op {
		case "<":
			return c < 0
		case ">":
			return c > 0
		case "<=":
			return c <= 0
		case ">=":
			return c >= 0
		}
		return false
	}
}

func matchAny(v any, f func(any) bool) bool {
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if f(x) {
				return true
			}
		}
		return false
	}
	return v != nil && f(v)
}

func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// num reads a number, or a string holding one.
func num(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	return 0, false
}

// equal compares numbers numerically (a numeric string equals its
// number), everything else exactly.
func equal(v, w any) bool {
	if _, isNum := w.(float64); isNum {
		a, ok1 := num(v)
		b, ok2 := num(w)
		return ok1 && ok2 && a == b
	}
	if _, isNum := v.(float64); isNum {
		a, ok1 := num(v)
		b, ok2 := num(w)
		return ok1 && ok2 && a == b
	}
	switch w := w.(type) {
	case string:
		s, ok := v.(string)
		return ok && s == w
	case bool:
		b, ok := v.(bool)
		return ok && b == w
	}
	return false
}

// order compares v with w: numerically when both are numbers (or numeric
// strings), else as strings when both are strings; anything else does not
// compare.
func order(v, w any) (int, bool) {
	if a, ok := num(v); ok {
		if b, ok := num(w); ok {
			switch {
			case a < b:
				return -1, true
			case a > b:
				return 1, true
			}
			return 0, true
		}
	}
	a, ok1 := v.(string)
	b, ok2 := w.(string)
	if ok1 && ok2 {
		return strings.Compare(a, b), true
	}
	return 0, false
}

// asTime reads a date or time string; numbers are not dates.
func asTime(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	return parseTime(s)
}
