package audience_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// The engine records the changes of the traits it tracks — a computed
// trait as events change it and as its window slides, a predicted trait
// as an insight run changes it, an event trait as an identify does —
// each once, when its value changes, with the cause; untracked traits
// and unchanged values are not recorded.
func TestTrackedTraitChanges(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.put(kith.KindComputedTrait, "orders_7d", `count(event "Order Completed" within 7d)`)
	r.put(kith.KindComputedTrait, "views", `count(event "Viewed")`)
	r.settle()
	r.eng.TrackTraits([]string{"orders_7d", "churn_risk", "plan"})
	start := r.now
	r.append([]kith.Message{
		r.event("track", "Order Completed", "u1", "", start, nil),
		r.event("track", "Viewed", "u1", "", start, nil), // views is not tracked
		r.event("identify", "", "u1", "", start, map[string]any{"plan": "pro", "age": 40}),
	})
	r.settle()
	r.append([]kith.Message{r.event("track", "Viewed", "u1", "", start, nil)}) // no tracked change
	r.settle()
	r.append([]kith.Message{r.event("track", "Order Completed", "u1", "", start, nil)})
	r.settle()
	// u1's profile: the one its first tracked change names.
	first, err := r.store.TraitChanges(ctx, 0, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("no trait change recorded for u1's events: %v", err)
	}
	canon := first[0].ProfileID
	if err := r.store.WriteInsights(ctx, "run1", r.now, []kith.ProfileInsights{
		{ProfileID: canon, Traits: map[string]json.RawMessage{"churn_risk": json.RawMessage(`0.25`)}},
	}); err != nil {
		t.Fatal(err)
	}
	r.eng.Predicted([]kith.ProfileInsights{{ProfileID: canon, Traits: map[string]json.RawMessage{"churn_risk": json.RawMessage(`0.25`)}}})
	r.settle()
	// Seven days on, the two orders leave the window.
	r.now = start.Add(7*24*time.Hour + time.Second)
	r.settle()

	chs, err := r.store.TraitChanges(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chs {
		if c.ProfileID != canon {
			t.Errorf("change of %s, want %s", c.ProfileID, canon)
		}
		got = append(got, fmt.Sprintf("%s=%s %s", c.Key, c.Value, c.Provenance))
	}
	want := []string{
		"orders_7d=1 computed", "plan=\"pro\" event",
		"orders_7d=2 computed",
		"churn_risk=0.25 predicted",
		"orders_7d=0 computed",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trait changes\n %q\nwant\n %q", got, want)
	}
	if len(chs) == len(want) && (chs[0].CauseSeq == 0 || chs[4].CauseSeq != 0 || !chs[4].At.Equal(r.now)) {
		t.Errorf("causes: %+v; want the first caused by its event, the last by the window at %v", chs, r.now)
	}
}
