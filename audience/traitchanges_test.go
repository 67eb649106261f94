package audience_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/pipeline"
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

// What a tracked trait's change is compared with is the value last
// recorded, not one recomputed at load: a window that slid before any
// expiry ran is still seen when an event comes first, and an engine that
// crashed before writing its states (they are written behind the stream)
// records no change twice when it replays the log.
func TestTrackedTraitsComparedWithRecordedValues(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	secret, _ := r.store.Secret(ctx)
	r.eng = audience.NewEngine(r.store, audience.Config{Secret: secret, Now: func() time.Time { return r.now }, FlushEvery: time.Hour})
	r.ix = pipeline.New(r.store, secret, pipeline.Config{BatchSize: 2, Observer: r.eng})
	r.put(kith.KindComputedTrait, "orders_7d", `count(event "Order Completed" within 7d)`)
	r.settle()
	if err := r.eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r.eng.TrackTraits([]string{"orders_7d"})
	start := r.now
	r.append([]kith.Message{
		r.event("track", "Order Completed", "u1", "", start, nil),
		r.event("track", "Order Completed", "u1", "", start, nil),
		r.event("track", "Order Completed", "u2", "", start, nil),
	})
	r.settle() // recorded; the states only in memory

	// The crash: a new engine replays the log from the stored states.
	r.eng = audience.NewEngine(r.store, audience.Config{Secret: secret, Now: func() time.Time { return r.now }, FlushEvery: -1})
	r.eng.TrackTraits([]string{"orders_7d"})
	r.ix = pipeline.New(r.store, secret, pipeline.Config{BatchSize: 2, Observer: r.eng})
	r.settle()

	// Eight days on, u1 views something before any expiry ran.
	r.now = start.Add(8 * 24 * time.Hour)
	r.append([]kith.Message{r.event("track", "Viewed", "u1", "", r.now, nil)})
	for {
		n, err := r.ix.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	for {
		// Only the event's work: Step does the log before expiries.
		w, err := r.eng.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !w {
			break
		}
	}
	chs, err := r.store.TraitChanges(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chs {
		got = append(got, fmt.Sprintf("%s=%s", c.Key, c.Value))
	}
	// u1: 2 (its two orders in one batch), u2: 1, then the slide to 0
	// for both (u1 by its event, u2 by its expiry), each once.
	want := []string{"orders_7d=2", "orders_7d=1", "orders_7d=0", "orders_7d=0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trait changes %q, want %q", got, want)
	}
}

// A prediction handed over after its profile was erased (insight runs
// predict from a snapshot) records nothing about it.
func TestPredictionOfAnErasedProfileNotRecorded(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.eng.TrackTraits([]string{"churn_risk"})
	r.append([]kith.Message{r.event("identify", "", "u1", "", r.now, map[string]any{"plan": "pro"})})
	r.settle()
	id := firstProfile(t, r)
	if _, err := r.ix.EraseNow(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.EraseNow(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	r.eng.Predicted([]kith.ProfileInsights{{ProfileID: id, Traits: map[string]json.RawMessage{"churn_risk": json.RawMessage(`0.9`)}}})
	r.settle()
	if chs, err := r.store.TraitChanges(ctx, 0, 10); err != nil || len(chs) != 0 {
		t.Errorf("trait changes after predicting an erased profile: %+v %v, want none", chs, err)
	}
}

// firstProfile returns the id of the store's first unified profile, for
// fixtures with one person.
func firstProfile(t *testing.T, r *rig) string {
	t.Helper()
	ids, err := r.store.ProfileIDs(context.Background(), "", 1)
	if err != nil || len(ids) != 1 {
		t.Fatalf("profile ids %v %v", ids, err)
	}
	return ids[0]
}
