package identity

import "sync/atomic"

// Current holds the identity rules in force. The server makes one at start
// (from a rules file, the rules last set through the admin API, or the
// defaults) and hands the same one to everything that reads identifiers —
// the indexer, the audience engine, the privacy gate, the API, the console
// and DMP linking — so that replacing the rules (Set, once) reaches all of
// them at once, instead of each keeping a copy that one forgets to update.
// It is safe for concurrent use.
type Current struct{ p atomic.Pointer[Rules] }

// NewCurrent returns a Current holding r (nil: DefaultRules).
func NewCurrent(r *Rules) *Current {
	c := &Current{}
	c.Set(r)
	return c
}

// Load returns the rules in force. A reader that decides many things
// together (the indexer's batch) loads once and decides them all under
// what it loaded, so no unit of work mixes two sets of rules.
func (c *Current) Load() *Rules { return c.p.Load() }

// Set puts r (validated: from DefaultRules or ParseRules) in force for
// every reader's next Load; nil puts the defaults in force.
func (c *Current) Set(r *Rules) {
	if r == nil {
		r = DefaultRules()
	}
	c.p.Store(r)
}
