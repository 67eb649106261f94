package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// enter and exit build membership changes at the given minute.
func enter(audience, profile string, minute int) kith.MembershipChange {
	return kith.MembershipChange{Audience: audience, ProfileID: profile, Entered: true, At: at(minute), Cause: "event", CauseSeq: int64(100 + minute)}
}

func exit(audience, profile string, minute int) kith.MembershipChange {
	return kith.MembershipChange{Audience: audience, ProfileID: profile, At: at(minute), Cause: "expiry"}
}

// mustApplyAudience applies b and fails the test on error.
func mustApplyAudience(t *testing.T, s kith.Store, b kith.AudienceBatch) {
	t.Helper()
	if err := s.ApplyAudienceBatch(t.Context(), b); err != nil {
		t.Fatalf("ApplyAudienceBatch(cursor %d, %d states, %d changes): %v", b.Cursor, len(b.States), len(b.Changes), err)
	}
}

// definitionDiff describes how got differs from want; "" when they match.
// Times must be the same instant and in UTC, conditions the same JSON.
func definitionDiff(got, want kith.Definition) string {
	var d []string
	if !jsonEqual(got.Condition, want.Condition) && (len(got.Condition) > 0 || len(want.Condition) > 0) {
		d = append(d, fmt.Sprintf("Condition=%s want %s", got.Condition, want.Condition))
	}
	times := []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"UpdatedAt", got.UpdatedAt, want.UpdatedAt},
		{"Backfill.StartedAt", got.Backfill.StartedAt, want.Backfill.StartedAt},
		{"Backfill.FinishedAt", got.Backfill.FinishedAt, want.Backfill.FinishedAt},
	}
	for _, tm := range times {
		if !sameTime(tm.got, tm.want) {
			d = append(d, fmt.Sprintf("%s=%v want %v in UTC", tm.name, tm.got, tm.want.UTC()))
		}
	}
	got.Condition, want.Condition = nil, nil
	got.CreatedAt, got.UpdatedAt, got.Backfill.StartedAt, got.Backfill.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	want.CreatedAt, want.UpdatedAt, want.Backfill.StartedAt, want.Backfill.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		d = append(d, fmt.Sprintf("%+v want %+v", got, want))
	}
	if d == nil {
		return ""
	}
	return fmt.Sprint(d)
}

// checkDefinitions fails the test unless Definitions returns want, in
// order.
func checkDefinitions(t *testing.T, s kith.Store, want []kith.Definition) {
	t.Helper()
	got, err := s.Definitions(t.Context())
	noErr(t, err, "Definitions")
	if len(got) != len(want) {
		t.Fatalf("Definitions returned %d: %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if d := definitionDiff(got[i], want[i]); d != "" {
			t.Errorf("definition %d (%s %s): %s", i, want[i].Kind, want[i].Key, d)
		}
	}
}

func testAudienceDefinitions(t *testing.T, s kith.Store) {
	ctx := t.Context()
	checkDefinitions(t, s, nil)

	berlin := time.FixedZone("CET", 3600)
	vip := kith.Definition{
		Kind:      kith.KindAudience,
		Key:       "vip",
		Text:      `lifetime_value > 500 and country = "DE" & «Köln»`,
		Condition: json.RawMessage(`{"and":[{"trait":"lifetime_value","op":">","value":500},{"trait":"country","op":"=","value":"DE"}]}`),
		Version:   3,
		CreatedAt: at(0).In(berlin), // returned as the same instant in UTC
		UpdatedAt: at(5),
		Backfill: kith.Backfill{State: kith.BackfillFailed, Done: 1200, Total: 5000,
			StartedAt: at(6), FinishedAt: at(7), Error: "evaluation timed out"},
	}
	churn := kith.Definition{Kind: kith.KindAudience, Key: "churn", Text: "no orders in 90d",
		Condition: json.RawMessage(`{"not":{"event":"Order Completed","within":"90d"}}`), Version: 1,
		CreatedAt: at(1), UpdatedAt: at(1), Backfill: kith.Backfill{State: kith.BackfillPending}}
	orders := kith.Definition{Kind: kith.KindComputedTrait, Key: "orders_90d", Text: "count Order Completed within 90d",
		Condition: json.RawMessage(`{"count":{"event":"Order Completed"}}`), Version: 1,
		CreatedAt: at(2), UpdatedAt: at(2), Backfill: kith.Backfill{State: kith.BackfillRunning, Done: 10, Total: 20, StartedAt: at(3)}}
	// The same key under another kind is another definition.
	vipTrait := kith.Definition{Kind: kith.KindComputedTrait, Key: "vip", Text: "last vip flag", Version: 1, CreatedAt: at(4), UpdatedAt: at(4)}
	for _, d := range []kith.Definition{orders, vip, vipTrait, churn} {
		noErr(t, s.SaveDefinition(ctx, d), "SaveDefinition "+d.Key)
	}
	// By kind, then key.
	checkDefinitions(t, s, []kith.Definition{churn, vip, orders, vipTrait})

	// Saving again replaces the whole definition.
	vip2 := vip
	vip2.Text, vip2.Condition, vip2.Version = "lifetime_value > 1000", json.RawMessage(`{"trait":"lifetime_value","op":">","value":1000}`), 4
	vip2.UpdatedAt = at(10)
	vip2.Backfill = kith.Backfill{State: kith.BackfillDone, Done: 5000, Total: 5000, StartedAt: at(10), FinishedAt: at(12)}
	noErr(t, s.SaveDefinition(ctx, vip2), "SaveDefinition vip again")
	checkDefinitions(t, s, []kith.Definition{churn, vip2, orders, vipTrait})

	tests := []struct {
		name      string
		kind, key string
		code      string
	}{
		{"existing", kith.KindAudience, "churn", ""},
		{"deleted twice", kith.KindAudience, "churn", kith.ENOTFOUND},
		{"never saved", kith.KindAudience, "nope", kith.ENOTFOUND},
		{"key of another kind", kith.KindAudience, "orders_90d", kith.ENOTFOUND},
		{"one of two kinds", kith.KindComputedTrait, "vip", ""},
	}
	for _, tt := range tests {
		wantCode(t, s.DeleteDefinition(ctx, tt.kind, tt.key), tt.code, "DeleteDefinition "+tt.name)
	}
	checkDefinitions(t, s, []kith.Definition{vip2, orders})
}

// memberModel is the member lists a sequence of changes should produce:
// audience → profile → since.
type memberModel map[string]map[string]time.Time

func (m memberModel) apply(changes []kith.MembershipChange) {
	for _, c := range changes {
		if c.Entered {
			if m[c.Audience] == nil {
				m[c.Audience] = map[string]time.Time{}
			}
			m[c.Audience][c.ProfileID] = c.At
		} else {
			delete(m[c.Audience], c.ProfileID)
		}
	}
}

// checkMembers fails the test unless Members and AudienceSize agree with
// the model for the given audiences. (A profile's memberships are kept in
// the audience engine's per-profile state.)
func checkMembers(t *testing.T, s kith.Store, m memberModel, audiences, profiles []string) {
	t.Helper()
	ctx := t.Context()
	for _, a := range audiences {
		got, err := s.Members(ctx, a, "", 1000)
		noErr(t, err, "Members "+a)
		want := slices.Sorted(maps.Keys(m[a]))
		if len(got) != len(want) {
			t.Errorf("Members(%s) = %+v, want %v", a, got, want)
		} else {
			for i, g := range got {
				if g.Audience != a || g.ProfileID != want[i] {
					t.Errorf("Members(%s)[%d] = %+v, want profile %s", a, i, g, want[i])
				}
				checkTime(t, "Members("+a+") "+g.ProfileID+" Since", g.Since, m[a][want[i]])
			}
		}
		n, err := s.AudienceSize(ctx, a)
		noErr(t, err, "AudienceSize "+a)
		if n != int64(len(want)) {
			t.Errorf("AudienceSize(%s) = %d, want %d", a, n, len(want))
		}
	}

}

func testAudienceBatch(t *testing.T, s kith.Store) {
	audiences := []string{"churn", "vip", "never"}
	profiles := []string{"p1", "p2", "p3", "p4", "p5"}
	model := memberModel{}
	checkMembers(t, s, model, audiences, profiles)
	steps := []struct {
		name    string
		changes []kith.MembershipChange
	}{
		{"entries", []kith.MembershipChange{
			enter("vip", "p3", 0), enter("vip", "p1", 1), enter("vip", "p2", 2), enter("churn", "p1", 3),
		}},
		{"exit, and exit then re-entry in one batch", []kith.MembershipChange{
			exit("vip", "p3", 10), exit("vip", "p2", 11), enter("vip", "p2", 12), enter("churn", "p4", 13),
		}},
		{"entry then exit in one batch leaves no member", []kith.MembershipChange{
			enter("churn", "p5", 20), exit("churn", "p5", 21), enter("vip", "p4", 22),
		}},
		{"everyone leaves", []kith.MembershipChange{
			exit("vip", "p1", 30), exit("vip", "p2", 31), exit("vip", "p4", 32), exit("churn", "p1", 33), exit("churn", "p4", 34),
		}},
		{"back again", []kith.MembershipChange{enter("vip", "p1", 40)}},
		{"an empty batch changes nothing", nil},
	}
	for _, step := range steps {
		mustApplyAudience(t, s, kith.AudienceBatch{Changes: step.changes})
		model.apply(step.changes)
		t.Run(step.name, func(t *testing.T) { checkMembers(t, s, model, audiences, profiles) })
	}
}

func testAudienceMembersPaging(t *testing.T, s kith.Store) {
	ctx := t.Context()
	var changes []kith.MembershipChange
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("p%02d", i))
	}
	// Applied out of id order; other audiences interleaved.
	for i, j := range []int{7, 3, 24, 0, 11, 19, 1, 5, 13, 22, 9, 2, 17, 4, 21, 8, 14, 6, 23, 10, 16, 12, 20, 15, 18} {
		changes = append(changes, enter("big", want[j], i), enter("small", want[j]+"x", i))
	}
	changes = append(changes, enter("aaa", "p00", 30), enter("zzz", "p99", 31))
	mustApplyAudience(t, s, kith.AudienceBatch{Changes: changes})

	tests := []struct {
		name  string
		after string
		limit int
		want  []string
	}{
		{"first page", "", 10, want[:10]},
		{"second page", "p09", 10, want[10:20]},
		{"last page is short", "p19", 10, want[20:]},
		{"after the last member", "p24", 10, nil},
		{"after an id that is not a member", "p05a", 3, want[6:9]},
		{"limit one", "p10", 1, want[11:12]},
		{"limit beyond the size", "", 100, want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Members(ctx, "big", tt.after, tt.limit)
			noErr(t, err, "Members")
			var ids []string
			for _, m := range got {
				ids = append(ids, m.ProfileID)
				if m.Audience != "big" {
					t.Errorf("member %+v of another audience", m)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("Members(big, %q, %d) = %v, want %v", tt.after, tt.limit, ids, tt.want)
			}
		})
	}
	// Walking all pages visits every member once.
	var all []string
	for after := ""; ; {
		page, err := s.Members(ctx, "big", after, 7)
		noErr(t, err, "Members")
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			all = append(all, m.ProfileID)
		}
		after = page[len(page)-1].ProfileID
	}
	if !slices.Equal(all, want) {
		t.Errorf("paging through big visited %v, want %v", all, want)
	}
	if n, err := s.AudienceSize(ctx, "big"); err != nil || n != 25 {
		t.Errorf("AudienceSize(big) = %d, %v; want 25", n, err)
	}
	if got, err := s.Members(ctx, "unknown", "", 10); err != nil || len(got) != 0 {
		t.Errorf("Members(unknown) = %+v, %v; want none", got, err)
	}
}

// changeDiff describes how got differs from want, ignoring Seq.
func changeDiff(got, want kith.MembershipChange) string {
	if !sameTime(got.At, want.At) {
		return fmt.Sprintf("At=%v want %v in UTC", got.At, want.At.UTC())
	}
	got.Seq, got.At, want.At = 0, time.Time{}, time.Time{}
	if got != want {
		return fmt.Sprintf("%+v want %+v", got, want)
	}
	return ""
}

func testAudienceChanges(t *testing.T, s kith.Store) {
	ctx := t.Context()
	if got, err := s.MembershipChanges(ctx, 0, "", "", 10); err != nil || len(got) != 0 {
		t.Fatalf("MembershipChanges on an empty store = %+v, %v", got, err)
	}
	backfill := kith.MembershipChange{Audience: "churn", ProfileID: "p2", Entered: true, At: at(2), Cause: "backfill"}
	batches := [][]kith.MembershipChange{
		{enter("vip", "p1", 0), enter("churn", "p1", 1), backfill},
		{exit("vip", "p1", 3), enter("vip", "p2", 4)},
		{{Audience: "churn", ProfileID: "p1", At: at(5), Cause: "merge", CauseSeq: 77}, enter("vip", "p1", 6)},
	}
	var applied []kith.MembershipChange
	for _, b := range batches {
		mustApplyAudience(t, s, kith.AudienceBatch{Changes: b})
		applied = append(applied, b...)
	}
	all, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if len(all) != len(applied) {
		t.Fatalf("MembershipChanges returned %d changes, want %d: %+v", len(all), len(applied), all)
	}
	seqOf := map[int64]int{} // seq → index in applied
	for i := range all {
		if i > 0 && all[i].Seq <= all[i-1].Seq {
			t.Errorf("change %d has Seq %d after %d: want strictly ascending", i, all[i].Seq, all[i-1].Seq)
		}
		if all[i].Seq <= 0 {
			t.Errorf("change %d has Seq %d: want positive", i, all[i].Seq)
		}
		if d := changeDiff(all[i], applied[i]); d != "" {
			t.Errorf("change %d: %s", i, d)
		}
		seqOf[all[i].Seq] = i
	}

	// pick returns the applied changes with the given indexes.
	pick := func(idx ...int) []kith.MembershipChange {
		var out []kith.MembershipChange
		for _, i := range idx {
			out = append(out, applied[i])
		}
		return out
	}
	tests := []struct {
		name              string
		after             int64
		audience, profile string
		limit             int
		want              []kith.MembershipChange
	}{
		{"all", 0, "", "", 100, applied},
		{"limit", 0, "", "", 2, pick(0, 1)},
		{"after", all[2].Seq, "", "", 100, pick(3, 4, 5, 6)},
		{"after with limit", all[2].Seq, "", "", 2, pick(3, 4)},
		{"after the last", all[6].Seq, "", "", 100, nil},
		{"one audience", 0, "vip", "", 100, pick(0, 3, 4, 6)},
		{"one audience after", all[3].Seq, "vip", "", 100, pick(4, 6)},
		{"one audience with limit", 0, "vip", "", 3, pick(0, 3, 4)},
		{"one profile", 0, "", "p1", 100, pick(0, 1, 3, 5, 6)},
		{"one profile after", all[3].Seq, "", "p1", 100, pick(5, 6)},
		{"audience and profile", 0, "churn", "p1", 100, pick(1, 5)},
		{"unknown audience", 0, "nope", "", 100, nil},
		{"unknown profile", 0, "", "nope", 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.MembershipChanges(ctx, tt.after, tt.audience, tt.profile, tt.limit)
			noErr(t, err, "MembershipChanges")
			if len(got) != len(tt.want) {
				t.Fatalf("MembershipChanges(%d, %q, %q, %d) returned %d changes, want %d: %+v", tt.after, tt.audience, tt.profile, tt.limit, len(got), len(tt.want), got)
			}
			for i := range got {
				if d := changeDiff(got[i], tt.want[i]); d != "" {
					t.Errorf("change %d: %s", i, d)
				}
				if _, ok := seqOf[got[i].Seq]; !ok {
					t.Errorf("change %d has Seq %d, not one of the full history's", i, got[i].Seq)
				}
			}
		})
	}
}

// loadStates calls LoadStates and fails the test on error.
func loadStates(t *testing.T, s kith.Store, ids ...string) map[string][]byte {
	t.Helper()
	got, err := s.LoadStates(t.Context(), ids)
	noErr(t, err, "LoadStates")
	return got
}

// checkStates fails the test unless got holds exactly want (profile →
// state).
func checkStates(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d states %v, want %d %v", what, len(got), slices.Sorted(maps.Keys(got)), len(want), slices.Sorted(maps.Keys(want)))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s: no state for %s", what, id)
		} else if string(g) != string(w) {
			t.Errorf("%s: state of %s = %q, want %q", what, id, g, w)
		}
	}
}

// scanStates collects ScanStates in the order it visits.
func scanStates(t *testing.T, s kith.Store) (ids []string, states map[string][]byte) {
	t.Helper()
	states = map[string][]byte{}
	err := s.ScanStates(t.Context(), func(id string, st []byte) error {
		ids = append(ids, id)
		states[id] = slices.Clone(st)
		return nil
	})
	noErr(t, err, "ScanStates")
	return ids, states
}

func testAudienceStates(t *testing.T, s kith.Store) {
	ctx := t.Context()
	checkStates(t, "empty store", loadStates(t, s, "p1", "p2"), nil)
	if ids, _ := scanStates(t, s); len(ids) != 0 {
		t.Errorf("ScanStates on an empty store visited %v", ids)
	}
	binary := []byte{0, 1, 2, 0xff, 0xfe, 'x', 0}
	mustApplyAudience(t, s, kith.AudienceBatch{States: []kith.ProfileState{
		{ProfileID: "p3", State: []byte("three")},
		{ProfileID: "p1", State: []byte("one")},
		{ProfileID: "p2", State: binary},
		{ProfileID: "p4", State: []byte("four")},
		{ProfileID: "p6", State: []byte("six")},
	}})
	checkStates(t, "LoadStates", loadStates(t, s, "p1", "p2", "p3", "nope"),
		map[string][]byte{"p1": []byte("one"), "p2": binary, "p3": []byte("three")})
	checkStates(t, "LoadStates of none", loadStates(t, s), nil)
	checkStates(t, "LoadStates with a repeated id", loadStates(t, s, "p1", "p1"), map[string][]byte{"p1": []byte("one")})

	mustApplyAudience(t, s, kith.AudienceBatch{States: []kith.ProfileState{
		{ProfileID: "p1", State: []byte("one again")}, // replaced
		{ProfileID: "p2"}, // nil deletes
		{ProfileID: "p4", State: []byte("four, briefly")},
		{ProfileID: "p4"}, // set then deleted in one batch: gone
		{ProfileID: "p5"},
		{ProfileID: "p5", State: []byte("five")}, // deleted then set: there
		{ProfileID: "p6", State: []byte{}},       // empty is a state, not a deletion
		{ProfileID: "never"},                     // deleting what is absent is no error
	}})
	want := map[string][]byte{"p1": []byte("one again"), "p3": []byte("three"), "p5": []byte("five"), "p6": {}}
	checkStates(t, "after the second batch", loadStates(t, s, "p1", "p2", "p3", "p4", "p5", "p6", "never"), want)
	_, scanned := scanStates(t, s)
	checkStates(t, "ScanStates", scanned, want)

	// Many states: LoadStates of more ids than one query takes, and
	// ScanStates in byte order of the ids (punctuation and case included)
	// across more states than one page.
	var many []kith.ProfileState
	var ids []string
	for i := range 2600 {
		id := fmt.Sprintf("q%04d", (i*7919)%2600) // a permutation
		many = append(many, kith.ProfileState{ProfileID: id, State: []byte("s" + id)})
		ids = append(ids, id)
	}
	for _, id := range []string{"q-1", "q_1", "qA", "qa", "Q1", "q 1", "q1-"} {
		many = append(many, kith.ProfileState{ProfileID: id, State: []byte("s" + id)})
		ids = append(ids, id)
	}
	mustApplyAudience(t, s, kith.AudienceBatch{States: many})
	got := loadStates(t, s, append(slices.Clone(ids), "p1", "missing")...)
	if len(got) != len(ids)+1 || string(got["q1234"]) != "sq1234" || string(got["p1"]) != "one again" || string(got["qA"]) != "sqA" {
		t.Errorf("LoadStates of %d ids returned %d", len(ids)+2, len(got))
	}
	order, scanned := scanStates(t, s)
	wantOrder := slices.Sorted(slices.Values(append(ids, "p1", "p3", "p5", "p6")))
	if !slices.Equal(order, wantOrder) {
		t.Errorf("ScanStates visited %d ids, want %d in byte order; first differences: %v", len(order), len(wantOrder), firstDiff(order, wantOrder))
	}
	if string(scanned["q0007"]) != "sq0007" {
		t.Errorf("ScanStates gave q0007 the state %q", scanned["q0007"])
	}

	// An error from fn stops the scan and is returned.
	stop := errors.New("stop")
	visited := 0
	err := s.ScanStates(ctx, func(string, []byte) error {
		visited++
		if visited == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || visited != 3 {
		t.Errorf("ScanStates with fn failing at the third state: err %v after %d visits, want stop after 3", err, visited)
	}
}

// firstDiff shows where two id lists first differ, for failure messages.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d got %q want %q", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func testAudienceCursor(t *testing.T, s kith.Store) {
	ctx := t.Context()
	steps := []struct {
		name   string
		cursor int64
		want   int64
	}{
		{"first batch", 7, 7},
		{"a batch without a cursor (a backfill) leaves it", 0, 7},
		{"moves on", 12, 12},
		{"a large log position", 1 << 40, 1 << 40},
	}
	cur, err := s.AudienceCursor(ctx)
	noErr(t, err, "AudienceCursor")
	if cur != 0 {
		t.Errorf("AudienceCursor on an empty store = %d, want 0", cur)
	}
	for _, st := range steps {
		mustApplyAudience(t, s, kith.AudienceBatch{Cursor: st.cursor, States: []kith.ProfileState{{ProfileID: "p1", State: []byte(st.name)}}})
		cur, err := s.AudienceCursor(ctx)
		noErr(t, err, "AudienceCursor")
		if cur != st.want {
			t.Errorf("%s: AudienceCursor = %d, want %d", st.name, cur, st.want)
		}
	}
}

func testAudienceConflict(t *testing.T, s kith.Store) {
	ctx := t.Context()
	setup := []kith.MembershipChange{enter("vip", "p1", 0), enter("vip", "p2", 1), enter("churn", "p2", 2)}
	mustApplyAudience(t, s, kith.AudienceBatch{Cursor: 5, States: []kith.ProfileState{{ProfileID: "p1", State: []byte("before")}}, Changes: setup})
	model := memberModel{}
	model.apply(setup)
	history, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")

	tests := []struct {
		name    string
		changes []kith.MembershipChange
	}{
		{"entry for a member", []kith.MembershipChange{enter("vip", "p3", 10), enter("vip", "p1", 11)}},
		{"exit for a non-member", []kith.MembershipChange{exit("vip", "p2", 10), exit("churn", "p1", 11)}},
		{"exit for an unknown audience", []kith.MembershipChange{exit("nope", "p1", 10)}},
		{"two entries in one batch", []kith.MembershipChange{enter("vip", "p3", 10), enter("vip", "p3", 11)}},
		{"two exits in one batch", []kith.MembershipChange{exit("vip", "p2", 10), exit("vip", "p2", 11)}},
		{"entry after exit and re-entry", []kith.MembershipChange{exit("vip", "p1", 10), enter("vip", "p1", 11), enter("vip", "p1", 12)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.ApplyAudienceBatch(ctx, kith.AudienceBatch{
				Cursor:  9,
				States:  []kith.ProfileState{{ProfileID: "p1", State: []byte("after")}, {ProfileID: "p4", State: []byte("new")}},
				Changes: tt.changes,
			})
			wantCode(t, err, kith.ECONFLICT, "ApplyAudienceBatch")
			// Nothing of the batch was applied.
			cur, err := s.AudienceCursor(ctx)
			noErr(t, err, "AudienceCursor")
			if cur != 5 {
				t.Errorf("AudienceCursor after a failed batch = %d, want 5", cur)
			}
			checkStates(t, "states after a failed batch", loadStates(t, s, "p1", "p4"), map[string][]byte{"p1": []byte("before")})
			checkMembers(t, s, model, []string{"vip", "churn", "nope"}, []string{"p1", "p2", "p3"})
			got, err := s.MembershipChanges(ctx, 0, "", "", 100)
			noErr(t, err, "MembershipChanges")
			if !reflect.DeepEqual(got, history) {
				t.Errorf("history after a failed batch = %+v, want %+v", got, history)
			}
		})
	}

	// The store still takes a valid batch, with the next seqs.
	next := []kith.MembershipChange{exit("vip", "p1", 20), enter("vip", "p3", 21)}
	mustApplyAudience(t, s, kith.AudienceBatch{Cursor: 9, Changes: next})
	model.apply(next)
	checkMembers(t, s, model, []string{"vip", "churn"}, []string{"p1", "p2", "p3"})
	got, err := s.MembershipChanges(ctx, history[len(history)-1].Seq, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if len(got) != 2 || changeDiff(got[0], next[0]) != "" || changeDiff(got[1], next[1]) != "" {
		t.Errorf("changes after the valid batch = %+v, want %+v", got, next)
	}
}

// testAudienceReopen checks that definitions and everything the audience
// engine stored survive closing and reopening the store.
func testAudienceReopen(t *testing.T, open func(t *testing.T) (kith.Store, func() kith.Store)) {
	s, reopen := open(t)
	closer := &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	ctx := t.Context()

	def := kith.Definition{Kind: kith.KindAudience, Key: "vip", Text: "lifetime_value > 500",
		Condition: json.RawMessage(`{"trait":"lifetime_value","op":">","value":500}`), Version: 2,
		CreatedAt: at(0), UpdatedAt: at(1), Backfill: kith.Backfill{State: kith.BackfillDone, Done: 3, Total: 3, StartedAt: at(1), FinishedAt: at(2)}}
	noErr(t, s.SaveDefinition(ctx, def), "SaveDefinition")
	changes := []kith.MembershipChange{enter("vip", "p1", 3), enter("vip", "p2", 4), exit("vip", "p1", 5)}
	mustApplyAudience(t, s, kith.AudienceBatch{Cursor: 42, States: []kith.ProfileState{{ProfileID: "p1", State: []byte("s1")}, {ProfileID: "p2", State: []byte("s2")}}, Changes: changes})
	history, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	checkDefinitions(t, s, []kith.Definition{def})
	cur, err := s.AudienceCursor(ctx)
	noErr(t, err, "AudienceCursor")
	if cur != 42 {
		t.Errorf("AudienceCursor after reopen = %d, want 42", cur)
	}
	checkStates(t, "states after reopen", loadStates(t, s, "p1", "p2"), map[string][]byte{"p1": []byte("s1"), "p2": []byte("s2")})
	model := memberModel{}
	model.apply(changes)
	checkMembers(t, s, model, []string{"vip"}, []string{"p1", "p2"})
	got, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if !reflect.DeepEqual(got, history) {
		t.Errorf("history after reopen = %+v, want %+v", got, history)
	}
	// New changes continue the history after the old seqs.
	mustApplyAudience(t, s, kith.AudienceBatch{Changes: []kith.MembershipChange{enter("vip", "p3", 6)}})
	more, err := s.MembershipChanges(ctx, history[len(history)-1].Seq, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if len(more) != 1 || more[0].ProfileID != "p3" {
		t.Errorf("changes after reopen = %+v, want p3's entry", more)
	}
}
