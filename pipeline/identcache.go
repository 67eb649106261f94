package pipeline

import "github.com/kithcdp/kith"

// identCache maps identifier keys to what the indexer knows of them, in
// two generations: a lookup that finds a key in the older one moves it to
// the newer, and rotate drops the older one and starts a new generation.
// The indexer rotates (with the store caught up) when the newer holds half
// its bound, so the identifiers in use stay cached however many people
// there are, in bounded memory; the store stays the source of truth.
type identCache struct {
	cur, old map[kith.IdentKey]identEntry
}

// identEntry is one cached identifier.
type identEntry struct {
	owner string // the profile it is attached to (not resolved)
	// first and last are the first/last-seen times (unix µs) this
	// indexer has written for it; written is false until it has.
	first, last int64
	written     bool
}

func newIdentCache() identCache {
	return identCache{cur: map[kith.IdentKey]identEntry{}, old: map[kith.IdentKey]identEntry{}}
}

// get returns k's entry.
func (c *identCache) get(k kith.IdentKey) (identEntry, bool) {
	if e, ok := c.cur[k]; ok {
		return e, true
	}
	e, ok := c.old[k]
	if ok {
		c.cur[k] = e
		delete(c.old, k)
	}
	return e, ok
}

// owner returns the profile k is attached to.
func (c *identCache) owner(k kith.IdentKey) (string, bool) {
	e, ok := c.get(k)
	return e.owner, ok
}

// attach records that k is attached to profile p.
func (c *identCache) attach(k kith.IdentKey, p string) {
	e, _ := c.get(k)
	e.owner = p
	c.cur[k] = e
}

// wrote records that the store holds k with first/last-seen times
// covering [first, last].
func (c *identCache) wrote(k kith.IdentKey, first, last int64) {
	e, _ := c.get(k)
	if e.written {
		first, last = min(first, e.first), max(last, e.last)
	}
	e.first, e.last, e.written = first, last, true
	c.cur[k] = e
}

// young is the size of the newer generation.
func (c *identCache) young() int { return len(c.cur) }

// rotate drops the older generation.
func (c *identCache) rotate() {
	c.old, c.cur = c.cur, map[kith.IdentKey]identEntry{}
}
