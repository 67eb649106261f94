package audience_test

import (
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// Redefining an audience that another one (backfilled) refers to
// backfills the new one without folding the events again into the
// aggregates the other one's states already hold.
func TestRedefiningAReferencedAudienceCountsEventsOnce(t *testing.T) {
	r := newRig(t)
	r.put(kith.KindAudience, "a", `count(event "X") >= 1`)
	r.put(kith.KindAudience, "b", `audience "a" or count(event "Y") >= 2`)
	r.settle()
	r.append([]kith.Message{r.event("track", "Y", "u1", "", r.now.Add(-time.Hour), nil)})
	r.settle()
	if got := r.members("b"); len(got) != 0 {
		t.Fatalf("b = %v before", got)
	}
	r.put(kith.KindAudience, "a", `count(event "X") >= 2`)
	r.settle()
	if got := r.members("b"); len(got) != 0 {
		t.Fatalf("b = %v: the one Y event was counted twice", got)
	}
	for _, key := range []string{"a", "b"} {
		if d, err := r.eng.Definition(kith.KindAudience, key); err != nil || d.Backfill.State != kith.BackfillDone {
			t.Fatalf("%s: %+v, %v", key, d.Backfill, err)
		}
	}
}
