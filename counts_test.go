package kith_test

import (
	"math"
	"testing"

	"github.com/kithcdp/kith"
)

// Totals over sources saturate: counts a client reported once overflowed
// them into negative numbers, and every read of the accounting failed.
func TestCountsAddSaturates(t *testing.T) {
	var total kith.Counts
	for _, c := range []kith.Counts{
		{Received: math.MaxInt64 - 1, Accepted: 5, Rejected: map[string]int64{"ovf": math.MaxInt64}},
		{Received: 10, Accepted: 7, Rejected: map[string]int64{"ovf": 1, "missing_event": 2}},
	} {
		total.Add(c)
	}
	if total.Received != math.MaxInt64 || total.Accepted != 12 || total.Rejected["ovf"] != math.MaxInt64 || total.Rejected["missing_event"] != 2 {
		t.Fatalf("total %+v", total)
	}
	if got := total.RejectedTotal(); got != math.MaxInt64 {
		t.Fatalf("RejectedTotal = %d, want saturated", got)
	}
}
