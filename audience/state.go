package audience

import (
	"encoding/json"
	"github.com/kithcdp/kith"
	"slices"
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

// State is one unified profile's engine state: its aggregate states by
// key, the traits the audiences read, when it next changes on its own
// (Due, unix µs; 0 for never), and — loaded beside it, stored apart — its
// memberships (audience → since, unix µs).
type State struct {
	Aggs    map[string]*Agg       `json:"a,omitempty"`
	Traits  map[string]TraitValue `json:"t,omitempty"`
	Members map[string]int64      `json:"m,omitempty"`
	Due     int64                 `json:"d,omitempty"`
}

// loadState is a profile's state as stored (raw, nil for none) with its
// memberships, which the store keeps apart.
func loadState(raw []byte, members []kith.Member) (*State, error) {
	st := &State{}
	if raw != nil {
		var err error
		if st, err = DecodeState(raw); err != nil {
			return nil, err
		}
	}
	for _, m := range members {
		if st.Members == nil {
			st.Members = make(map[string]int64, len(members))
		}
		st.Members[m.Audience] = m.Since.UnixMicro()
	}
	return st, nil
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
	return p.ApplyOnly(st, e, now, nil)
}

// ApplyOnly is Apply restricted to the states whose keys are in only (a
// backfill of new aggregates); nil means all.
func (p *Program) ApplyOnly(st *State, e *Event, now time.Time, only map[string]bool) bool {
	hit := false
	for _, list := range [2][]*updater{p.byEvent[e.Name], p.anyEvent} {
		for _, u := range list {
			if only != nil && !only[u.key] || !u.where(e) {
				continue
			}
			if st.Aggs == nil {
				st.Aggs = map[string]*Agg{}
			}
			a := st.Aggs[u.key]
			if a == nil {
				a = &Agg{}
				st.Aggs[u.key] = a
			}
			u.add(a, e, now)
			hit = true
		}
	}
	return hit
}

// needs returns what p reads that base does not keep: the aggregate
// states to compute from the log (by key) and the trait keys to load. A
// backfill fills exactly these; so does a dry run, in memory.
func (p *Program) needs(base *Program) (states map[string]bool, traits []string) {
	have := base.StateKeys()
	states = map[string]bool{}
	for k := range p.StateKeys() {
		if !have[k] {
			states[k] = true
		}
	}
	for _, k := range p.TraitKeys {
		if !slices.Contains(base.TraitKeys, k) {
			traits = append(traits, k)
		}
	}
	return states, traits
}

// StateKeys are the keys of the states the program keeps per profile.
func (p *Program) StateKeys() map[string]bool {
	out := make(map[string]bool, len(p.ups))
	for _, u := range p.ups {
		out[u.key] = true
	}
	return out
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
		if v := c.Slot.Value(st.Aggs[c.Slot.up.key], now); v != nil {
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
	in, due, _ := p.evaluate(st, now)
	members := make(map[string]bool, len(p.Audiences))
	for i, a := range p.Audiences {
		if in[i] {
			members[a.Key] = true
		}
	}
	return members, due
}

// evaluate is Evaluate with the memberships by audience index; it also
// reports whether it changed the stored part of st (pruned entries or
// dropped aggregates).
func (p *Program) evaluate(st *State, now time.Time) ([]bool, time.Time, bool) {
	var due time.Time
	changed := false
	e := p.newEnv(st, now)
	states := e.states
	found := 0
	for i, u := range p.ups {
		if a := states[i]; a != nil {
			found++
			if u.prune(a, now) {
				changed = true
			}
		}
	}
	for _, s := range p.Slots {
		if a := states[s.up.idx]; a != nil && s.windowed() {
			if t := s.nextChange(a, now); !t.IsZero() && (due.IsZero() || t.Before(due)) {
				due = t
			}
		}
	}
	if found < len(st.Aggs) {
		for id := range st.Aggs {
			if p.upByKey[id] == nil {
				delete(st.Aggs, id) // a definition that used it is gone
				changed = true
			}
		}
	}
	for i, a := range p.Audiences {
		if a.eval(e) {
			e.members[i] = true
		}
		if a.next == nil {
			continue
		}
		if t := a.next(e); !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	return e.members, due, changed
}

func (p *Program) newEnv(st *State, now time.Time) *env {
	ns, na, nt := len(p.Slots), len(p.Audiences), p.nTraits
	flags := make([]bool, ns+na+nt)
	vals := make([]any, ns+nt)
	states := make([]*Agg, len(p.ups))
	for i, u := range p.ups {
		states[i] = st.Aggs[u.key]
	}
	return &env{now: now, st: st, prog: p, aggs: vals[:ns], aggSet: flags[:ns], members: flags[ns : ns+na],
		traitVals: vals[ns:], traitSet: flags[ns+na:], states: states}
}
