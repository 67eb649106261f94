package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func order(profile string, m int, seq int64, revenue float64, items ...kith.OrderItem) kith.Order {
	return kith.Order{ProfileID: profile, Seq: seq, Timestamp: at(m), SourceID: "pos", OrderID: "o" + string(rune('a'+seq%26)),
		Revenue: revenue, Currency: "EUR", Items: items}
}

// scanAll collects ScanOrders into a map by canonical profile.
func scanAll(t *testing.T, s kith.Store) map[string][]kith.Order {
	t.Helper()
	got := map[string][]kith.Order{}
	err := s.ScanOrders(t.Context(), func(c kith.CustomerOrders) error {
		if _, dup := got[c.ProfileID]; dup {
			t.Errorf("profile %s visited twice", c.ProfileID)
		}
		got[c.ProfileID] = c.Orders
		return nil
	})
	noErr(t, err, "ScanOrders")
	return got
}

func testOrders(t *testing.T, s kith.Store) {
	mug := kith.OrderItem{ProductID: "mug", SKU: "M-1", Name: "Mug “Köln”", Category: "Kitchen", Price: 9.5, Quantity: 2}
	pen := kith.OrderItem{ProductID: "pen", Name: "Pen", Category: "Office", Price: 1.25, Quantity: 1}
	o1 := order("p1", 30, 3, 20, mug, pen)
	o2 := order("p1", 10, 1, 5) // earlier time, no lines
	o3 := order("p2", 20, 2, 1.25, pen)
	o4 := order("p3", 40, 4, 7, mug)
	o5 := order("p3", 5, 5, 3)
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 5, Profiles: profiles("p1", "p2", "p3", "p4"), Orders: []kith.Order{o1, o2, o3, o4, o5}})
	// A replayed order is the same fact: stored once.
	mustApply(t, s, 5, kith.IndexBatch{Cursor: 6, Orders: []kith.Order{o3}})

	check := func(got map[string][]kith.Order, want map[string][]kith.Order) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("ScanOrders visited %d profiles, want %d: %v", len(got), len(want), slices.Sorted(mapKeys(got)))
		}
		for p, w := range want {
			g := got[p]
			if len(g) != len(w) {
				t.Fatalf("profile %s: %d orders, want %d", p, len(g), len(w))
			}
			for i := range w {
				gi, wi := g[i], w[i]
				if !sameTime(gi.Timestamp, wi.Timestamp) {
					t.Errorf("profile %s order %d time %v, want %v", p, i, gi.Timestamp, wi.Timestamp)
				}
				gi.Timestamp, wi.Timestamp = time.Time{}, time.Time{}
				if !reflect.DeepEqual(gi, wi) {
					t.Errorf("profile %s order %d = %+v, want %+v", p, i, gi, wi)
				}
			}
		}
	}
	// Oldest first within a profile; profiles without orders not visited.
	check(scanAll(t, s), map[string][]kith.Order{"p1": {o2, o1}, "p2": {o3}, "p3": {o5, o4}})

	// After p2 and p3 merge into p1, p1 has all their orders in time order,
	// each still naming the profile it was recorded on.
	mustApply(t, s, 6, kith.IndexBatch{Cursor: 7, Merges: []kith.Merge{merge("p1", "p2", 50), merge("p1", "p3", 51)}})
	got := scanAll(t, s)
	want := []kith.Order{o5, o2, o3, o1, o4}
	for i := range want {
		want[i].ProfileID = "p1"
	}
	for i := range got["p1"] {
		got["p1"][i].ProfileID = "p1" // the member is not part of the contract
	}
	check(got, map[string][]kith.Order{"p1": want})

	// An error from fn stops the scan and comes back.
	stop := errors.New("stop")
	if err := s.ScanOrders(t.Context(), func(kith.CustomerOrders) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ScanOrders with failing fn = %v, want %v", err, stop)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func testInsights(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("p1", "p2", "p3"),
		Traits: []kith.TraitUpsert{trait("p1", "name", `"Ada"`, "s1", "m1", 1), trait("p1", "rfm_segment", `"typed by hand"`, "s1", "m1", 1)}})

	run1 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	noErr(t, s.WriteInsights(ctx, "r1", run1, []kith.ProfileInsights{
		{ProfileID: "p1", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.91`), "rfm_segment": json.RawMessage(`"Champions"`)}},
		{ProfileID: "p2", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.2`), "next_best_products": json.RawMessage(`["mug","pen"]`)}},
	}), "WriteInsights r1")

	traits, err := s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	got := map[string]kith.Trait{}
	var keys []string
	for _, tr := range traits {
		got[tr.Key] = tr
		keys = append(keys, tr.Key)
	}
	if !slices.IsSorted(keys) || strings.Join(keys, ",") != "name,p_alive,rfm_segment" {
		t.Fatalf("trait keys = %v, want name,p_alive,rfm_segment sorted", keys)
	}
	if n := got["name"]; n.Provenance != kith.ProvenanceEvent || n.SourceID != "s1" || n.RunID != "" {
		t.Errorf("event trait = %+v, want provenance event from s1", n)
	}
	// A prediction replaces an event trait of the same key.
	for _, k := range []string{"p_alive", "rfm_segment"} {
		p := got[k]
		if p.Provenance != kith.ProvenancePredicted || p.RunID != "r1" || !sameTime(p.EventTime, run1) || p.ProfileID != "p1" {
			t.Errorf("predicted trait %s = %+v, want provenance predicted, run r1 at %v", k, p, run1)
		}
	}
	if !jsonEqual(got["rfm_segment"].Value, json.RawMessage(`"Champions"`)) {
		t.Errorf("rfm_segment = %s, want the prediction", got["rfm_segment"].Value)
	}

	// A later run replaces a profile's predictions as a whole.
	run2 := run1.Add(24 * time.Hour)
	noErr(t, s.WriteInsights(ctx, "r2", run2, []kith.ProfileInsights{
		{ProfileID: "p2", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.3`)}},
	}), "WriteInsights r2")
	traits, err = s.Traits(ctx, "p2")
	noErr(t, err, "Traits")
	if len(traits) != 1 || traits[0].Key != "p_alive" || traits[0].RunID != "r2" || !jsonEqual(traits[0].Value, json.RawMessage(`0.3`)) {
		t.Errorf("p2 traits after r2 = %+v, want only p_alive 0.3 from r2", traits)
	}

	// Merged: per key the most recent prediction among the members.
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: []kith.Merge{merge("p1", "p2", 5)}})
	traits, err = s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	got = map[string]kith.Trait{}
	for _, tr := range traits {
		got[tr.Key] = tr
	}
	if p := got["p_alive"]; p.RunID != "r2" || p.ProfileID != "p2" || !jsonEqual(p.Value, json.RawMessage(`0.3`)) {
		t.Errorf("merged p_alive = %+v, want r2's 0.3 from p2", p)
	}
	if p := got["rfm_segment"]; p.RunID != "r1" {
		t.Errorf("merged rfm_segment = %+v, want r1's", p)
	}
}

func testInsightRuns(t *testing.T, s kith.Store) {
	ctx := t.Context()
	if _, err := s.InsightRun(ctx, "nope"); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("InsightRun(missing) = %v, want ENOTFOUND", err)
	}
	runs, err := s.InsightRuns(ctx, 10)
	noErr(t, err, "InsightRuns")
	if len(runs) != 0 {
		t.Errorf("runs in an empty store = %v", runs)
	}
	r1 := kith.InsightRun{ID: "r1", Status: kith.RunRunning, Trigger: "api", StartedAt: at(1)}
	r2 := kith.InsightRun{ID: "r2", Status: kith.RunFailed, Trigger: "schedule", StartedAt: at(2), FinishedAt: at(3), Error: "no orders"}
	noErr(t, s.SaveInsightRun(ctx, r1), "SaveInsightRun")
	noErr(t, s.SaveInsightRun(ctx, r2), "SaveInsightRun")
	r1.Status, r1.FinishedAt, r1.Report = kith.RunFinished, at(4), json.RawMessage(`{"bgnbd":{"r":0.24,"converged":true}}`)
	noErr(t, s.SaveInsightRun(ctx, r1), "SaveInsightRun update")

	same := func(got, want kith.InsightRun) {
		t.Helper()
		if got.ID != want.ID || got.Status != want.Status || got.Trigger != want.Trigger || got.Error != want.Error ||
			!sameTime(got.StartedAt, want.StartedAt) || !sameTime(got.FinishedAt, want.FinishedAt) ||
			(len(want.Report) > 0 || len(got.Report) > 0) && !jsonEqual(got.Report, want.Report) {
			t.Errorf("run = %+v, want %+v", got, want)
		}
	}
	got, err := s.InsightRun(ctx, "r1")
	noErr(t, err, "InsightRun")
	same(got, r1)
	runs, err = s.InsightRuns(ctx, 10)
	noErr(t, err, "InsightRuns")
	if len(runs) != 2 {
		t.Fatalf("InsightRuns = %d runs, want 2", len(runs))
	}
	same(runs[0], r2) // newest first
	same(runs[1], r1)
	runs, err = s.InsightRuns(ctx, 1)
	noErr(t, err, "InsightRuns")
	if len(runs) != 1 || runs[0].ID != "r2" {
		t.Errorf("InsightRuns(limit 1) = %v, want r2", runs)
	}
}

func testScanPredicted(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("p1", "p2", "p3", "p4")})
	run1 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	noErr(t, s.WriteInsights(ctx, "r1", run1, []kith.ProfileInsights{
		{ProfileID: "p1", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.91`), "clv_365d": json.RawMessage(`10`)}},
		{ProfileID: "p2", Traits: map[string]json.RawMessage{"clv_365d": json.RawMessage(`3`)}},
		{ProfileID: "p3", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.5`)}},
		{ProfileID: "p4", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.1`)}},
	}), "WriteInsights r1")
	// p4 is merged into p3 after the run; a later run predicted p4 again.
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: []kith.Merge{merge("p3", "p4", 2)}})
	noErr(t, s.WriteInsights(ctx, "r2", run1.Add(time.Hour), []kith.ProfileInsights{
		{ProfileID: "p4", Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.2`)}},
	}), "WriteInsights r2")
	got := map[string]string{}
	noErr(t, s.ScanPredicted(ctx, []string{"p_alive"}, func(id string, vals map[string]json.RawMessage) error {
		if _, dup := got[id]; dup {
			t.Errorf("ScanPredicted visited %s twice", id)
		}
		if len(vals) != 1 {
			t.Errorf("%s: %v, want only p_alive", id, vals)
		}
		got[id] = string(vals["p_alive"])
		return nil
	}), "ScanPredicted")
	want := map[string]string{"p1": "0.91", "p3": "0.2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ScanPredicted(p_alive) = %v, want %v (the merged profile's latest prediction)", got, want)
	}
}
