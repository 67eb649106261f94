package pipeline

import (
	"testing"

	"github.com/kithcdp/kith"
)

func TestIdentCacheGenerations(t *testing.T) {
	k := func(b byte) kith.IdentKey { return kith.IdentKey{b} }
	c := newIdentCache()
	c.attach(k(1), "p1")
	c.attach(k(2), "p2")
	c.wrote(k(1), 10, 20)
	c.wrote(k(1), 5, 15) // widens first, keeps last
	c.rotate()
	if c.young() != 0 {
		t.Fatalf("young after rotate = %d, want 0", c.young())
	}
	// k(1) is used in the new generation: it survives the next rotation.
	e, ok := c.get(k(1))
	if !ok || e.owner != "p1" || !e.written || e.first != 5 || e.last != 20 {
		t.Fatalf("k1 = %+v, %v; want p1 written [5, 20]", e, ok)
	}
	c.attach(k(3), "p3")
	c.rotate()
	tests := []struct {
		key   kith.IdentKey
		owner string
		ok    bool
	}{
		{k(1), "p1", true}, // used in the generation before
		{k(3), "p3", true}, // added in it
		{k(2), "", false},  // not used since two rotations ago: dropped
		{k(9), "", false},  // never cached
	}
	for _, tc := range tests {
		if got, ok := c.owner(tc.key); ok != tc.ok || got != tc.owner {
			t.Errorf("owner(%v) = %q, %v; want %q, %v", tc.key[0], got, ok, tc.owner, tc.ok)
		}
	}
	// attach keeps what was written.
	c.attach(k(1), "p9")
	if e, _ := c.get(k(1)); e.owner != "p9" || !e.written || e.first != 5 {
		t.Errorf("after attach: %+v", e)
	}
}
