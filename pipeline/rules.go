package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// admit applies the identity rules to an event before it links anything,
// as Segment Unify does: while linking the event's identifiers would give
// a profile more values of a type than the type's limit (within its
// window), or merge profiles that hold different values of a never-merge
// type, the event's lowest-priority identifier is dropped and matching is
// retried. Dropped identifiers neither link nor attach. In Segment's
// missed-logout example (anonymous_id a1 identified as u1, then as u2) the
// second event would give u1's profile a second user_id: a1 is dropped and
// u2 gets a profile of its own.
//
// An alias is the source saying outright that two ids are one person, so
// it is held to never-merge declarations but not to limits (otherwise, with
// user_id limited to one, no alias could ever join two user ids).
func (ix *Indexer) admit(ctx context.Context, e *extracted, at time.Time, alias bool) error {
	for len(e.ids) > 0 {
		ok, err := ix.fits(ctx, e.ids, e.keys, at, !alias)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		last := len(e.ids) - 1
		e.ids, e.keys = e.ids[:last], e.keys[:last]
	}
	return nil
}

// fits reports whether linking ids breaks no rule.
func (ix *Indexer) fits(ctx context.Context, ids []identity.Identifier, keys []kith.IdentKey, at time.Time, limits bool) (bool, error) {
	var buf [4]string
	profiles := buf[:0]
	known := 0
	for _, k := range keys {
		owner, ok := ix.ids.owner(k)
		if !ok {
			continue
		}
		known++
		c := ix.find(owner)
		if !containsString(profiles, c) {
			profiles = append(profiles, c)
		}
	}
	if len(profiles) == 1 && known == len(keys) {
		return true, nil // nothing new: no profile changes
	}
	return ix.allowed(ctx, profiles, ids, keys, at, limits)
}

// allowed reports whether joining the canonical profiles and attaching ids
// to them breaks no rule.
func (ix *Indexer) allowed(ctx context.Context, profiles []string, ids []identity.Identifier, keys []kith.IdentKey, at time.Time, limits bool) (bool, error) {
	now := at.UnixMicro()
	// Values per type the linked profile would hold.
	values := map[string]map[kith.IdentKey]bool{}
	add := func(typ string, k kith.IdentKey) {
		if values[typ] == nil {
			values[typ] = map[kith.IdentKey]bool{}
		}
		values[typ][k] = true
	}
	// Distinct never-merge values held by the profiles being merged.
	held := map[uint32]map[kith.IdentKey]bool{}
	for _, p := range profiles {
		list, err := ix.profileIdents(ctx, p)
		if err != nil {
			return false, err
		}
		for _, h := range list {
			typ := ix.idents.typeName(h.typ)
			rule := ix.rules.Rule(typ)
			if rule.NeverMerge && len(profiles) > 1 {
				if held[h.typ] == nil {
					held[h.typ] = map[kith.IdentKey]bool{}
				}
				held[h.typ][h.key] = true
			}
			if rule.Window > 0 && h.last < now-time.Duration(rule.Window).Microseconds() && !containsKey(keys, h.key) {
				continue // outside the window
			}
			add(typ, h.key)
		}
	}
	for _, ks := range held {
		if len(ks) > 1 {
			return false, nil
		}
	}
	// Split profiles stay apart, whatever links them.
	if len(profiles) > 1 {
		for _, sp := range ix.splits {
			a, b := ix.find(sp[0]), ix.find(sp[1])
			if a != b && containsString(profiles, a) && containsString(profiles, b) {
				return false, nil
			}
		}
	}
	if !limits {
		return true, nil
	}
	for j, id := range ids {
		add(id.Type, keys[j])
	}
	for typ, ks := range values {
		if l := ix.rules.Rule(typ).Limit; l > 0 && len(ks) > l {
			return false, nil
		}
	}
	return true, nil
}

// heldIdent is an identifier a profile holds, as the limits check needs
// it: its type (see heldSet.typ), key and last-seen time (unix µs).
type heldIdent struct {
	typ  uint32
	key  kith.IdentKey
	last int64
}

// profileIdents returns a canonical profile's identifiers, loading them
// from the store the first time.
func (ix *Indexer) profileIdents(ctx context.Context, p string) ([]heldIdent, error) {
	if l, ok := ix.idents.get(p); ok {
		return l, nil
	}
	list, err := ix.store.Identities(ctx, p)
	if err != nil && kith.ErrorCode(err) != kith.ENOTFOUND {
		return nil, fmt.Errorf("pipeline: identifiers of profile %s: %w", p, err)
	}
	// The store holds each key once: no need to look for it first.
	l := make([]heldIdent, 0, len(list))
	for _, id := range list {
		k := ix.keyer.Key(identity.Identifier{Type: id.Type, Value: id.Value})
		l = append(l, heldIdent{typ: ix.idents.typ(id.Type), key: k, last: id.LastSeen.UnixMicro()})
	}
	ix.idents.set(p, l)
	return l, nil
}

// holdIdent adds key to l, or raises its last-seen time.
func holdIdent(l []heldIdent, typ uint32, key kith.IdentKey, last int64) []heldIdent {
	return holdIn(l, len(l), heldIdent{typ: typ, key: key, last: last})
}

// holdIn adds h to l, or raises the last-seen time of the one of l's first
// n identifiers that is h.
func holdIn(l []heldIdent, n int, h heldIdent) []heldIdent {
	for i := range l[:n] {
		if l[i].key == h.key && l[i].typ == h.typ {
			l[i].last = max(l[i].last, h.last)
			return l
		}
	}
	return append(l, h)
}

// noteIdents records that profile p holds ids, seen at at. Only profiles
// already cached are updated: a profile is cached before anything adds to
// it (fits loads every profile an event changes).
func (ix *Indexer) noteIdents(p string, ids []identity.Identifier, keys []kith.IdentKey, at time.Time) {
	l, ok := ix.idents.get(p)
	if !ok {
		return
	}
	t := at.UnixMicro()
	for j, id := range ids {
		l = holdIdent(l, ix.idents.typ(id.Type), keys[j], t)
	}
	ix.idents.set(p, l)
}

// mergeIdents moves absorbed's cached identifiers to survivor.
func (ix *Indexer) mergeIdents(survivor, absorbed string) {
	from, ok := ix.idents.get(absorbed)
	if !ok {
		ix.idents.drop(survivor) // unknown union: reload when needed
		return
	}
	to, ok := ix.idents.get(survivor)
	if !ok {
		ix.idents.drop(absorbed)
		return
	}
	ix.idents.set(survivor, holdAll(to, from))
	ix.idents.drop(absorbed)
}

// holdAll adds add's identifiers to l, each with the later last-seen time
// of the two. Two profiles with many identifiers (under rules without
// limits) are joined through an index rather than a scan per identifier.
func holdAll(l, add []heldIdent) []heldIdent {
	// add holds each identifier once, so only l's own can match one: a
	// scan of what was appended would make a long add into a short l
	// quadratic.
	n := len(l)
	if n*len(add) <= 1024 {
		for _, h := range add {
			l = holdIn(l, n, h)
		}
		return l
	}
	type id struct {
		typ uint32
		key kith.IdentKey
	}
	at := make(map[id]int, len(l)+len(add))
	for i, h := range l {
		at[id{h.typ, h.key}] = i
	}
	for _, h := range add {
		if i, ok := at[id{h.typ, h.key}]; ok {
			l[i].last = max(l[i].last, h.last)
			continue
		}
		at[id{h.typ, h.key}] = len(l)
		l = append(l, h)
	}
	return l
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
