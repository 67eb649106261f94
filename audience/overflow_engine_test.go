package audience_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// TestComputedSumOverflowEncodes: a computed sum over two revenues of
// 1.7e308 (issue 14: the profile's traits, 360 page and export answered
// 500) is served as JSON — all three read ComputedTraits — saturated at
// the largest float, and the average over it has no value (so it is not listed).
func TestComputedSumOverflowEncodes(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	r.put(kith.KindComputedTrait, "ltv", `sum(properties.revenue of event "Order Completed")`)
	r.put(kith.KindComputedTrait, "aov", `avg(properties.revenue of event "Order Completed")`)
	r.append([]kith.Message{
		r.event("track", "Order Completed", "u1", "", r.now.Add(-48*time.Hour), map[string]any{"revenue": 1.7e308}),
		r.event("track", "Order Completed", "u1", "", r.now.Add(-24*time.Hour), map[string]any{"revenue": 1.7e308}),
	})
	r.settle()
	ids, err := r.store.ProfileIDs(ctx, "", 10)
	if err != nil || len(ids) != 1 {
		t.Fatalf("profiles %v, %v", ids, err)
	}
	ts, err := r.eng.ComputedTraits(ctx, ids[0])
	if err != nil {
		t.Fatalf("ComputedTraits: %v", err)
	}
	got := map[string]string{}
	for _, tr := range ts {
		got[tr.Key] = string(tr.Value)
	}
	want, _ := json.Marshal(math.MaxFloat64)
	if _, ok := got["aov"]; got["ltv"] != string(want) || ok {
		t.Errorf("computed traits %v, want ltv %s and no aov", got, want)
	}
	if _, err := json.Marshal(ts); err != nil {
		t.Errorf("traits do not encode: %v", err)
	}
}
