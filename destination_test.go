package kith

import "testing"

// TestSafeText checks that SafeText makes any bytes storable text and
// leaves storable text alone.
func TestSafeText(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"502 Bad Gateway", "502 Bad Gateway"},
		{"Grüße, 世界", "Grüße, 世界"},
		{"a\x00b", "ab"},
		{"\x00\x00", ""},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"\xed\xa0\x80 surrogate", "\uFFFD surrogate"},
		{"both\x00\xc3", "both\uFFFD"},
	}
	for _, tc := range tests {
		got := SafeText(tc.in)
		if got != tc.want {
			t.Errorf("SafeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if p := TextProblem(got); p != "" {
			t.Errorf("SafeText(%q) = %q, which %s", tc.in, got, p)
		}
	}
}
