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

func TestHoldAll(t *testing.T) {
	k := func(i int) kith.IdentKey { return kith.IdentKey{byte(i), byte(i >> 8)} }
	const a, b = 1, 2 // identifier types
	list := func(typ uint32, from, to int, last int64) []heldIdent {
		var l []heldIdent
		for i := from; i < to; i++ {
			l = append(l, heldIdent{typ: typ, key: k(i), last: last})
		}
		return l
	}
	tests := []struct {
		name    string
		l, add  []heldIdent
		want    int   // identifiers after
		lastOf0 int64 // last-seen of (a, key 0)
	}{
		{"small, overlapping", list(a, 0, 3, 5), list(a, 2, 5, 9), 5, 5},
		{"large, overlapping (indexed)", list(a, 0, 100, 5), list(a, 50, 150, 9), 150, 5},
		{"large, same keys later", list(a, 0, 100, 5), list(a, 0, 100, 9), 100, 9},
		{"same key, other type", list(a, 0, 40, 5), list(b, 0, 40, 9), 80, 5},
		{"many into none", nil, list(a, 0, 5000, 9), 5000, 9},
		{"many into one", list(a, 0, 1, 5), list(a, 0, 5000, 9), 5000, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := holdAll(append([]heldIdent(nil), tc.l...), tc.add)
			if len(got) != tc.want {
				t.Fatalf("%d identifiers, want %d", len(got), tc.want)
			}
			seen := map[heldIdent]bool{}
			for _, h := range got {
				key := heldIdent{typ: h.typ, key: h.key}
				if seen[key] {
					t.Fatalf("%d %v held twice", h.typ, h.key)
				}
				seen[key] = true
				if h.typ == a && h.key == k(0) && h.last != tc.lastOf0 {
					t.Errorf("last seen of a/0 = %d, want %d", h.last, tc.lastOf0)
				}
			}
			// Every key of both lists is held, with the later time.
			for _, h := range append(append([]heldIdent(nil), tc.l...), tc.add...) {
				for _, g := range got {
					if g.typ == h.typ && g.key == h.key && g.last < h.last {
						t.Errorf("%d %v last seen %d, want at least %d", h.typ, h.key, g.last, h.last)
					}
				}
			}
		})
	}
}
