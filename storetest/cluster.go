package storetest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/kithcdp/kith"
)

func testClusterReplace(t *testing.T, s kith.Store) {
	ctx := t.Context()
	k1 := ident("email", "a@x.io", "p1", "s1", "m1", 1, 1)
	k2 := ident("anonymous_id", "anon-2", "p2", "s1", "m2", 2, 2)
	k3 := ident("email", "c@x.io", "p3", "s1", "m4", 4, 4)
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:      4,
		Profiles:    profiles("p1", "p2", "p3"),
		Identifiers: []kith.IdentifierUpsert{k1, k2, k3},
		Merges:      []kith.Merge{merge("p1", "p2", 3)},
		Traits:      []kith.TraitUpsert{trait("p1", "name", `"Ann"`, "s1", "m1", 1), trait("p2", "city", `"Oslo"`, "s1", "m2", 2)},
		Timeline:    []kith.TimelineEntry{entry("p1", 1, 1, "identify", ""), entry("p2", 2, 2, "track", "Viewed"), entry("p1", 3, 3, "track", "Linked"), entry("p3", 4, 4, "track", "Other")},
		Orders:      []kith.Order{order("p2", 2, 2, 10)},
	})
	c, err := s.Cluster(ctx, "p1")
	noErr(t, err, "Cluster")
	slices.Sort(c.Members)
	if !slices.Equal(c.Members, []string{"p1", "p2"}) || !slices.Equal(c.Seqs, []int64{1, 2, 3}) || len(c.Keys) != 2 ||
		!slices.Contains(c.Keys, k1.Key) || !slices.Contains(c.Keys, k2.Key) {
		t.Fatalf("Cluster(p1) = %+v", c)
	}
	if _, err := s.Cluster(ctx, "nobody"); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("Cluster(unknown) = %v, want ENOTFOUND", err)
	}

	// Re-derived without the merge: two profiles, each with its own rows.
	ms, err := s.Merges(ctx, "p1")
	noErr(t, err, "Merges")
	split := kith.Split{ID: "split-1", Survivor: "p1", Absorbed: "p2", Merge: ms[0], By: "tok_1", Reason: "wrong merge", At: at(10)}
	rederived := kith.IndexBatch{
		Profiles:    profiles("p1", "p2"),
		Identifiers: []kith.IdentifierUpsert{k1, k2},
		Traits:      []kith.TraitUpsert{trait("p1", "name", `"Ann"`, "s1", "m1", 1), trait("p2", "city", `"Oslo"`, "s1", "m2", 2)},
		Timeline:    []kith.TimelineEntry{entry("p1", 1, 1, "identify", ""), entry("p2", 2, 2, "track", "Viewed"), entry("p2", 3, 3, "track", "Linked")},
		Orders:      []kith.Order{order("p2", 2, 2, 10)},
	}
	noErr(t, s.ReplaceCluster(ctx, c.Members, rederived, &split), "ReplaceCluster")
	noErr(t, s.ReplaceCluster(ctx, c.Members, rederived, &split), "ReplaceCluster again") // idempotent
	checkCanonical(t, s, map[string]string{"p1": "p1", "p2": "p2", "p3": "p3"})
	for p, want := range map[string][]int64{"p1": {1}, "p2": {3, 2}, "p3": {4}} {
		tl, err := s.Timeline(ctx, p, kith.TimelineQuery{Limit: 10})
		noErr(t, err, "Timeline")
		if got := entrySeqs(tl); !slices.Equal(got, want) {
			t.Errorf("timeline of %s = %v, want %v", p, got, want)
		}
	}
	ms, err = s.Merges(ctx, "p1")
	noErr(t, err, "Merges")
	if len(ms) != 0 {
		t.Errorf("merges after split: %+v", ms)
	}
	tr, err := s.Traits(ctx, "p2")
	noErr(t, err, "Traits")
	if len(tr) != 1 || tr[0].Key != "city" {
		t.Errorf("traits of p2 = %+v", tr)
	}
	owners, err := s.LookupIdentifiers(ctx, []kith.IdentKey{k1.Key, k2.Key, k3.Key})
	noErr(t, err, "LookupIdentifiers")
	if owners[k2.Key].Canonical != "p2" || owners[k1.Key].Canonical != "p1" || owners[k3.Key].Canonical != "p3" {
		t.Errorf("owners after split = %+v", owners)
	}
	n := 0
	noErr(t, s.ScanOrders(ctx, func(co kith.CustomerOrders) error {
		if co.ProfileID != "p2" || len(co.Orders) != 1 {
			t.Errorf("orders after split: %+v", co)
		}
		n++
		return nil
	}), "ScanOrders")
	if n != 1 {
		t.Errorf("orders visited %d profiles, want 1", n)
	}
	cur, err := s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 4 {
		t.Errorf("cursor moved to %d", cur)
	}
	splits, err := s.Splits(ctx)
	noErr(t, err, "Splits")
	if len(splits) != 1 || splits[0].ID != "split-1" || splits[0].By != "tok_1" || splits[0].Reason != "wrong merge" ||
		splits[0].Merge.Absorbed != "p2" || !sameTime(splits[0].At, at(10)) {
		t.Errorf("Splits = %+v", splits)
	}
}

// Merged profiles lose nothing: a key's losing values stay visible.
func testTraitsKeepOthers(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("p1", "p2"),
		Traits: []kith.TraitUpsert{trait("p1", "plan", `"gold"`, "web", "m1", 30), trait("p2", "plan", `"silver"`, "crm", "m2", 25), trait("p2", "city", `"Oslo"`, "crm", "m2", 25)}})
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: []kith.Merge{merge("p1", "p2", 40)}})
	traits, err := s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	if len(traits) != 2 || traits[0].Key != "city" || traits[1].Key != "plan" {
		t.Fatalf("traits = %+v", traits)
	}
	plan := traits[1]
	if !jsonEqual(plan.Value, []byte(`"gold"`)) || len(plan.Others) != 1 || !jsonEqual(plan.Others[0].Value, []byte(`"silver"`)) ||
		plan.Others[0].ProfileID != "p2" || plan.Others[0].SourceID != "crm" || !sameTime(plan.Others[0].EventTime, at(25)) {
		t.Errorf("plan = %+v, want gold with silver from p2 kept", plan)
	}
	if len(traits[0].Others) != 0 {
		t.Errorf("city has others: %+v", traits[0].Others)
	}
	// A prediction replacing an event value keeps it among the others.
	noErr(t, s.WriteInsights(ctx, "r1", at(50), []kith.ProfileInsights{{ProfileID: "p1", Traits: map[string]json.RawMessage{"plan": json.RawMessage(`"platinum"`)}}}), "WriteInsights")
	traits, err = s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	if p := traits[1]; p.Provenance != kith.ProvenancePredicted || len(p.Others) != 2 || !jsonEqual(p.Others[0].Value, []byte(`"gold"`)) {
		t.Errorf("predicted plan = %+v, want gold and silver among the others", p)
	}
}

func testScanTraits(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 1, Profiles: profiles("p1", "p2", "p3", "p4"),
		Traits: []kith.TraitUpsert{
			trait("p1", "name", `"Ann Smith"`, "web", "m1", 10), trait("p1", "city", `"Oslo"`, "web", "m1", 10),
			trait("p2", "name", `"Anne Smith"`, "crm", "m2", 20), trait("p3", "name", `"Bob"`, "crm", "m3", 5),
			trait("p4", "plan", `"gold"`, "crm", "m4", 5),
		}})
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: []kith.Merge{merge("p1", "p2", 30)}})
	got := map[string]map[string]string{}
	noErr(t, s.ScanTraits(ctx, []string{"name", "city"}, func(p string, tr map[string]json.RawMessage) error {
		if _, dup := got[p]; dup {
			t.Errorf("profile %s visited twice", p)
		}
		got[p] = map[string]string{}
		for k, v := range tr {
			var x string
			json.Unmarshal(v, &x)
			got[p][k] = x
		}
		return nil
	}), "ScanTraits")
	want := map[string]map[string]string{"p1": {"name": "Anne Smith", "city": "Oslo"}, "p3": {"name": "Bob"}}
	if len(got) != len(want) || got["p1"]["name"] != "Anne Smith" || got["p1"]["city"] != "Oslo" || got["p3"]["name"] != "Bob" {
		t.Errorf("ScanTraits = %v, want %v", got, want)
	}
}
