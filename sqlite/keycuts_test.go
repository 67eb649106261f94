package sqlite

import (
	"slices"
	"testing"
)

func TestKeyCuts(t *testing.T) {
	tests := []struct {
		lo, hi string
		k      int
		want   []string
	}{
		{"p_00", "p_ff", 2, []string{"p_KK"}},
		{"a", "c", 2, []string{"b"}},
		{"a", "b", 4, []string{"a@", "a\x80", "a\xc0"}}, // byte order, not UTF-8
		{"p_1", "p_1", 2, nil},                          // one profile: one part
		{"b", "a", 2, nil},
		{"", "", 3, nil}, // no orders
		{"", "z", 2, []string{"="}},
	}
	for _, tt := range tests {
		got := keyCuts(tt.lo, tt.hi, tt.k)
		if !slices.Equal(got, tt.want) {
			t.Errorf("keyCuts(%q, %q, %d) = %q, want %q", tt.lo, tt.hi, tt.k, got, tt.want)
		}
		for i, c := range got {
			if c <= tt.lo || c > tt.hi || (i > 0 && c <= got[i-1]) {
				t.Errorf("keyCuts(%q, %q, %d): cut %q is not in (lo, hi] and ascending", tt.lo, tt.hi, tt.k, c)
			}
		}
	}
}
