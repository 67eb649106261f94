package audience

import (
	"strings"
	"testing"
	"time"
)

// Durations are refused, naming their range, when they are not positive
// or their count of nanoseconds would overflow ("878400w" once wrapped
// around to a negative duration and "106752d" to a wrong one).
func TestParseDurationRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "90d", want: 90 * 24 * time.Hour},
		{in: "878400h", want: 878400 * time.Hour},
		{in: "878401h", err: "out of range (1 to 878400h)"},
		{in: "106751d", want: 106751 * 24 * time.Hour},
		{in: "106752d", err: "out of range (1 to 106751d)"},
		{in: "15250w", want: 15250 * 7 * 24 * time.Hour},
		{in: "15251w", err: "out of range (1 to 15250w)"},
		{in: "878400w", err: "out of range"},
		{in: "0d", err: "out of range"},
		{in: "99999999999999999999m", err: "out of range"},
	} {
		d, err := ParseDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDuration(%q) = %v, %v; want an error saying %q", tc.in, time.Duration(d), err, tc.err)
			}
			continue
		}
		if err != nil || time.Duration(d) != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, time.Duration(d), err, tc.want)
		}
	}
}
