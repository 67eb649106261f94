package audience

import (
	"encoding/json"
	"fmt"
	"time"
)

// TraitValue is a cached trait value: its JSON, the event time that set it
// (unix µs), and whether an insight run predicted it (a prediction replaces
// an event trait of the same key, as in the profile API).
type TraitValue struct {
	V json.RawMessage `json:"v"`
	T int64           `json:"t,omitempty"`
	P bool            `json:"p,omitempty"`
}

// State is one unified profile's engine state: its aggregate states by slot
// ID, the traits the audiences read, its memberships (audience → since, unix
// µs) and when it next changes on its own (Due, unix µs; 0 for never).
type State struct {
	Aggs    map[string]*Agg       `json:"a,omitempty"`
	Traits  map[string]TraitValue `json:"t,omitempty"`
	Members map[string]int64      `json:"m,omitempty"`
	Due     int64                 `json:"d,omitempty"`
}

// DecodeState reads a stored state.
func DecodeState(b []byte) (*State, error) {
	st := &State{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("audience: decode state: %w", err)
	}
	return st, nil
}

// Encode writes the state for storage.
func (st *State) Encode() []byte {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err) // only maps, slices, numbers and valid JSON: cannot fail
	}
	return b
}

// SetTrait records a trait value unless the cached one is newer or
// predicted (predictions are replaced only by predictions).
func (st *State) SetTrait(key string, v TraitValue) {
	if st.Traits == nil {
		st.Traits = map[string]TraitValue{}
	}
	old, ok := st.Traits[key]
	if ok && (old.P && !v.P || old.P == v.P && old.T > v.T) {
		return
	}
	st.Traits[key] = v
}

// Merge folds the state of an absorbed profile into st: aggregates
// combine, traits keep the latest (predictions first). Memberships are the
// caller's: an absorbed profile leaves its audiences.
func (st *State) Merge(o *State) {
	for id, a := range o.Aggs {
		if st.Aggs == nil {
			st.Aggs = map[string]*Agg{}
		}
		if cur, ok := st.Aggs[id]; ok {
			cur.merge(a)
		} else {
			st.Aggs[id] = a
		}
	}
	for k, v := range o.Traits {
		st.SetTrait(k, v)
	}
}

// Apply folds one event into the aggregates it matches; it reports whether
// any did.
func (p *Program) Apply(st *State, e *Event, now time.Time) bool {
	hit := false
	for _, list := range [2][]*Slot{p.byEvent[e.Name], p.anyEvent} {
		for _, s := range list {
			if !s.where(e) {
				continue
			}
			if st.Aggs == nil {
				st.Aggs = map[string]*Agg{}
			}
			a := st.Aggs[s.ID]
			if a == nil {
				a = &Agg{}
				st.Aggs[s.ID] = a
			}
			s.add(a, e, now)
			hit = true
		}
	}
	return hit
}

// ApplyOnly is Apply restricted to the given slots (a backfill of new
// aggregates).
func (p *Program) ApplyOnly(st *State, e *Event, now time.Time, only map[string]bool) {
	for _, list := range [2][]*Slot{p.byEvent[e.Name], p.anyEvent} {
		for _, s := range list {
			if !only[s.ID] || !s.where(e) {
				continue
			}
			if st.Aggs == nil {
				st.Aggs = map[string]*Agg{}
			}
			a := st.Aggs[s.ID]
			if a == nil {
				a = &Agg{}
				st.Aggs[s.ID] = a
			}
			s.add(a, e, now)
		}
	}
}

// Matches reports whether any aggregate of the program reads events named
// name (a cheap test before decoding an event).
func (p *Program) Matches(name string) bool {
	return len(p.anyEvent) > 0 || len(p.byEvent[name]) > 0
}

// ComputedValues returns the computed traits' values at now (a key is
// absent when its value is: the average of no values).
func (p *Program) ComputedValues(st *State, now time.Time) map[string]any {
	out := make(map[string]any, len(p.Computed))
	for _, c := range p.Computed {
		if v := c.Slot.Value(st.Aggs[c.Slot.ID], now); v != nil {
			out[c.Key] = v
		}
	}
	return out
}

// Evaluate decides every audience for the profile at now: the set of
// audiences it belongs to, and the first instant after now at which that
// (or a windowed computed trait) can change with no new event — zero if
// never. It also drops aggregate states the program no longer uses and
// entries that windows can no longer see.
func (p *Program) Evaluate(st *State, now time.Time) (map[string]bool, time.Time) {
	used := make(map[string]bool, len(p.Slots))
	var due time.Time
	for _, s := range p.Slots {
		used[s.ID] = true
		if a := st.Aggs[s.ID]; a != nil {
			s.prune(a, now)
			if t := s.nextChange(a, now); !t.IsZero() && (due.IsZero() || t.Before(due)) {
				due = t
			}
		}
	}
	for id := range st.Aggs {
		if !used[id] {
			delete(st.Aggs, id)
		}
	}
	computed := map[string]*Slot{}
	for _, c := range p.Computed {
		computed[c.Key] = c.Slot
	}
	cache := map[*Slot]any{}
	agg := func(s *Slot) any {
		v, ok := cache[s]
		if !ok {
			v = s.Value(st.Aggs[s.ID], now)
			cache[s] = v
		}
		return v
	}
	members := map[string]bool{}
	decoded := map[string]any{} // each trait decoded once per evaluation
	e := &env{
		now: now,
		agg: agg,
		trait: func(key string) any {
			if s, ok := computed[key]; ok {
				return agg(s)
			}
			if v, ok := decoded[key]; ok {
				return v
			}
			var v any
			if tv, ok := st.Traits[key]; ok {
				v = decode(tv.V)
			}
			decoded[key] = v
			return v
		},
		member: func(key string) bool { return members[key] },
	}
	for _, a := range p.Audiences {
		if a.eval(e) {
			members[a.Key] = true
		}
		if t := a.next(e); !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	return members, due
}

// Check evaluates one condition (not saved) for the profile at now, with
// the audiences it refers to taken from the program — a dry run.
func (p *Program) Check(n *Node, st *State, now time.Time) (bool, error) {
	c := &compiler{slot: func(a *Aggregate) (*Slot, error) {
		key := FormatAggregate(a)
		for _, s := range p.Slots {
			if FormatAggregate(s.Agg) == key {
				return s, nil
			}
		}
		return nil, fmt.Errorf("aggregate %s is not computed yet", key)
	}, computed: map[string]bool{}, traitKeys: map[string]bool{}}
	for _, cp := range p.Computed {
		c.computed[cp.Key] = true
	}
	ev, _, err := c.node(n)
	if err != nil {
		return false, err
	}
	members, _ := p.Evaluate(st, now)
	computed := map[string]*Slot{}
	for _, cp := range p.Computed {
		computed[cp.Key] = cp.Slot
	}
	e := &env{
		now: now,
		agg: func(s *Slot) any { return s.Value(st.Aggs[s.ID], now) },
		trait: func(key string) any {
			if s, ok := computed[key]; ok {
				return s.Value(st.Aggs[s.ID], now)
			}
			if tv, ok := st.Traits[key]; ok {
				return decode(tv.V)
			}
			return nil
		},
		member: func(key string) bool { return members[key] },
	}
	return ev(e), nil
}
