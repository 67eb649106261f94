package audience

import (
	"slices"
	"strings"

	"github.com/kithcdp/kith"
)

// Read is one value a definition reads: a profile trait a condition
// compares, or an event path an aggregate reads (its property, or a
// property its where compares). Computed traits and audiences a
// definition refers to are followed: what they read is listed too, with
// Via naming them. Whether a read is personal data is the privacy
// package's decision (privacy.PersonalRead); this is only what is read.
type Read struct {
	// Trait is the key of a profile trait (an event or predicted trait;
	// a computed trait is followed instead), or "".
	Trait string `json:"trait,omitempty"`
	// Path is an event path ("properties.total", "context.ip", or
	// "traits.email" of an identify call), or "".
	Path string `json:"path,omitempty"`
	// Op and Value are the comparison made on the value as read (a
	// condition on a trait, a where on an event path); Op is "" when
	// the value is aggregated instead.
	Op    string `json:"op,omitempty"`
	Value any    `json:"value,omitempty"`
	// Fn is the aggregate function applied to an event path read as an
	// aggregate's property; its result is shown (a computed trait) or
	// compared (a condition on the aggregate).
	Fn string `json:"fn,omitempty"`
	// Via names the saved definitions the value is read through,
	// outermost first: "computed trait last_email", "audience vip".
	Via []string `json:"via,omitempty"`
}

// String names the read for people: "traits.email", "properties.email
// of events", with the definitions it is read through, if any.
func (r Read) String() string {
	s := "traits." + r.Trait
	if r.Path != "" {
		s = r.Path + " of events"
	}
	if len(r.Via) > 0 {
		s += " (through " + strings.Join(r.Via, ", ") + ")"
	}
	return s
}

// Reads lists what definition d reads, following the computed traits and
// audiences it refers to through p's definitions. d is a definition as
// sent (its text or its JSON tree, see Prepare) or as saved; one that
// does not prepare is an EINVALID error, as Prepare's.
func (p *Program) Reads(d kith.Definition) ([]Read, error) {
	_, tree, err := prepare(d)
	if err != nil {
		return nil, err
	}
	w := &readsWalker{p: p, seen: map[string]bool{}}
	switch t := tree.(type) {
	case *Node:
		w.node(t, nil)
	case *Aggregate:
		w.agg(t, nil)
	}
	return w.out, nil
}

// SavedReads lists what p's definition kind/key reads (as Reads does);
// false when p has no such definition.
func (p *Program) SavedReads(kind, key string) ([]Read, bool) {
	w := &readsWalker{p: p, seen: map[string]bool{}}
	switch kind {
	case kith.KindAudience:
		i, ok := p.audIdx[key]
		if !ok {
			return nil, false
		}
		w.seen[kind+":"+key] = true
		w.node(p.Audiences[i].Node, nil)
	case kith.KindComputedTrait:
		s, ok := p.computedBy[key]
		if !ok {
			return nil, false
		}
		w.agg(s.Agg, nil)
	default:
		return nil, false
	}
	return w.out, true
}

// readsWalker collects the reads of a tree; seen keeps each saved
// definition followed once (audiences cannot refer to themselves, but
// several may refer to one).
type readsWalker struct {
	p    *Program
	seen map[string]bool
	out  []Read
}

func (w *readsWalker) node(n *Node, via []string) {
	switch {
	case n.And != nil || n.Or != nil:
		for _, c := range append(slices.Clip(n.And), n.Or...) {
			w.node(c, via)
		}
	case n.Not != nil:
		w.node(n.Not, via)
	case n.Audience != "":
		i, ok := w.p.audIdx[n.Audience]
		if k := kith.KindAudience + ":" + n.Audience; ok && !w.seen[k] {
			w.seen[k] = true
			w.node(w.p.Audiences[i].Node, append(slices.Clip(via), "audience "+n.Audience))
		}
	case n.Consent != "":
		// A consent decision, not a value of the person's.
	case n.Aggregate != nil:
		w.agg(n.Aggregate, via)
	case n.Trait != "":
		if s, ok := w.p.computedBy[n.Trait]; ok {
			if k := kith.KindComputedTrait + ":" + n.Trait; !w.seen[k] {
				w.seen[k] = true
				w.agg(s.Agg, append(slices.Clip(via), "computed trait "+n.Trait))
			}
			return
		}
		w.out = append(w.out, Read{Trait: n.Trait, Op: n.Op, Value: n.Value, Via: via})
	}
}

func (w *readsWalker) agg(a *Aggregate, via []string) {
	if a.Property != "" {
		w.out = append(w.out, Read{Path: a.Property, Fn: a.Fn, Via: via})
	}
	if a.Where != nil {
		w.where(a.Where, via)
	}
}

func (w *readsWalker) where(n *Node, via []string) {
	switch {
	case n.And != nil || n.Or != nil:
		for _, c := range append(slices.Clip(n.And), n.Or...) {
			w.where(c, via)
		}
	case n.Not != nil:
		w.where(n.Not, via)
	default:
		w.out = append(w.out, Read{Path: n.Property, Op: n.Op, Value: n.Value, Via: via})
	}
}

// Reads lists what definition d reads, against the saved definitions (see
// Program.Reads).
func (e *Engine) Reads(d kith.Definition) ([]Read, error) { return e.Program().Reads(d) }

// SavedReads lists what the saved definition kind/key reads (see
// Program.SavedReads).
func (e *Engine) SavedReads(kind, key string) ([]Read, bool) {
	return e.Program().SavedReads(kind, key)
}
