package pipeline

import (
	"math"
	"testing"
)

func TestProfileNames(t *testing.T) {
	n := newProfileNames()
	for _, tc := range []struct {
		name     string
		id       string
		interned bool
	}{
		{"empty", "", false},
		{"first position", profileID(1), false},
		{"a large position", profileID(123_456_789_012), false},
		{"the largest position", profileID(math.MaxInt64 - 1), false},
		{"position 0", profileID(0), false},
		{"a test's id", "p1", true},
		{"odd last digit", profileID(1)[:14] + "1", true},
		{"upper case", "P_0000000000002", true},
		{"not base32", "p_000000000000w", true},
		{"too long", profileID(1) + "0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := n.ref(tc.id)
			if got := r&internedRef != 0; got != tc.interned {
				t.Errorf("ref(%q) = %#x: interned %v, want %v", tc.id, r, got, tc.interned)
			}
			if got := n.id(r); got != tc.id {
				t.Errorf("id(ref(%q)) = %q", tc.id, got)
			}
			if again := n.ref(tc.id); again != r {
				t.Errorf("ref(%q) twice: %#x then %#x", tc.id, r, again)
			}
		})
	}
	if a, b := n.ref("p1"), n.ref("p2"); a == b {
		t.Errorf("two interned ids share ref %#x", a)
	}
}
