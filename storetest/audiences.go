package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
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

// bulk builds a bulk change at the given minute.
func bulk(audience string, entered bool, minute int, cause string, profiles ...string) kith.BulkChange {
	return kith.BulkChange{Audience: audience, Entered: entered, ProfileIDs: profiles, At: at(minute), Cause: cause}
}

// profileIDs returns n profile ids with the given prefix, numbered from
// from.
func profileIDs(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, from+i)
	}
	return out
}

// mustApplyAudience applies b and fails the test on error.
func mustApplyAudience(t *testing.T, s kith.Store, b kith.AudienceBatch) {
	t.Helper()
	if err := s.ApplyAudienceBatch(t.Context(), b); err != nil {
		t.Fatalf("ApplyAudienceBatch(cursor %d, %d states, %d changes, %d bulk changes): %v", b.Cursor, len(b.States), len(b.Changes), len(b.Bulk), err)
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

// AudienceModel is what a sequence of audience batches should leave in a
// store: the states, the memberships (audience → profile → since), the
// stable order of profiles (the order in which they were first stored)
// and the history, one change per profile of a bulk change. It is the
// reference the conformance suite holds both stores to, and exported so
// that the batch planner the stores share (membership.Plan) is held to
// the very same one.
type AudienceModel struct {
	states  map[string][]byte
	members map[string]map[string]time.Time
	rank    map[string]int // profile → place in the stable order
	next    int
	// A profile left with neither a state nor a membership may be
	// forgotten by the store, and then takes a new place when it comes
	// back; its place is not checked.
	forgot, uncertain map[string]bool
	history           []kith.MembershipChange // Seq not set
	cursor, statesCur int64
}

// NewAudienceModel returns the model of an empty store.
func NewAudienceModel() *AudienceModel {
	return &AudienceModel{
		states: map[string][]byte{}, members: map[string]map[string]time.Time{}, rank: map[string]int{},
		forgot: map[string]bool{}, uncertain: map[string]bool{},
	}
}

// memberships returns the model's memberships of profile id, by audience,
// with Since.
func (m *AudienceModel) memberships(id string) []kith.Member {
	var out []kith.Member
	for _, a := range slices.Sorted(maps.Keys(m.members)) {
		if since, ok := m.members[a][id]; ok {
			out = append(out, kith.Member{Audience: a, ProfileID: id, Since: since})
		}
	}
	return out
}

// change applies one entry or exit; the store would reject a
// contradicting one, and the tests never apply those to the model.
func (m *AudienceModel) change(c kith.MembershipChange) {
	if c.Entered {
		if m.members[c.Audience] == nil {
			m.members[c.Audience] = map[string]time.Time{}
		}
		m.members[c.Audience][c.ProfileID] = c.At
	} else {
		delete(m.members[c.Audience], c.ProfileID)
	}
	m.history = append(m.history, c)
}

// Conflict returns the error a store must refuse b with, or nil when it
// must accept b. It replays b in order (its changes, then each bulk
// change's profiles) over the model's memberships: the first entry for a
// member or exit for a non-member is ECONFLICT, its message naming the
// change by its place in the batch.
func (m *AudienceModel) Conflict(b kith.AudienceBatch) error {
	now := map[[2]string]bool{} // audience and profile → member, where the batch changed it so far
	check := func(what, audience, profile string, entered bool) error {
		key := [2]string{audience, profile}
		member, ok := now[key]
		if !ok {
			_, member = m.members[audience][profile]
		}
		if member == entered {
			did, but := "exited", "is not a member"
			if entered {
				did, but = "entered", "is already a member"
			}
			return kith.Errorf(kith.ECONFLICT, "%s: profile %s %s audience %q but %s", what, profile, did, audience, but)
		}
		now[key] = entered
		return nil
	}
	for i, c := range b.Changes {
		if err := check(fmt.Sprintf("change %d", i), c.Audience, c.ProfileID, c.Entered); err != nil {
			return err
		}
	}
	for i, bc := range b.Bulk {
		for _, id := range bc.ProfileIDs {
			if err := check(fmt.Sprintf("bulk change %d", i), bc.Audience, id, bc.Entered); err != nil {
				return err
			}
		}
	}
	return nil
}

// Apply applies a batch the store accepted (Conflict returns nil).
func (m *AudienceModel) Apply(b kith.AudienceBatch) {
	last := map[string][]byte{}
	var names []string // in the order the batch names them
	for _, s := range b.States {
		last[s.ProfileID] = s.State
		names = append(names, s.ProfileID)
	}
	changed := map[string]bool{}
	for _, c := range b.Changes {
		changed[c.ProfileID] = true
		names = append(names, c.ProfileID)
	}
	for _, bc := range b.Bulk {
		for _, id := range bc.ProfileIDs {
			changed[id] = true
			names = append(names, id)
		}
	}
	for _, id := range names {
		if _, ok := m.rank[id]; !ok && (changed[id] || last[id] != nil) {
			m.rank[id] = m.next
			m.next++
			if m.forgot[id] {
				m.uncertain[id] = true
			}
		}
	}
	for id, st := range last {
		if st == nil {
			delete(m.states, id)
		} else {
			m.states[id] = st
		}
	}
	for _, c := range b.Changes {
		m.change(c)
	}
	for _, bc := range b.Bulk {
		for _, id := range bc.ProfileIDs {
			m.change(kith.MembershipChange{Audience: bc.Audience, ProfileID: id, Entered: bc.Entered, At: bc.At, Cause: bc.Cause})
		}
	}
	for id := range m.rank {
		if _, ok := m.states[id]; !ok && len(m.memberships(id)) == 0 {
			delete(m.rank, id)
			m.forgot[id] = true
		}
	}
	if b.Cursor > 0 {
		m.cursor = b.Cursor
	}
	if b.StatesCursor > 0 {
		m.statesCur = b.StatesCursor
	}
}

// ordered returns ids sorted by their place in the stable order.
func (m *AudienceModel) ordered(ids []string) []string {
	return slices.SortedFunc(slices.Values(ids), func(a, b string) int { return m.rank[a] - m.rank[b] })
}

// checkOrder fails the test unless got lists the model's profiles in
// their stable order (forgotten and returned profiles aside).
func (m *AudienceModel) checkOrder(t *testing.T, what string, got []string) {
	t.Helper()
	var certain []string
	for _, id := range got {
		if !m.uncertain[id] {
			certain = append(certain, id)
		}
	}
	if want := m.ordered(certain); !slices.Equal(certain, want) {
		t.Errorf("%s: order %s, want the order in which profiles were first stored", what, firstDiff(certain, want))
	}
}

// AudienceSnapshot is what an audience store holds, as a test reads it
// back, for AudienceModel.Check.
type AudienceSnapshot struct {
	States      map[string][]byte        // by profile
	Memberships map[string][]kith.Member // by profile, sorted by audience, with Since
	Members     map[string][]string      // by audience, in the stable order
	Sizes       map[string]int64         // by audience
	Order       []string                 // every stored profile, in the stable order
	History     []kith.MembershipChange  // one change per profile of a bulk change
}

// Check fails the test unless got holds what the model says: the same
// states, memberships, member lists and sizes, the stored profiles in
// their stable order, and the same history with dense, ascending seqs.
func (m *AudienceModel) Check(t *testing.T, got AudienceSnapshot) {
	t.Helper()
	checkStates(t, "states", got.States, m.states)
	want := map[string][]kith.Member{}
	for id := range m.rank {
		if ms := m.memberships(id); len(ms) > 0 {
			want[id] = ms
		}
	}
	checkMemberships(t, "memberships", got.Memberships, want)
	auds := slices.Concat(slices.Collect(maps.Keys(m.members)), slices.Collect(maps.Keys(got.Members)), slices.Collect(maps.Keys(got.Sizes)))
	for _, a := range slices.Compact(slices.Sorted(slices.Values(auds))) {
		wantIDs := slices.Sorted(maps.Keys(m.members[a]))
		if gotIDs := slices.Sorted(slices.Values(got.Members[a])); !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("members of %s: %d, want %d: %s", a, len(gotIDs), len(wantIDs), firstDiff(gotIDs, wantIDs))
		}
		m.checkOrder(t, "members of "+a, got.Members[a])
		if got.Sizes[a] != int64(len(wantIDs)) {
			t.Errorf("size of %s = %d, want %d", a, got.Sizes[a], len(wantIDs))
		}
	}
	if gotIDs, wantIDs := slices.Sorted(slices.Values(got.Order)), slices.Sorted(maps.Keys(m.rank)); !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("stored profiles: %d, want %d: %s", len(gotIDs), len(wantIDs), firstDiff(gotIDs, wantIDs))
	}
	m.checkOrder(t, "stored profiles", got.Order)
	checkHistory(t, "history", got.History, m.history)
}

// checkAudience fails the test unless every read of the audience store
// agrees with the model: sizes and member lists (of the model's audiences
// and of extra ones), states, memberships, the scan, the history and the
// cursors. ids are the profiles to look up besides the model's.
func checkAudience(t *testing.T, s kith.Store, m *AudienceModel, extra []string, ids ...string) {
	t.Helper()
	ctx := t.Context()
	for _, a := range slices.Sorted(slices.Values(append(slices.Collect(maps.Keys(m.members)), extra...))) {
		want := slices.Collect(maps.Keys(m.members[a]))
		got, err := s.Members(ctx, a, "", len(want)+10)
		noErr(t, err, "Members "+a)
		var gotIDs []string
		for _, g := range got {
			gotIDs = append(gotIDs, g.ProfileID)
			if g.Audience != a || !g.Since.IsZero() {
				t.Errorf("Members(%s): %+v, want Audience %s and no Since", a, g, a)
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(gotIDs)), slices.Sorted(slices.Values(want))) {
			t.Errorf("Members(%s) = %d members, want %d: %s", a, len(got), len(want), firstDiff(slices.Sorted(slices.Values(gotIDs)), slices.Sorted(slices.Values(want))))
		}
		m.checkOrder(t, "Members("+a+")", gotIDs)
		n, err := s.AudienceSize(ctx, a)
		noErr(t, err, "AudienceSize "+a)
		if n != int64(len(want)) {
			t.Errorf("AudienceSize(%s) = %d, want %d", a, n, len(want))
		}
	}

	all := slices.Concat(slices.Collect(maps.Keys(m.rank)), slices.Collect(maps.Keys(m.forgot)), ids, []string{"never-stored"})
	checkStates(t, "LoadStates", loadStates(t, s, all...), m.states)
	gotMembers, err := s.LoadMemberships(ctx, all)
	noErr(t, err, "LoadMemberships")
	wantMembers := map[string][]kith.Member{}
	for _, id := range all {
		if ms := m.memberships(id); len(ms) > 0 {
			wantMembers[id] = ms
		}
	}
	checkMemberships(t, "LoadMemberships", gotMembers, wantMembers)
	bothStates, bothMembers, err := s.LoadProfiles(ctx, all)
	noErr(t, err, "LoadProfiles")
	checkStates(t, "LoadProfiles (states)", bothStates, m.states)
	checkMemberships(t, "LoadProfiles (memberships)", bothMembers, wantMembers)

	scanned := scanAudience(t, s)
	var order []string
	gotStates, scannedMembers := map[string][]byte{}, map[string][]kith.Member{}
	for _, p := range scanned {
		order = append(order, p.id)
		if p.state != nil {
			gotStates[p.id] = p.state
		}
		if len(p.members) > 0 {
			scannedMembers[p.id] = p.members
		}
		if p.state == nil && len(p.members) == 0 {
			t.Errorf("ScanStates visited %s, which has neither a state nor a membership", p.id)
		}
	}
	if len(order) != len(m.rank) {
		t.Errorf("ScanStates visited %d profiles, want %d: %s", len(order), len(m.rank), firstDiff(slices.Sorted(slices.Values(order)), slices.Sorted(maps.Keys(m.rank))))
	}
	m.checkOrder(t, "ScanStates", order)
	checkStates(t, "ScanStates", gotStates, m.states)
	checkMemberships(t, "ScanStates", scannedMembers, wantMembers)

	history, err := s.MembershipChanges(ctx, 0, "", "", len(m.history)+10)
	noErr(t, err, "MembershipChanges")
	checkHistory(t, "MembershipChanges", history, m.history)

	cur, scur, err := s.AudienceCursors(ctx)
	noErr(t, err, "AudienceCursors")
	if cur != m.cursor || scur != m.statesCur {
		t.Errorf("AudienceCursors = %d, %d; want %d, %d", cur, scur, m.cursor, m.statesCur)
	}
}

// checkMemberships fails the test unless got holds exactly want (profile
// → memberships sorted by audience, Since in UTC).
func checkMemberships(t *testing.T, what string, got, want map[string][]kith.Member) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: memberships of %d profiles, want %d: %s", what, len(got), len(want), firstDiff(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))))
	}
	for id, w := range want {
		g := got[id]
		if len(g) != len(w) {
			t.Errorf("%s: %s has %+v, want %+v", what, id, g, w)
			continue
		}
		for i := range w {
			if g[i].Audience != w[i].Audience || g[i].ProfileID != id || !sameTime(g[i].Since, w[i].Since) {
				t.Errorf("%s: %s membership %d = %+v, want %+v (Since in UTC)", what, id, i, g[i], w[i])
			}
		}
	}
}

// checkHistory fails the test unless got is want (ignoring Seq) with
// dense, ascending, positive seqs.
func checkHistory(t *testing.T, what string, got, want []kith.MembershipChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s returned %d changes, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if d := changeDiff(got[i], want[i]); d != "" {
			t.Errorf("%s: change %d: %s", what, i, d)
		}
		if got[i].Seq != got[0].Seq+int64(i) || got[i].Seq <= 0 {
			t.Errorf("%s: change %d has Seq %d after %d at 0: want dense positive seqs", what, i, got[i].Seq, got[0].Seq)
		}
	}
}

// scannedProfile is what ScanStates handed over for one profile.
type scannedProfile struct {
	id      string
	state   []byte
	members []kith.Member
}

// scanAudience collects ScanStates in the order it visits.
func scanAudience(t *testing.T, s kith.Store) []scannedProfile {
	t.Helper()
	var out []scannedProfile
	err := s.ScanStates(t.Context(), func(id string, st []byte, members []kith.Member) error {
		out = append(out, scannedProfile{id, slices.Clone(st), slices.Clone(members)})
		return nil
	})
	noErr(t, err, "ScanStates")
	return out
}

func testAudienceBatch(t *testing.T, s kith.Store) {
	audiences := []string{"churn", "vip", "never"}
	model := NewAudienceModel()
	checkAudience(t, s, model, audiences)
	steps := []struct {
		name  string
		batch kith.AudienceBatch
	}{
		{"entries", kith.AudienceBatch{Changes: []kith.MembershipChange{
			enter("vip", "p3", 0), enter("vip", "p1", 1), enter("vip", "p2", 2), enter("churn", "p1", 3),
		}}},
		{"exit, and exit then re-entry in one batch", kith.AudienceBatch{Changes: []kith.MembershipChange{
			exit("vip", "p3", 10), exit("vip", "p2", 11), enter("vip", "p2", 12), enter("churn", "p4", 13),
		}}},
		{"entry then exit in one batch leaves no member", kith.AudienceBatch{Changes: []kith.MembershipChange{
			enter("churn", "p5", 20), exit("churn", "p5", 21), enter("vip", "p4", 22),
		}}},
		{"states beside memberships", kith.AudienceBatch{States: []kith.ProfileState{
			{ProfileID: "p1", State: []byte("one")}, {ProfileID: "p6", State: []byte("six")},
		}, Changes: []kith.MembershipChange{enter("churn", "p6", 23)}}},
		{"bulk entries after changes", kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("churn", "p1", 24)},
			Bulk: []kith.BulkChange{
				bulk("churn", true, 25, "backfill", "p7", "p1", "p8", "p2"),
				bulk("vip", true, 25, "backfill", "p7"), // one profile
				bulk("vip", false, 25, "backfill"),      // none
			}}},
		{"bulk exits, then a bulk re-entry", kith.AudienceBatch{Bulk: []kith.BulkChange{
			bulk("churn", false, 26, "deleted", "p2", "p8", "p4"),
			bulk("churn", true, 27, "backfill", "p8", "p4"),
		}}},
		{"everyone leaves", kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("vip", "p1", 30), exit("vip", "p2", 31), exit("vip", "p4", 32), exit("churn", "p4", 34), exit("churn", "p6", 35)},
			Bulk:    []kith.BulkChange{bulk("churn", false, 36, "expiry", "p7", "p1", "p8"), bulk("vip", false, 36, "expiry", "p7")},
		}},
		{"back again", kith.AudienceBatch{Changes: []kith.MembershipChange{enter("vip", "p1", 40), enter("vip", "p2", 41)}}},
		{"an empty batch changes nothing", kith.AudienceBatch{}},
	}
	for _, step := range steps {
		mustApplyAudience(t, s, step.batch)
		model.Apply(step.batch)
		t.Run(step.name, func(t *testing.T) { checkAudience(t, s, model, audiences) })
	}
}

func testAudienceOrdinals(t *testing.T, s kith.Store) {
	model := NewAudienceModel()
	steps := []struct {
		name  string
		batch kith.AudienceBatch
	}{
		{"states first", kith.AudienceBatch{States: []kith.ProfileState{
			{ProfileID: "m", State: []byte("m")}, {ProfileID: "c", State: []byte("c")}, {ProfileID: "x", State: []byte("x")},
		}}},
		{"new profiles in the order the batch names them", kith.AudienceBatch{
			States:  []kith.ProfileState{{ProfileID: "b", State: []byte("b")}},
			Changes: []kith.MembershipChange{enter("a1", "z", 1), enter("a1", "c", 2), enter("a1", "a", 3)},
			Bulk:    []kith.BulkChange{bulk("a1", true, 4, "backfill", "y", "m", "b")},
		}},
		{"a replaced state keeps the place", kith.AudienceBatch{States: []kith.ProfileState{{ProfileID: "m", State: []byte("m2")}}}},
		{"a deleted state keeps the place of a member", kith.AudienceBatch{States: []kith.ProfileState{{ProfileID: "c"}, {ProfileID: "z"}}}},
		{"leaving and entering again keeps the place", kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("a1", "z", 5)},
			Bulk:    []kith.BulkChange{bulk("a1", true, 6, "backfill", "z"), bulk("a2", true, 6, "backfill", "a", "x", "z", "m")},
		}},
		{"more profiles come after", kith.AudienceBatch{Bulk: []kith.BulkChange{bulk("a2", true, 7, "backfill", "0", "c")}}},
	}
	for _, step := range steps {
		mustApplyAudience(t, s, step.batch)
		model.Apply(step.batch)
		t.Run(step.name, func(t *testing.T) { checkAudience(t, s, model, nil) })
	}
	// The order itself: first stored first.
	var order []string
	for _, p := range scanAudience(t, s) {
		order = append(order, p.id)
	}
	if want := []string{"m", "c", "x", "b", "z", "a", "y", "0"}; !slices.Equal(order, want) {
		t.Errorf("ScanStates visited %v, want %v", order, want)
	}
	got, err := s.Members(t.Context(), "a2", "", 10)
	noErr(t, err, "Members")
	var ids []string
	for _, g := range got {
		ids = append(ids, g.ProfileID)
	}
	if want := []string{"m", "c", "x", "z", "a", "0"}; !slices.Equal(ids, want) {
		t.Errorf("Members(a2) = %v, want %v", ids, want)
	}
}

func testAudienceMembersPaging(t *testing.T, s kith.Store) {
	ctx := t.Context()
	// More profiles than one chunk of a member list holds (4096 in the
	// embedded store), stored in one batch; every third enters "big",
	// applied out of order and with another audience interleaved.
	all := profileIDs("p", 0, 9000)
	var states []kith.ProfileState
	for _, id := range all {
		states = append(states, kith.ProfileState{ProfileID: id, State: []byte(id)})
	}
	var big []string
	for i := 0; i < len(all); i += 3 {
		big = append(big, all[i])
	}
	shuffled := slices.Clone(big)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	mustApplyAudience(t, s, kith.AudienceBatch{States: states, Bulk: []kith.BulkChange{
		bulk("big", true, 0, "backfill", shuffled[:1000]...),
		bulk("other", true, 0, "backfill", all[1:50]...),
		bulk("big", true, 1, "backfill", shuffled[1000:]...),
	}})
	// Then two profiles enter by single changes and the first leaves.
	mustApplyAudience(t, s, kith.AudienceBatch{Changes: []kith.MembershipChange{enter("big", "q2", 2), enter("big", "q1", 3), exit("big", "p00000", 4)}})
	order := append(slices.Clone(all), "q2", "q1") // the order first stored
	members := append(slices.Clone(big[1:]), "q2", "q1")
	isMember := map[string]bool{}
	for _, id := range members {
		isMember[id] = true
	}
	// page is the members after the profile after, at most limit.
	page := func(after string, limit int) []string {
		var out []string
		for _, id := range order[slices.Index(order, after)+1:] {
			if isMember[id] && len(out) < limit {
				out = append(out, id)
			}
		}
		return out
	}
	n := len(members)
	// Hand-checked pages.
	if got := page("p04097", 3); !slices.Equal(got, []string{"p04098", "p04101", "p04104"}) {
		t.Fatalf("the test's model pages wrong: %v", got)
	}
	if got := page("p08997", 5); !slices.Equal(got, []string{"q2", "q1"}) {
		t.Fatalf("the test's model pages wrong: %v", got)
	}

	// Ordinals cross into the next chunk of the embedded store's member
	// lists around p04095 and p08191.
	tests := []struct {
		name  string
		after string
		limit int
	}{
		{"first page", "", 10},
		{"second page", members[9], 10},
		{"into the next chunk", "p04080", 10},
		{"from just before a chunk boundary", "p04092", 3},
		{"from just after a chunk boundary", "p04095", 3},
		{"across chunks", "p03900", 1500},
		{"last page is short", members[n-5], 10},
		{"after the last member", "q1", 10},
		{"after a profile that is not a member", "p04097", 3},
		{"after a profile that left", "p00000", 2},
		{"after a profile of another audience", "p00001", 2},
		{"limit one", members[100], 1},
		{"limit beyond the size", "", n + 100},
		{"the single changes come last", "p08997", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := page(tt.after, tt.limit)
			got, err := s.Members(ctx, "big", tt.after, tt.limit)
			noErr(t, err, "Members")
			var ids []string
			for _, m := range got {
				ids = append(ids, m.ProfileID)
				if m.Audience != "big" || !m.Since.IsZero() {
					t.Errorf("member %+v: want audience big, no Since", m)
				}
			}
			if !slices.Equal(ids, want) {
				t.Errorf("Members(big, %q, %d) = %d members, want %d: %s", tt.after, tt.limit, len(ids), len(want), firstDiff(ids, want))
			}
		})
	}
	// Walking all pages visits every member once, in order.
	var walked []string
	for after := ""; ; {
		got, err := s.Members(ctx, "big", after, 700)
		noErr(t, err, "Members")
		if len(got) == 0 {
			break
		}
		for _, m := range got {
			walked = append(walked, m.ProfileID)
		}
		after = got[len(got)-1].ProfileID
	}
	if !slices.Equal(walked, members) {
		t.Errorf("paging through big visited %d, want %d: %s", len(walked), len(members), firstDiff(walked, members))
	}
	if got, err := s.AudienceSize(ctx, "big"); err != nil || got != int64(n) {
		t.Errorf("AudienceSize(big) = %d, %v; want %d", got, err, n)
	}
	if got, err := s.Members(ctx, "unknown", "", 10); err != nil || len(got) != 0 {
		t.Errorf("Members(unknown) = %+v, %v; want none", got, err)
	}
	_, err := s.Members(ctx, "big", "never-stored", 10)
	wantCode(t, err, kith.EINVALID, "Members after a profile the store does not know")
}

func testAudienceBulk(t *testing.T, s kith.Store) {
	ctx := t.Context()
	model := NewAudienceModel()
	ids := profileIDs("b", 0, 10000)
	var states []kith.ProfileState
	for _, id := range ids[:3000] {
		states = append(states, kith.ProfileState{ProfileID: id, State: []byte("s" + id)})
	}
	// Every profile enters "all"; the even ones "even" (in reverse);
	// some were members of "even" by a change before.
	var even []string
	for i := len(ids) - 1; i >= 0; i -= 2 {
		if i%2 == 0 {
			even = append(even, ids[i])
		} else {
			even = append(even, ids[i-1])
		}
	}
	even = slices.DeleteFunc(even, func(id string) bool { return id == "b00004" })
	steps := []struct {
		name  string
		batch kith.AudienceBatch
	}{
		{"a change before", kith.AudienceBatch{Changes: []kith.MembershipChange{enter("even", "b00004", 0)}}},
		{"10000 enter", kith.AudienceBatch{StatesCursor: 3, States: states, Bulk: []kith.BulkChange{
			bulk("all", true, 1, "backfill", ids...),
			bulk("even", true, 2, "backfill", even...),
		}}},
		{"a third exit, some enter again", kith.AudienceBatch{Cursor: 4, Bulk: []kith.BulkChange{
			bulk("all", false, 3, "backfill", func() []string {
				var out []string
				for i := 0; i < len(ids); i += 3 {
					out = append(out, ids[i])
				}
				return out
			}()...),
			bulk("all", true, 4, "backfill", ids[0], ids[3000], ids[9999]),
			bulk("even", false, 5, "deleted", ids[2], ids[4000]),
		}}},
		{"bulk exits that empty an audience", kith.AudienceBatch{Changes: []kith.MembershipChange{exit("all", ids[1], 6)}, Bulk: []kith.BulkChange{
			bulk("even", false, 7, "backfill", func() []string {
				var out []string
				for _, id := range append(slices.Clone(even), "b00004") {
					if id != ids[2] && id != ids[4000] {
						out = append(out, id)
					}
				}
				return out
			}()...),
		}}},
	}
	for _, step := range steps {
		mustApplyAudience(t, s, step.batch)
		model.Apply(step.batch)
		t.Run(step.name, func(t *testing.T) { checkAudience(t, s, model, []string{"all", "even"}) })
	}
	if n, err := s.AudienceSize(ctx, "even"); err != nil || n != 0 {
		t.Errorf("AudienceSize(even) = %d, %v after everyone left, want 0", n, err)
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
	merge := kith.MembershipChange{Audience: "churn", ProfileID: "p1", At: at(8), Cause: "merge", CauseSeq: 77}
	batches := []kith.AudienceBatch{
		{Changes: []kith.MembershipChange{enter("vip", "p1", 0), enter("churn", "p1", 1)}, Bulk: []kith.BulkChange{
			bulk("vip", true, 2, "backfill", "p2", "p3", "p4", "p5"),
			bulk("churn", true, 3, "backfill", "p3", "p2"),
		}},
		{Changes: []kith.MembershipChange{exit("vip", "p3", 4)}, Bulk: []kith.BulkChange{
			bulk("vip", false, 5, "deleted", "p2", "p4"),
			bulk("churn", true, 6, "backfill", "p6"),
			bulk("churn", true, 6, "backfill"),
		}},
		{Changes: []kith.MembershipChange{enter("vip", "p2", 7), merge}},
	}
	model := NewAudienceModel()
	for _, b := range batches {
		mustApplyAudience(t, s, b)
		model.Apply(b)
	}
	applied := model.history
	// 0 vip p1, 1 churn p1, 2-5 vip bulk p2 p3 p4 p5, 6-7 churn bulk p3 p2,
	// 8 vip p3 exit, 9-10 vip bulk exit p2 p4, 11 churn p6 (bulk of one),
	// 12 vip p2, 13 churn p1 exit.
	all, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	checkHistory(t, "MembershipChanges", all, applied)
	if len(all) != len(applied) {
		t.FailNow()
	}
	seq := func(i int) int64 { return all[0].Seq + int64(i) }
	tests := []struct {
		name              string
		after             int64
		audience, profile string
		limit             int
		want              []int
	}{
		{"all", 0, "", "", 100, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}},
		{"limit ends inside a bulk change", 0, "", "", 3, []int{0, 1, 2}},
		{"after the middle of a bulk change", seq(3), "", "", 100, []int{4, 5, 6, 7, 8, 9, 10, 11, 12, 13}},
		{"after the middle of a bulk change, with limit", seq(3), "", "", 2, []int{4, 5}},
		{"after the end of a bulk change", seq(5), "", "", 3, []int{6, 7, 8}},
		{"after the change before a bulk change", seq(1), "", "", 2, []int{2, 3}},
		{"after the last", seq(13), "", "", 100, nil},
		{"after beyond the end", seq(20), "", "", 100, nil},
		{"one audience", 0, "vip", "", 100, []int{0, 2, 3, 4, 5, 8, 9, 10, 12}},
		{"one audience after the middle of its bulk change", seq(3), "vip", "", 100, []int{4, 5, 8, 9, 10, 12}},
		{"one audience after another's bulk change", seq(6), "churn", "", 100, []int{7, 11, 13}},
		{"one audience with limit", 0, "churn", "", 2, []int{1, 6}},
		{"one profile", 0, "", "p2", 100, []int{2, 7, 9, 12}},
		{"one profile after", seq(7), "", "p2", 100, []int{9, 12}},
		{"one profile with limit", 0, "", "p2", 2, []int{2, 7}},
		{"one profile only in bulk changes", 0, "", "p3", 100, []int{3, 6, 8}},
		{"one profile in a bulk change of one", 0, "", "p6", 100, []int{11}},
		{"one profile after its bulk entry", seq(4), "", "p4", 100, []int{10}},
		{"one profile only in single changes", 0, "", "p1", 100, []int{0, 1, 13}},
		{"audience and profile", 0, "churn", "p2", 100, []int{7}},
		{"audience and profile after", seq(4), "vip", "p4", 100, []int{10}},
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
			for i, w := range tt.want {
				if d := changeDiff(got[i], applied[w]); d != "" {
					t.Errorf("change %d: %s", i, d)
				}
				if got[i].Seq != seq(w) {
					t.Errorf("change %d has Seq %d, want %d", i, got[i].Seq, seq(w))
				}
			}
		})
	}
	// Reading the stream in small steps, continuing after the last seq
	// read, yields the whole history.
	var stream []kith.MembershipChange
	for after := int64(0); ; {
		page, err := s.MembershipChanges(ctx, after, "", "", 3)
		noErr(t, err, "MembershipChanges")
		if len(page) == 0 {
			break
		}
		stream = append(stream, page...)
		after = page[len(page)-1].Seq
	}
	checkHistory(t, "the stream read 3 at a time", stream, applied)
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
		t.Errorf("%s: %d states, want %d: %s", what, len(got), len(want), firstDiff(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s: no state for %s", what, id)
		} else if string(g) != string(w) || g == nil {
			t.Errorf("%s: state of %s = %q, want %q", what, id, g, w)
		}
	}
}

func testAudienceStates(t *testing.T, s kith.Store) {
	ctx := t.Context()
	checkStates(t, "empty store", loadStates(t, s, "p1", "p2"), nil)
	if got := scanAudience(t, s); len(got) != 0 {
		t.Errorf("ScanStates on an empty store visited %v", got)
	}
	model := NewAudienceModel()
	binary := []byte{0, 1, 2, 0xff, 0xfe, 'x', 0}
	first := kith.AudienceBatch{States: []kith.ProfileState{
		{ProfileID: "p3", State: []byte("three")},
		{ProfileID: "p1", State: []byte("one")},
		{ProfileID: "p2", State: binary},
		{ProfileID: "p4", State: []byte("four")},
		{ProfileID: "p6", State: []byte("six")},
	}}
	mustApplyAudience(t, s, first)
	model.Apply(first)
	checkStates(t, "LoadStates", loadStates(t, s, "p1", "p2", "p3", "nope"),
		map[string][]byte{"p1": []byte("one"), "p2": binary, "p3": []byte("three")})
	checkStates(t, "LoadStates of none", loadStates(t, s), nil)
	checkStates(t, "LoadStates with a repeated id", loadStates(t, s, "p1", "p1"), map[string][]byte{"p1": []byte("one")})
	checkAudience(t, s, model, nil)

	second := kith.AudienceBatch{States: []kith.ProfileState{
		{ProfileID: "p1", State: []byte("one again")}, // replaced
		{ProfileID: "p2"}, // nil deletes
		{ProfileID: "p4", State: []byte("four, briefly")},
		{ProfileID: "p4"}, // set then deleted in one batch: gone
		{ProfileID: "p5"},
		{ProfileID: "p5", State: []byte("five")}, // deleted then set: there
		{ProfileID: "p6", State: []byte{}},       // empty is a state, not a deletion
		{ProfileID: "never"},                     // deleting what is absent is no error
	}}
	mustApplyAudience(t, s, second)
	model.Apply(second)
	want := map[string][]byte{"p1": []byte("one again"), "p3": []byte("three"), "p5": []byte("five"), "p6": {}}
	checkStates(t, "after the second batch", loadStates(t, s, "p1", "p2", "p3", "p4", "p5", "p6", "never"), want)
	checkAudience(t, s, model, nil)

	// Many states: LoadStates of more ids than one query takes, and
	// ScanStates in the order first stored (not id order) across more
	// states than one page.
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
	third := kith.AudienceBatch{States: many}
	mustApplyAudience(t, s, third)
	model.Apply(third)
	got := loadStates(t, s, append(slices.Clone(ids), "p1", "missing")...)
	if len(got) != len(ids)+1 || string(got["q1234"]) != "sq1234" || string(got["p1"]) != "one again" || string(got["qA"]) != "sqA" {
		t.Errorf("LoadStates of %d ids returned %d", len(ids)+2, len(got))
	}
	var order []string
	for _, p := range scanAudience(t, s) {
		order = append(order, p.id)
	}
	wantOrder := append([]string{"p3", "p1", "p6", "p5"}, ids...)
	if !slices.Equal(order, wantOrder) {
		t.Errorf("ScanStates visited %d ids, want %d in the order first stored: %s", len(order), len(wantOrder), firstDiff(order, wantOrder))
	}
	checkAudience(t, s, model, nil)

	// An error from fn stops the scan and is returned.
	stop := errors.New("stop")
	visited := 0
	err := s.ScanStates(ctx, func(string, []byte, []kith.Member) error {
		visited++
		if visited == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || visited != 3 {
		t.Errorf("ScanStates with fn failing at the third state: err %v after %d visits, want stop after 3", err, visited)
	}

	// fn may write to the store between pages: a profile stored during
	// the scan comes after the others and is visited.
	visited = 0
	err = s.ScanStates(ctx, func(id string, _ []byte, _ []kith.Member) error {
		visited++
		if visited == 1 {
			return s.ApplyAudienceBatch(ctx, kith.AudienceBatch{States: []kith.ProfileState{{ProfileID: "late", State: []byte("late")}}})
		}
		if id == "late" && visited != len(wantOrder)+1 {
			t.Errorf("the profile stored during the scan was visited at %d, want last (%d)", visited, len(wantOrder)+1)
		}
		return nil
	})
	noErr(t, err, "ScanStates writing meanwhile")
	if visited != len(wantOrder)+1 {
		t.Errorf("ScanStates writing meanwhile visited %d, want %d", visited, len(wantOrder)+1)
	}
}

func testAudienceMemberships(t *testing.T, s kith.Store) {
	ctx := t.Context()
	model := NewAudienceModel()
	berlin := time.FixedZone("CET", 3600)
	batches := []kith.AudienceBatch{
		{States: []kith.ProfileState{{ProfileID: "p1", State: []byte("one")}, {ProfileID: "p3", State: []byte("three")}},
			Changes: []kith.MembershipChange{
				enter("zeta", "p1", 5), enter("alpha", "p1", 1), enter("mid", "p2", 3),
				{Audience: "Alpha", ProfileID: "p1", Entered: true, At: at(2).In(berlin), Cause: "event"}, // returned in UTC
			},
			Bulk: []kith.BulkChange{bulk("mid", true, 7, "backfill", "p1", "p4"), bulk("beta", true, 8, "backfill", "p4", "p2")}},
		// Entering again dates the membership from the new entry.
		{Changes: []kith.MembershipChange{exit("mid", "p1", 10), enter("mid", "p1", 11), exit("beta", "p4", 12)}},
		// Many profiles in many audiences: more ids than one lookup takes.
		{Bulk: func() []kith.BulkChange {
			var out []kith.BulkChange
			for a := range 5 {
				out = append(out, bulk(fmt.Sprintf("a%d", a), true, 20+a, "backfill", profileIDs("m", a*100, 1200)...))
			}
			return out
		}()},
	}
	for _, b := range batches {
		mustApplyAudience(t, s, b)
		model.Apply(b)
	}
	checkAudience(t, s, model, nil)

	got, err := s.LoadMemberships(ctx, []string{"p1", "p2", "p3", "p1", "nope"})
	noErr(t, err, "LoadMemberships")
	want := map[string][]kith.Member{
		"p1": {{Audience: "Alpha", ProfileID: "p1", Since: at(2)}, {Audience: "alpha", ProfileID: "p1", Since: at(1)}, {Audience: "mid", ProfileID: "p1", Since: at(11)}, {Audience: "zeta", ProfileID: "p1", Since: at(5)}},
		"p2": {{Audience: "beta", ProfileID: "p2", Since: at(8)}, {Audience: "mid", ProfileID: "p2", Since: at(3)}},
	}
	checkMemberships(t, "LoadMemberships", got, want)
	if got, err := s.LoadMemberships(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadMemberships(nil) = %v, %v; want none", got, err)
	}
	states, both, err := s.LoadProfiles(ctx, []string{"p1", "p2", "p3", "p1", "nope"})
	noErr(t, err, "LoadProfiles")
	checkMemberships(t, "LoadProfiles", both, want)
	checkStates(t, "LoadProfiles", states, loadStates(t, s, "p1", "p2", "p3", "nope"))
	if string(states["p3"]) != "three" {
		t.Errorf("LoadProfiles states = %q, want p3's among them", states)
	}
	if states, members, err := s.LoadProfiles(ctx, nil); err != nil || len(states) != 0 || len(members) != 0 {
		t.Errorf("LoadProfiles(nil) = %v, %v, %v; want none", states, members, err)
	}
	for _, p := range scanAudience(t, s) {
		switch p.id {
		case "p3":
			if len(p.members) != 0 || string(p.state) != "three" {
				t.Errorf("ScanStates gave p3 %+v, want its state and no memberships", p)
			}
		case "p2":
			if p.state != nil {
				t.Errorf("ScanStates gave p2 the state %q, want nil: it has only memberships", p.state)
			}
		}
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

func testAudienceCursors(t *testing.T, s kith.Store) {
	ctx := t.Context()
	steps := []struct {
		name         string
		cursor, scur int64
		want, wantS  int64
	}{
		{"first batch", 7, 0, 7, 0},
		{"a batch without cursors (a backfill) leaves them", 0, 0, 7, 0},
		{"the states cursor alone", 0, 5, 7, 5},
		{"both move", 12, 9, 12, 9},
		{"the cursor alone", 15, 0, 15, 9},
		{"large log positions", 1 << 40, 1<<40 - 1, 1 << 40, 1<<40 - 1},
	}
	cur, scur, err := s.AudienceCursors(ctx)
	noErr(t, err, "AudienceCursors")
	if cur != 0 || scur != 0 {
		t.Errorf("AudienceCursors on an empty store = %d, %d; want 0, 0", cur, scur)
	}
	for _, st := range steps {
		mustApplyAudience(t, s, kith.AudienceBatch{Cursor: st.cursor, StatesCursor: st.scur, States: []kith.ProfileState{{ProfileID: "p1", State: []byte(st.name)}}})
		cur, scur, err := s.AudienceCursors(ctx)
		noErr(t, err, "AudienceCursors")
		if cur != st.want || scur != st.wantS {
			t.Errorf("%s: AudienceCursors = %d, %d; want %d, %d", st.name, cur, scur, st.want, st.wantS)
		}
	}
}

func testAudienceConflict(t *testing.T, s kith.Store) {
	ctx := t.Context()
	big := profileIDs("q", 0, 5000)
	setup := kith.AudienceBatch{Cursor: 5, StatesCursor: 4,
		States:  []kith.ProfileState{{ProfileID: "p1", State: []byte("before")}},
		Changes: []kith.MembershipChange{enter("vip", "p1", 0), enter("vip", "p2", 1), enter("churn", "p2", 2)},
		Bulk:    []kith.BulkChange{bulk("big", true, 3, "backfill", big...)},
	}
	mustApplyAudience(t, s, setup)
	model := NewAudienceModel()
	model.Apply(setup)
	checkAudience(t, s, model, []string{"nope"})

	tests := []struct {
		name    string
		changes []kith.MembershipChange
		bulk    []kith.BulkChange
	}{
		{"entry for a member", []kith.MembershipChange{enter("vip", "p3", 10), enter("vip", "p1", 11)}, nil},
		// Two conflicts: the store names the first in batch order (p2's),
		// whichever row it happens to read first.
		{"exit for a non-member", []kith.MembershipChange{exit("vip", "p2", 10), exit("churn", "p1", 11)}, nil},
		{"exit for an unknown audience", []kith.MembershipChange{exit("nope", "p1", 10)}, nil},
		{"two entries in one batch", []kith.MembershipChange{enter("vip", "p3", 10), enter("vip", "p3", 11)}, nil},
		{"two exits in one batch", []kith.MembershipChange{exit("vip", "p2", 10), exit("vip", "p2", 11)}, nil},
		{"entry after exit and re-entry", []kith.MembershipChange{exit("vip", "p1", 10), enter("vip", "p1", 11), enter("vip", "p1", 12)}, nil},
		{"bulk entry for a member", nil, []kith.BulkChange{bulk("vip", true, 10, "backfill", "p3", "p5", "p1")}},
		{"bulk entries for two members, the later id first", nil, []kith.BulkChange{bulk("vip", true, 10, "backfill", "p3", "p2", "p1")}},
		{"bulk exit for a non-member", nil, []kith.BulkChange{bulk("big", false, 10, "backfill", big[0], big[4999], "p1")}},
		{"a profile twice in a bulk change", nil, []kith.BulkChange{bulk("vip", true, 10, "backfill", "p3", "p3")}},
		{"bulk entry after a change's entry", []kith.MembershipChange{enter("churn", "p5", 10)}, []kith.BulkChange{bulk("churn", true, 11, "backfill", "p4", "p5")}},
		{"bulk exit after a change's exit", []kith.MembershipChange{exit("vip", "p1", 10)}, []kith.BulkChange{bulk("vip", false, 11, "backfill", "p1")}},
		{"a valid bulk exit of thousands, then a bad bulk change", []kith.MembershipChange{enter("vip", "p3", 10)},
			[]kith.BulkChange{bulk("big", false, 11, "backfill", big...), bulk("vip", true, 12, "backfill", "p4", "p3")}},
		{"ten thousand new profiles enter, then an entry for a member", nil,
			[]kith.BulkChange{bulk("new", true, 10, "backfill", profileIDs("n", 0, 10000)...), bulk("vip", true, 11, "backfill", "p1")}},
		{"entries of new profiles, then an exit of one of them twice", nil,
			[]kith.BulkChange{bulk("new", true, 10, "backfill", "n1", "n2"), bulk("new", false, 11, "backfill", "n2"), bulk("new", false, 12, "backfill", "n2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := kith.AudienceBatch{
				Cursor: 9, StatesCursor: 8,
				States:  []kith.ProfileState{{ProfileID: "p1", State: []byte("after")}, {ProfileID: "p4", State: []byte("new")}, {ProfileID: big[7]}},
				Changes: tt.changes,
				Bulk:    tt.bulk,
			}
			err := s.ApplyAudienceBatch(ctx, batch)
			wantCode(t, err, kith.ECONFLICT, "ApplyAudienceBatch")
			// The error names the change that replaying the batch in
			// order meets first, the same on every store.
			if want := model.Conflict(batch); want == nil || kith.ErrorMessage(err) != kith.ErrorMessage(want) {
				t.Errorf("ApplyAudienceBatch: %v, want the message of %v", err, want)
			}
			// Nothing of the batch was applied: states, cursors,
			// member lists, sizes and history are as before.
			checkAudience(t, s, model, []string{"nope", "new"}, "p3", "p4", "p5", "n1", "n2")
		})
	}

	// The store still takes a valid batch, with the next seqs.
	next := kith.AudienceBatch{Cursor: 9, Changes: []kith.MembershipChange{exit("vip", "p1", 20), enter("vip", "p3", 21)},
		Bulk: []kith.BulkChange{bulk("big", false, 22, "backfill", big[:10]...)}}
	mustApplyAudience(t, s, next)
	model.Apply(next)
	checkAudience(t, s, model, []string{"nope", "new"})
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
	model := NewAudienceModel()
	batch := kith.AudienceBatch{Cursor: 42, StatesCursor: 40,
		States:  []kith.ProfileState{{ProfileID: "p1", State: []byte("s1")}, {ProfileID: "p2", State: []byte("s2")}},
		Changes: []kith.MembershipChange{enter("vip", "p1", 3), enter("vip", "p2", 4), exit("vip", "p1", 5)},
		Bulk:    []kith.BulkChange{bulk("all", true, 6, "backfill", "p2", "p3", "p1")},
	}
	mustApplyAudience(t, s, batch)
	model.Apply(batch)
	history, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	closer.close()

	s = reopen()
	closer = &storeCloser{t: t, s: s}
	t.Cleanup(closer.close)
	checkDefinitions(t, s, []kith.Definition{def})
	checkAudience(t, s, model, nil)
	got, err := s.MembershipChanges(ctx, 0, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if !reflect.DeepEqual(got, history) {
		t.Errorf("history after reopen = %+v, want %+v", got, history)
	}
	// New changes continue the history after the old seqs, and new
	// profiles come after the old ones.
	more := kith.AudienceBatch{Changes: []kith.MembershipChange{enter("vip", "p4", 7)}, Bulk: []kith.BulkChange{bulk("all", false, 8, "backfill", "p3", "p2")}}
	mustApplyAudience(t, s, more)
	model.Apply(more)
	checkAudience(t, s, model, nil)
	after, err := s.MembershipChanges(ctx, history[len(history)-1].Seq, "", "", 100)
	noErr(t, err, "MembershipChanges")
	if len(after) != 3 || after[0].ProfileID != "p4" || after[0].Seq != history[len(history)-1].Seq+1 {
		t.Errorf("changes after reopen = %+v, want p4's entry with the next seq and two exits", after)
	}
}
