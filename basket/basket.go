// Package basket owns market-basket analysis for cross-sell and up-sell.
//
// It mines item-to-item association rules from order baskets (Apriori
// frequent itemsets, then rules with support, confidence and lift, as
// mlxtend's apriori and association_rules define them), recommends per
// customer the next-best products they have not bought yet (Recommender),
// measures that recommender against a most-popular baseline (Evaluate), and
// lists higher-priced products in the categories a customer buys (Upsell).
//
// Items are dense int32 ids; an Interner maps string product ids to them.
// A basket is a set: an item listed twice in one basket counts once.
package basket

import "errors"

// ErrNoBaskets is returned when there is no basket to learn from.
var ErrNoBaskets = errors.New("basket: no baskets")

// Interner maps string item ids to dense int32 ids, in order of first
// sight, and back. The zero value is ready to use; it is not safe for
// concurrent mutation.
type Interner struct {
	ids   map[string]int32
	names []string
}

// ID returns the dense id of name, assigning the next free id the first
// time name is seen.
func (in *Interner) ID(name string) int32 {
	if id, ok := in.ids[name]; ok {
		return id
	}
	if in.ids == nil {
		in.ids = make(map[string]int32)
	}
	id := int32(len(in.names))
	in.ids[name] = id
	in.names = append(in.names, name)
	return id
}

// Lookup returns the dense id of name and whether name has been seen,
// without assigning an id.
func (in *Interner) Lookup(name string) (int32, bool) {
	id, ok := in.ids[name]
	return id, ok
}

// Name returns the string id for a dense id, or "" if id was never assigned.
func (in *Interner) Name(id int32) string {
	if id < 0 || int(id) >= len(in.names) {
		return ""
	}
	return in.names[id]
}

// Len returns the number of distinct ids assigned so far.
func (in *Interner) Len() int { return len(in.names) }

// Names returns the string ids of items, in the same order.
func (in *Interner) Names(items []int32) []string {
	out := make([]string, len(items))
	for i, id := range items {
		out[i] = in.Name(id)
	}
	return out
}
