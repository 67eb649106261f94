package storetest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kithcdp/kith"
)

// testTraitChanges checks the trait change stream: changes appended by
// audience batches (alone, or beside membership changes) read back in
// order with increasing seqs, their values byte for byte (a missing value
// as null), in pages; the head follows; erasing a profile removes its
// changes and counts them, and a seq erased is never given again.
func testTraitChanges(t *testing.T, s kith.Store) {
	ctx := t.Context()
	head, err := s.TraitChangeHead(ctx)
	noErr(t, err, "TraitChangeHead")
	if head != 0 {
		t.Errorf("TraitChangeHead of an empty store = %d, want 0", head)
	}
	tc := func(p, key, value string, m int) kith.TraitChange {
		return kith.TraitChange{ProfileID: p, Key: key, Value: json.RawMessage(value), Provenance: kith.ProvenanceComputed, At: at(m), CauseSeq: int64(m)}
	}
	first := []kith.TraitChange{
		tc("p1", "orders", `3`, 1),
		tc("p2", "ltv", `12345678901234567890.5`, 2),
		tc("p1", "plan", `{"name":"gold","since":"2025"}`, 3),
	}
	first[1].Provenance = kith.ProvenancePredicted
	noErr(t, s.ApplyAudienceBatch(ctx, kith.AudienceBatch{TraitChanges: first}), "ApplyAudienceBatch of trait changes alone")
	second := []kith.TraitChange{tc("p2", "orders", "", 4), tc("p1", "orders", `"text \u0000 escaped"`, 5)}
	noErr(t, s.ApplyAudienceBatch(ctx, kith.AudienceBatch{
		Changes:      []kith.MembershipChange{{Audience: "vip", ProfileID: "p1", Entered: true, At: at(4), Cause: "event"}},
		TraitChanges: second,
	}), "ApplyAudienceBatch with membership changes")
	want := append(append([]kith.TraitChange{}, first...), second...)
	want[3].Value = json.RawMessage("null")
	got, err := s.TraitChanges(ctx, 0, 100)
	noErr(t, err, "TraitChanges")
	checkTraitChanges(t, got, want)
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Errorf("seqs %d then %d: not increasing", got[i-1].Seq, got[i].Seq)
		}
	}
	if len(got) == len(want) {
		page, err := s.TraitChanges(ctx, got[1].Seq, 2)
		noErr(t, err, "TraitChanges page")
		checkTraitChanges(t, page, want[2:4])
		head, err = s.TraitChangeHead(ctx)
		noErr(t, err, "TraitChangeHead")
		if head != got[len(got)-1].Seq {
			t.Errorf("TraitChangeHead = %d, want %d", head, got[len(got)-1].Seq)
		}
	}

	// The last values: p2's orders recorded as null is absent.
	vals, err := s.LoadTraitValues(ctx, []string{"p1", "p2", "p9"})
	noErr(t, err, "LoadTraitValues")
	wantVals := map[string]map[string]string{
		"p1": {"orders": `"text \u0000 escaped"`, "plan": `{"name":"gold","since":"2025"}`},
		"p2": {"ltv": `12345678901234567890.5`},
	}
	gotVals := map[string]map[string]string{}
	for id, kv := range vals {
		gotVals[id] = map[string]string{}
		for k, v := range kv {
			gotVals[id][k] = string(v)
		}
	}
	if fmt.Sprint(gotVals) != fmt.Sprint(wantVals) {
		t.Errorf("LoadTraitValues = %v, want %v", gotVals, wantVals)
	}

	// p1 made the last change; erasing it removes its three changes and
	// two last values.
	n, err := s.EraseAudienceHistory(ctx, []string{"p1"})
	noErr(t, err, "EraseAudienceHistory")
	if n != 3+2+1 { // three trait changes, two values and its entry into vip
		t.Errorf("EraseAudienceHistory counted %d, want 6", n)
	}
	if vals, err := s.LoadTraitValues(ctx, []string{"p1"}); err != nil || len(vals) != 0 {
		t.Errorf("LoadTraitValues of an erased profile = %v, %v", vals, err)
	}
	got, err = s.TraitChanges(ctx, 0, 100)
	noErr(t, err, "TraitChanges after erasure")
	checkTraitChanges(t, got, []kith.TraitChange{want[1], want[3]})
	noErr(t, s.ApplyAudienceBatch(ctx, kith.AudienceBatch{TraitChanges: []kith.TraitChange{tc("p3", "orders", `1`, 6)}}), "ApplyAudienceBatch after erasure")
	after, err := s.TraitChanges(ctx, 0, 100)
	noErr(t, err, "TraitChanges")
	if len(after) != 3 {
		t.Fatalf("after a new change: %d changes %+v, want 3", len(after), after)
	}
	if after[2].Seq <= head {
		t.Errorf("after erasing the last changes (head %d), a new change has seq %d: a reader past the head would miss it", head, after[len(after)-1].Seq)
	}
}

// checkTraitChanges fails the test unless got is want (ignoring Seq).
func checkTraitChanges(t *testing.T, got, want []kith.TraitChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d trait changes %+v, want %d", len(got), got, len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		checkTime(t, fmt.Sprintf("trait change %d At", i), g.At, w.At)
		if g.ProfileID != w.ProfileID || g.Key != w.Key || string(g.Value) != string(w.Value) || g.Provenance != w.Provenance || g.CauseSeq != w.CauseSeq {
			t.Errorf("trait change %d = %+v (value %s), want %+v (value %s)", i, g, g.Value, w, w.Value)
		}
	}
}
