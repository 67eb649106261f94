package kith

import (
	"regexp"
	"testing"
)

// Ids and secrets carry their prefix and a fixed number of random bytes,
// and two are never the same.
func TestNewIDAndSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(string) string
		re   *regexp.Regexp
	}{
		{"id", NewID, regexp.MustCompile(`^src_[0-9a-f]{32}$`)},
		{"secret", NewSecret, regexp.MustCompile(`^src_[0-9a-f]{64}$`)},
	} {
		seen := map[string]bool{}
		for range 1000 {
			s := tc.make("src_")
			if !tc.re.MatchString(s) || seen[s] {
				t.Fatalf("%s %q: want %v, each new", tc.name, s, tc.re)
			}
			seen[s] = true
		}
	}
}
