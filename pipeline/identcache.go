package pipeline

import (
	"math"

	"github.com/kithcdp/kith"
)

// identCache maps identifier keys to what the indexer knows of them, in
// two generations: a lookup that finds a key in the older one moves it to
// the newer, and rotate drops the older one and starts a new generation.
// The indexer rotates (with the store caught up) when the newer holds half
// its bound, so the identifiers in use stay cached however many people
// there are, in bounded memory; the store stays the source of truth.
//
// It holds millions of entries, so an entry holds no pointer (the owner
// as a profileRef, not a string): the collector never scans the maps,
// and an entry takes 40 bytes of map slot where one with a string took 64.
type identCache struct {
	cur, old map[kith.IdentKey]identSlot
	names    profileNames
}

// identSlot is one cached identifier as stored: written is folded into
// first (notWritten).
type identSlot struct {
	owner       profileRef
	first, last int64
}

// notWritten is the first-seen time of an identifier the indexer has not
// written yet.
const notWritten = math.MinInt64

// identEntry is one cached identifier.
type identEntry struct {
	owner string // the profile it is attached to (not resolved)
	// first and last are the first/last-seen times (unix µs) this
	// indexer has written for it; written is false until it has.
	first, last int64
	written     bool
}

func newIdentCache() identCache {
	return identCache{cur: map[kith.IdentKey]identSlot{}, old: map[kith.IdentKey]identSlot{}, names: newProfileNames()}
}

// slot returns k's stored entry, moving it to the newer generation.
func (c *identCache) slot(k kith.IdentKey) (identSlot, bool) {
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

// get returns k's entry.
func (c *identCache) get(k kith.IdentKey) (identEntry, bool) {
	s, ok := c.slot(k)
	if !ok {
		return identEntry{}, false
	}
	e := identEntry{owner: c.names.id(s.owner)}
	if s.first != notWritten {
		e.first, e.last, e.written = s.first, s.last, true
	}
	return e, true
}

// owner returns the profile k is attached to.
func (c *identCache) owner(k kith.IdentKey) (string, bool) {
	s, ok := c.slot(k)
	if !ok {
		return "", false
	}
	return c.names.id(s.owner), true
}

// attach records that k is attached to profile p.
func (c *identCache) attach(k kith.IdentKey, p string) {
	s, ok := c.slot(k)
	if !ok {
		s.first = notWritten
	}
	s.owner = c.names.ref(p)
	c.cur[k] = s
}

// wrote records that the store holds k with first/last-seen times
// covering [first, last].
func (c *identCache) wrote(k kith.IdentKey, first, last int64) {
	s, ok := c.slot(k)
	if ok && s.first != notWritten {
		first, last = min(first, s.first), max(last, s.last)
	}
	s.first, s.last = first, last
	c.cur[k] = s
}

// young is the size of the newer generation.
func (c *identCache) young() int { return len(c.cur) }

// rotate drops the older generation.
func (c *identCache) rotate() {
	c.old, c.cur = c.cur, map[kith.IdentKey]identSlot{}
}
