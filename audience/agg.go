package audience

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Entry is one event's contribution to an aggregate: its time (unix µs),
// its log position, and the value at the aggregate's property (absent for
// count).
type Entry struct {
	T int64           `json:"t"`
	Q int64           `json:"q"`
	V json.RawMessage `json:"v,omitempty"`
}

// Agg is the state of one aggregate for one profile. It is a commutative
// monoid: Add folds in an event, Merge combines two profiles' states, and
// the order of either does not change the result — so a profile merged
// after the fact ends up with exactly the state of one that was always one
// profile. An aggregate without a window keeps running totals; one with a
// window keeps the entries still inside it (E), so it can forget each one
// the moment it leaves.
type Agg struct {
	N  int64            `json:"n,omitempty"`  // events
	K  int64            `json:"k,omitempty"`  // numeric values
	S  float64          `json:"s,omitempty"`  // their sum (±Inf once it overflowed: see result)
	Lo float64          `json:"lo,omitempty"` // their minimum (when K > 0)
	Hi float64          `json:"hi,omitempty"` // their maximum (when K > 0)
	F  *Entry           `json:"f,omitempty"`  // first value
	L  *Entry           `json:"l,omitempty"`  // last value
	M  map[string]int64 `json:"m,omitempty"`  // value (JSON) → occurrences
	E  []Entry          `json:"e,omitempty"`  // windowed: entries inside the horizon
}

// number reads a JSON number, or a string holding one.
func number(v json.RawMessage) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// add folds e into a running (unwindowed) state.
func (a *Agg) add(fn string, e Entry) {
	a.N++
	if fn == FnCount {
		return
	}
	if len(e.V) == 0 {
		return // the property is absent: only counted
	}
	switch fn {
	case FnSum, FnAvg, FnMin, FnMax:
		f, ok := number(e.V)
		if !ok {
			return
		}
		if a.K == 0 || f < a.Lo {
			a.Lo = f
		}
		if a.K == 0 || f > a.Hi {
			a.Hi = f
		}
		a.K++
		a.S += f
	case FnFirst:
		if a.F == nil || before(e, *a.F) {
			c := e
			a.F = &c
		}
	case FnLast:
		if a.L == nil || before(*a.L, e) {
			c := e
			a.L = &c
		}
	case FnMostFrequent, FnUniqueList, FnUniqueCount:
		if a.M == nil {
			a.M = map[string]int64{}
		}
		a.M[string(e.V)]++
	}
}

func before(x, y Entry) bool { return x.T < y.T || (x.T == y.T && x.Q < y.Q) }

// merge folds b into a running (unwindowed) state.
func (a *Agg) merge(b *Agg) {
	a.N += b.N
	if b.K > 0 {
		if a.K == 0 || b.Lo < a.Lo {
			a.Lo = b.Lo
		}
		if a.K == 0 || b.Hi > a.Hi {
			a.Hi = b.Hi
		}
		a.K += b.K
		a.S += b.S
	}
	if b.F != nil && (a.F == nil || before(*b.F, *a.F)) {
		a.F = b.F
	}
	if b.L != nil && (a.L == nil || before(*a.L, *b.L)) {
		a.L = b.L
	}
	for k, n := range b.M {
		if a.M == nil {
			a.M = map[string]int64{}
		}
		a.M[k] += n
	}
	if len(b.E) > 0 {
		a.E = append(a.E, b.E...)
		sortEntries(a.E)
	}
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool { return before(es[i], es[j]) })
}

// result is an aggregate's value: nil when it has none (the average of no
// values), else a float64, a []any, or a decoded JSON scalar. It is never
// an infinity or NaN, so it always encodes as JSON.
//
// The values summed are finite (number refuses the rest), but their sum
// can overflow: two revenues of 1.7e308 make +Inf. The running sum S keeps
// the infinity, so an overflow is never forgotten by later additions, and
// here a sum that overflowed saturates to ±math.MaxFloat64: the true sum
// lies at or beyond it, so comparisons such as sum(...) > 1000 still
// answer as they would on the true value. An average is finite whenever
// its sum is, but cannot be known from a sum that overflowed: it is then
// nil (no value), like the average of no values. A sum that overflowed in
// both directions (+Inf and -Inf, so NaN) has no value either.
func (a *Agg) result(fn string) any {
	switch fn {
	case FnCount:
		return float64(a.N)
	case FnSum:
		switch {
		case math.IsNaN(a.S):
			return nil
		case math.IsInf(a.S, 1):
			return math.MaxFloat64
		case math.IsInf(a.S, -1):
			return -math.MaxFloat64
		}
		return a.S
	case FnAvg:
		if a.K == 0 || math.IsNaN(a.S) || math.IsInf(a.S, 0) {
			return nil
		}
		return a.S / float64(a.K)
	case FnMin, FnMax:
		if a.K == 0 {
			return nil
		}
		if fn == FnMin {
			return a.Lo
		}
		return a.Hi
	case FnFirst, FnLast:
		e := a.F
		if fn == FnLast {
			e = a.L
		}
		if e == nil {
			return nil
		}
		return decode(e.V)
	case FnMostFrequent:
		best, bn := "", int64(0)
		for k, n := range a.M {
			if n > bn || (n == bn && k < best) {
				best, bn = k, n
			}
		}
		if bn == 0 {
			return nil
		}
		return decode(json.RawMessage(best))
	case FnUniqueList:
		keys := make([]string, 0, len(a.M))
		for k := range a.M {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]any, len(keys))
		for i, k := range keys {
			out[i] = decode(json.RawMessage(k))
		}
		return out
	case FnUniqueCount:
		return float64(len(a.M))
	}
	return nil
}

// decode turns a stored JSON value into the Go value comparisons use.
// Scalars, nearly all of what filters and traits compare, are read
// without the reflection of encoding/json.
func decode(v json.RawMessage) any {
	if len(v) == 0 {
		return nil
	}
	switch c := v[0]; {
	case c == '"':
		if len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 {
			return string(v[1 : len(v)-1])
		}
	case c == '-' || c >= '0' && c <= '9':
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return f
		}
	case string(v) == "true":
		return true
	case string(v) == "false":
		return false
	case string(v) == "null":
		return nil
	}
	var x any
	if json.Unmarshal(v, &x) != nil {
		return nil
	}
	return x
}

// Slot is one distinct aggregate of a Program: every definition that uses
// the same aggregate shares it.
type Slot struct {
	idx int // position in Program.Slots
	// ID is a hash of the aggregate's canonical text.
	ID  string
	Agg *Aggregate
	// up keeps the state the slot reads: its own running totals, or (for a
	// windowed aggregate) the entries shared by every window over the same
	// events and property.
	up *updater
}

// windowed reports whether the slot reads entries.
func (s *Slot) windowed() bool { return s.Agg.Window != nil }

// updater folds events into one state of a profile. Windowed aggregates
// over the same event, filter and property share one updater that keeps
// entries as far back as the longest of their windows, so fifty audiences
// over "Page Viewed within N days" store each page view once.
type updater struct {
	idx int // position in Program.ups
	// key names the state in State.Aggs, stable across restarts: a hash of
	// what the state holds (for entries, including how far back).
	key      string
	fn       string
	property string
	where    func(*Event) bool
	windowed bool
	horizon  time.Duration
}

// add folds the event into st. now prunes what the windows can no longer
// see.
func (u *updater) add(st *Agg, e *Event, now time.Time) {
	en := Entry{T: e.Time.UnixMicro(), Q: e.Seq}
	if u.property != "" {
		en.V = e.raw(u.property)
	}
	if !u.windowed {
		st.add(u.fn, en)
		return
	}
	if en.T <= now.Add(-u.horizon).UnixMicro() {
		return // already outside every window
	}
	i := sort.Search(len(st.E), func(i int) bool { return before(en, st.E[i]) })
	st.E = slices.Insert(st.E, i, en)
	u.prune(st, now)
}

// prune drops entries older than the horizon; it reports whether it did.
func (u *updater) prune(st *Agg, now time.Time) bool {
	if !u.windowed {
		return false
	}
	cut := now.Add(-u.horizon).UnixMicro()
	i := 0
	for i < len(st.E) && st.E[i].T <= cut {
		i++
	}
	if i > 0 {
		st.E = append(st.E[:0:0], st.E[i:]...)
	}
	return i > 0
}

// Value is the aggregate's value at now.
func (s *Slot) Value(st *Agg, now time.Time) any {
	if st == nil {
		st = &Agg{}
	}
	if !s.windowed() {
		return st.result(s.Agg.Fn)
	}
	w := s.Agg.Window
	lo, hi := now.Add(-time.Duration(w.Within)).UnixMicro(), now.UnixMicro()
	if w.Within == 0 {
		lo, hi = now.Add(-time.Duration(w.To)).UnixMicro(), now.Add(-time.Duration(w.From)).UnixMicro()
	}
	var tmp Agg
	for _, e := range st.E {
		if e.T > lo && e.T <= hi {
			tmp.add(s.Agg.Fn, e)
		}
	}
	return tmp.result(s.Agg.Fn)
}

// nextChange is the first instant after now at which the windowed value
// can change without a new event: an entry leaving (or, for between,
// entering) the window. Zero when none.
func (s *Slot) nextChange(st *Agg, now time.Time) time.Time {
	if st == nil || !s.windowed() {
		return time.Time{}
	}
	w := s.Agg.Window
	var next int64
	consider := func(t int64) {
		if t > now.UnixMicro() && (next == 0 || t < next) {
			next = t
		}
	}
	for _, e := range st.E {
		if w.Within != 0 {
			consider(e.T + time.Duration(w.Within).Microseconds())
			continue
		}
		consider(e.T + time.Duration(w.From).Microseconds())
		consider(e.T + time.Duration(w.To).Microseconds())
	}
	if next == 0 {
		return time.Time{}
	}
	return time.UnixMicro(next).UTC()
}
