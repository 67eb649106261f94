package storetest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// profiles builds NewProfile values created at successive minutes.
func profiles(ids ...string) []kith.NewProfile {
	out := make([]kith.NewProfile, len(ids))
	for i, id := range ids {
		out[i] = kith.NewProfile{ID: id, CreatedAt: at(i)}
	}
	return out
}

// ident builds an identifier upsert seen once at minute m.
func ident(typ, value, profile, source, messageID string, first, last int) kith.IdentifierUpsert {
	return kith.IdentifierUpsert{
		Key: identKey(typ, value), Type: typ, Value: value,
		ProfileID: profile, SourceID: source, MessageID: messageID,
		FirstSeen: at(first), LastSeen: at(last),
	}
}

// merge builds a merge fact.
func merge(survivor, absorbed string, m int) kith.Merge {
	return kith.Merge{
		Survivor: survivor, Absorbed: absorbed,
		SourceID: "src", MessageID: "merge-" + absorbed,
		IdentType: kith.IdentEmail, Ident: absorbed + "@example.com",
		At: at(m),
	}
}

// trait builds a trait upsert with a JSON value.
func trait(profile, key, value, source, messageID string, m int) kith.TraitUpsert {
	return kith.TraitUpsert{
		ProfileID: profile, Key: key, Value: []byte(value),
		SourceID: source, MessageID: messageID, EventTime: at(m),
	}
}

// entry builds a timeline entry at minute m.
func entry(profile string, m int, seq int64, typ, event string) kith.TimelineEntry {
	return kith.TimelineEntry{ProfileID: profile, Timestamp: at(m), Seq: seq, Type: typ, Event: event}
}

// checkCanonical fails the test unless each profile resolves as given.
func checkCanonical(t *testing.T, s kith.Store, want map[string]string) {
	t.Helper()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		got, err := s.Canonical(t.Context(), id)
		if err != nil {
			t.Errorf("Canonical(%q): %v", id, err)
			continue
		}
		if got != want[id] {
			t.Errorf("Canonical(%q) = %q, want %q", id, got, want[id])
		}
	}
}

// checkIdentities compares identities as sets (the order is unspecified).
func checkIdentities(t *testing.T, got, want []kith.Identity) {
	t.Helper()
	sortIdentities := func(ids []kith.Identity) {
		slices.SortFunc(ids, func(a, b kith.Identity) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
		})
	}
	got, want = slices.Clone(got), slices.Clone(want)
	sortIdentities(got)
	sortIdentities(want)
	if len(got) != len(want) {
		t.Fatalf("got %d identities %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Value != w.Value || g.ProfileID != w.ProfileID || g.SourceID != w.SourceID || g.MessageID != w.MessageID ||
			!sameTime(g.FirstSeen, w.FirstSeen) || !sameTime(g.LastSeen, w.LastSeen) {
			t.Errorf("identity %d = %+v, want %+v (times in UTC)", i, g, w)
		}
	}
}

// identity is the Identity an IdentifierUpsert shows as.
func identity(u kith.IdentifierUpsert) kith.Identity {
	return kith.Identity{
		Type: u.Type, Value: u.Value, ProfileID: u.ProfileID, SourceID: u.SourceID,
		MessageID: u.MessageID, FirstSeen: u.FirstSeen, LastSeen: u.LastSeen,
	}
}

// checkTraits compares traits as a set keyed by Key.
func checkTraits(t *testing.T, got []kith.Trait, want []kith.TraitUpsert) {
	t.Helper()
	got = slices.Clone(got)
	slices.SortFunc(got, func(a, b kith.Trait) int { return cmp.Compare(a.Key, b.Key) })
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b kith.TraitUpsert) int { return cmp.Compare(a.Key, b.Key) })
	if len(got) != len(want) {
		t.Fatalf("got %d traits %s, want %d %v", len(got), traitKeys(got), len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Key != w.Key || !jsonEqual(g.Value, w.Value) || g.ProfileID != w.ProfileID || g.SourceID != w.SourceID ||
			g.MessageID != w.MessageID || !sameTime(g.EventTime, w.EventTime) {
			t.Errorf("trait %q = {%s %s %s %s %v}, want {%s %s %s %s %v} (time in UTC)", g.Key,
				g.Value, g.ProfileID, g.SourceID, g.MessageID, g.EventTime,
				w.Value, w.ProfileID, w.SourceID, w.MessageID, w.EventTime)
		}
	}
}

func traitKeys(ts []kith.Trait) string {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "%s=%s ", t.Key, t.Value)
	}
	return b.String()
}

// checkMerges compares merges as a set (the order is unspecified).
func checkMerges(t *testing.T, got, want []kith.Merge) {
	t.Helper()
	key := func(a, b kith.Merge) int {
		return cmp.Or(cmp.Compare(a.Absorbed, b.Absorbed), cmp.Compare(a.Survivor, b.Survivor))
	}
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, key)
	slices.SortFunc(want, key)
	if len(got) != len(want) {
		t.Fatalf("got %d merges %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		at := g.At
		if !strings.HasPrefix(g.ID, "m_") {
			t.Errorf("merge %d has id %q, want m_…", i, g.ID)
		}
		g.At, w.At = time.Time{}, time.Time{}
		g.ID, w.ID = "", ""
		if g != w || !sameTime(at, want[i].At) {
			t.Errorf("merge %d = %+v at %v, want %+v at %v in UTC", i, g, at, w, want[i].At)
		}
	}
}

// checkTimeline compares timeline pages, in order.
func checkTimeline(t *testing.T, got, want []kith.TimelineEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d %v", len(got), entrySeqs(got), len(want), entrySeqs(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ProfileID != w.ProfileID || g.Seq != w.Seq || g.Type != w.Type || g.Event != w.Event || !sameTime(g.Timestamp, w.Timestamp) {
			t.Errorf("entry %d = %+v, want %+v (time in UTC)", i, g, w)
		}
	}
}

func entrySeqs(es []kith.TimelineEntry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// testIndexCursorConflict checks the check-and-set of the index cursor: a
// batch derived from another cursor fails with ECONFLICT and changes
// nothing.
func testIndexCursorConflict(t *testing.T, s kith.Store) {
	ctx := t.Context()
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "m1", at(0))}})
	b1 := kith.IndexBatch{
		Cursor:      10,
		Profiles:    profiles("p1"),
		Identifiers: []kith.IdentifierUpsert{ident(kith.IdentEmail, "one@example.com", "p1", "s1", "m1", 0, 0)},
		Traits:      []kith.TraitUpsert{trait("p1", "color", `"red"`, "s1", "m1", 0)},
		Timeline:    []kith.TimelineEntry{entry("p1", 0, 1, "track", "Viewed")},
		Processed:   map[string]int64{"s1": 1},
	}
	err := s.ApplyIndexBatch(ctx, 5, b1)
	wantCode(t, err, kith.ECONFLICT, "ApplyIndexBatch from 5 on a fresh store")
	cur, err := s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 0 {
		t.Errorf("IndexCursor after a conflicting batch = %d, want 0", cur)
	}
	_, err = s.Canonical(ctx, "p1")
	wantCode(t, err, kith.ENOTFOUND, "Canonical of a profile from a conflicting batch")

	mustApply(t, s, 0, b1)
	cur, err = s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 10 {
		t.Fatalf("IndexCursor = %d, want 10", cur)
	}

	b2 := kith.IndexBatch{
		Cursor:   20,
		Profiles: profiles("p2"),
		Identifiers: []kith.IdentifierUpsert{
			ident(kith.IdentEmail, "two@example.com", "p2", "s1", "m2", 1, 1),
			ident(kith.IdentEmail, "one@example.com", "p2", "s1", "m2", -5, 9),
		},
		Merges:    []kith.Merge{merge("p1", "p2", 1)},
		Traits:    []kith.TraitUpsert{trait("p1", "color", `"blue"`, "s1", "m2", 1)},
		Timeline:  []kith.TimelineEntry{entry("p2", 1, 2, "track", "Viewed")},
		Processed: map[string]int64{"s1": 1},
	}
	for _, from := range []int64{0, 5, 15, 20} {
		err := s.ApplyIndexBatch(ctx, from, b2)
		wantCode(t, err, kith.ECONFLICT, fmt.Sprintf("ApplyIndexBatch from %d with cursor at 10", from))
	}
	// Nothing of b2 is visible.
	cur, err = s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 10 {
		t.Errorf("IndexCursor after conflicts = %d, want 10", cur)
	}
	_, err = s.Canonical(ctx, "p2")
	wantCode(t, err, kith.ENOTFOUND, "Canonical of a profile from a conflicting batch")
	owners, err := s.LookupIdentifiers(ctx, []kith.IdentKey{identKey(kith.IdentEmail, "two@example.com")})
	noErr(t, err, "LookupIdentifiers")
	if len(owners) != 0 {
		t.Errorf("identifier of a conflicting batch is visible: %+v", owners)
	}
	ids, err := s.Identities(ctx, "p1")
	noErr(t, err, "Identities")
	checkIdentities(t, ids, []kith.Identity{identity(b1.Identifiers[0])})
	traits, err := s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	checkTraits(t, traits, b1.Traits)
	tl, err := s.Timeline(ctx, "p1", kith.TimelineQuery{Limit: 100})
	noErr(t, err, "Timeline")
	checkTimeline(t, tl, b1.Timeline)
	merges, err := s.Merges(ctx, "p1")
	noErr(t, err, "Merges")
	checkMerges(t, merges, nil)
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{"s1": {Received: 1, Accepted: 1, Processed: 1}})

	// The right cursor applies.
	mustApply(t, s, 10, b2)
	cur, err = s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 20 {
		t.Errorf("IndexCursor = %d, want 20", cur)
	}
	checkCanonical(t, s, map[string]string{"p1": "p1", "p2": "p1"})
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{"s1": {Received: 1, Accepted: 1, Processed: 2}})
}

// testIdentifiers checks identifier upserts: the first attachment's
// profile and provenance are kept, FirstSeen/LastSeen widen as min/max, also
// for repeats inside one batch.
func testIdentifiers(t *testing.T, s kith.Store) {
	ctx := t.Context()
	email := ident(kith.IdentEmail, "a@example.com", "pa", "s1", "m1", 5, 5)
	user := ident(kith.IdentUserID, "u-2", "pb", "s1", "m2", 1, 2)
	anon1 := ident(kith.IdentAnonymousID, "anon-3", "pa", "s1", "m3", 5, 5)
	anon2 := ident(kith.IdentAnonymousID, "anon-3", "pb", "s2", "m4", 2, 7)
	phone := ident(kith.IdentPhone, "+4915112345678", "pb", "s2", "m5", 3, 3)
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:      1,
		Profiles:    profiles("pa", "pb"),
		Identifiers: []kith.IdentifierUpsert{email, user, anon1, anon2, phone},
	})
	// A later batch widens the window but keeps the first attachment.
	mustApply(t, s, 1, kith.IndexBatch{
		Cursor:      2,
		Identifiers: []kith.IdentifierUpsert{ident(kith.IdentEmail, "a@example.com", "pb", "s2", "m9", 1, 9)},
	})
	// A window inside the stored one changes nothing.
	mustApply(t, s, 2, kith.IndexBatch{
		Cursor: 3,
		Identifiers: []kith.IdentifierUpsert{
			ident(kith.IdentEmail, "a@example.com", "pb", "s2", "m10", 3, 4),
			ident(kith.IdentPhone, "+4915112345678", "pa", "s1", "m11", 3, 3),
		},
	})

	wantEmail := email
	wantEmail.FirstSeen, wantEmail.LastSeen = at(1), at(9)
	wantAnon := anon1
	wantAnon.FirstSeen, wantAnon.LastSeen = at(2), at(7)

	unknown := identKey(kith.IdentEmail, "nobody@example.com")
	owners, err := s.LookupIdentifiers(ctx, []kith.IdentKey{email.Key, user.Key, anon1.Key, phone.Key, unknown})
	noErr(t, err, "LookupIdentifiers")
	want := map[kith.IdentKey]kith.IdentOwner{
		email.Key: {ProfileID: "pa", Canonical: "pa"},
		user.Key:  {ProfileID: "pb", Canonical: "pb"},
		anon1.Key: {ProfileID: "pa", Canonical: "pa"},
		phone.Key: {ProfileID: "pb", Canonical: "pb"},
	}
	if len(owners) != len(want) {
		t.Errorf("LookupIdentifiers returned %d owners, want %d (unknown keys are left out)", len(owners), len(want))
	}
	for k, w := range want {
		if owners[k] != w {
			t.Errorf("owner of %x = %+v, want %+v", k, owners[k], w)
		}
	}
	owners, err = s.LookupIdentifiers(ctx, nil)
	noErr(t, err, "LookupIdentifiers(nil)")
	if len(owners) != 0 {
		t.Errorf("LookupIdentifiers(nil) = %v", owners)
	}

	ids, err := s.Identities(ctx, "pa")
	noErr(t, err, "Identities")
	checkIdentities(t, ids, []kith.Identity{identity(wantEmail), identity(wantAnon)})
	ids, err = s.Identities(ctx, "pb")
	noErr(t, err, "Identities")
	checkIdentities(t, ids, []kith.Identity{identity(user), identity(phone)})
}

// testMerges checks that merges apply in order and that a profile and
// everything already merged into it resolve to the survivor.
func testMerges(t *testing.T, s kith.Store) {
	ctx := t.Context()
	all := []string{"pa", "pb", "pc", "pd", "pe", "pf", "pg"}
	var idents []kith.IdentifierUpsert
	for _, p := range all {
		idents = append(idents, ident(kith.IdentUserID, "user-"+p, p, "src", "m-"+p, 0, 0))
	}
	first := []kith.Merge{merge("pb", "pd", 1)}
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:      1,
		Profiles:    profiles(all...),
		Identifiers: idents,
		Merges:      first, // in the batch that created the profiles
	})
	checkCanonical(t, s, map[string]string{"pa": "pa", "pb": "pb", "pd": "pb", "pg": "pg"})

	// In order: pb (with pd) into pa, pc into pa, pf into pe, then pe (with
	// pf) into pa.
	second := []kith.Merge{merge("pa", "pb", 2), merge("pa", "pc", 3), merge("pe", "pf", 4), merge("pa", "pe", 5)}
	mustApply(t, s, 1, kith.IndexBatch{Cursor: 2, Merges: second})
	checkCanonical(t, s, map[string]string{
		"pa": "pa", "pb": "pa", "pc": "pa", "pd": "pa", "pe": "pa", "pf": "pa", "pg": "pg",
	})

	var keys []kith.IdentKey
	for _, u := range idents {
		keys = append(keys, u.Key)
	}
	owners, err := s.LookupIdentifiers(ctx, keys)
	noErr(t, err, "LookupIdentifiers")
	for _, u := range idents {
		want := kith.IdentOwner{ProfileID: u.ProfileID, Canonical: "pa"}
		if u.ProfileID == "pg" {
			want.Canonical = "pg"
		}
		if owners[u.Key] != want {
			t.Errorf("owner of %s = %+v, want %+v", u.Value, owners[u.Key], want)
		}
	}

	merges, err := s.Merges(ctx, "pa")
	noErr(t, err, "Merges")
	checkMerges(t, merges, append(slices.Clone(first), second...))
	merges, err = s.Merges(ctx, "pg")
	noErr(t, err, "Merges")
	checkMerges(t, merges, nil)

	ids, err := s.Identities(ctx, "pa")
	noErr(t, err, "Identities")
	var wantIDs []kith.Identity
	for _, u := range idents[:6] {
		wantIDs = append(wantIDs, identity(u))
	}
	checkIdentities(t, ids, wantIDs)

	sum, err := s.Profile(ctx, "pa")
	noErr(t, err, "Profile")
	if !slices.Equal(sum.Members, all[:6]) {
		t.Errorf("Members = %v, want %v (sorted)", sum.Members, all[:6])
	}
	if sum.Identifiers != 6 {
		t.Errorf("Identifiers = %d, want 6", sum.Identifiers)
	}
	sum, err = s.Profile(ctx, "pg")
	noErr(t, err, "Profile")
	if !slices.Equal(sum.Members, []string{"pg"}) {
		t.Errorf("Members of an unmerged profile = %v, want [pg]", sum.Members)
	}
}

// testTraits checks that the latest event time wins regardless of arrival
// order, that equal times let the later upsert win, and that a profile's
// traits are unified over its members.
func testTraits(t *testing.T, s kith.Store) {
	ctx := t.Context()
	red := trait("p1", "color", `"red"`, "s1", "m1", 10)
	sizeL := trait("p1", "size", `"L"`, "s1", "m4", 3)
	gold := trait("p1", "plan", `"gold"`, "s1", "m5", 30)
	silver := trait("p2", "plan", `"silver"`, "s2", "m6", 25)
	age := trait("p2", "age", `30`, "s2", "m6", 1)
	nested := trait("p2", "address", `{"city": "Köln", "lines": ["a", "b"], "zip": null}`, "s2", "m6", 1)
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:   1,
		Profiles: profiles("p1", "p2"),
		Traits: []kith.TraitUpsert{
			red,
			trait("p1", "size", `"S"`, "s1", "m2", 3),
			trait("p1", "size", `"M"`, "s1", "m3", 2),
			sizeL, // same time as S, applied later: wins
			gold, silver, age, nested,
		},
	})
	// Older values arriving later lose.
	mustApply(t, s, 1, kith.IndexBatch{
		Cursor: 2,
		Traits: []kith.TraitUpsert{
			trait("p1", "color", `"blue"`, "s1", "m7", 5),
			trait("p1", "size", `"XL"`, "s1", "m8", 2),
		},
	})
	traits, err := s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	checkTraits(t, traits, []kith.TraitUpsert{red, sizeL, gold})

	// Equal event time: the later applied upsert wins.
	green := trait("p1", "color", `"green"`, "s2", "m9", 10)
	mustApply(t, s, 2, kith.IndexBatch{Cursor: 3, Traits: []kith.TraitUpsert{green}})
	traits, err = s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	checkTraits(t, traits, []kith.TraitUpsert{green, sizeL, gold})
	traits, err = s.Traits(ctx, "p2")
	noErr(t, err, "Traits")
	checkTraits(t, traits, []kith.TraitUpsert{silver, age, nested})

	// After p2 merges into p1, each key takes the latest event time over
	// both members.
	yellow := trait("p2", "color", `"yellow"`, "s2", "m10", 20)
	mustApply(t, s, 3, kith.IndexBatch{
		Cursor: 4,
		Merges: []kith.Merge{merge("p1", "p2", 20)},
		Traits: []kith.TraitUpsert{yellow},
	})
	traits, err = s.Traits(ctx, "p1")
	noErr(t, err, "Traits")
	checkTraits(t, traits, []kith.TraitUpsert{yellow, sizeL, gold, age, nested})

	sum, err := s.Profile(ctx, "p1")
	noErr(t, err, "Profile")
	if sum.Traits != 5 {
		t.Errorf("Profile.Traits = %d, want 5 (the unified traits)", sum.Traits)
	}
}

// timelineFixture is the timeline the query tests run over. pa absorbs pb;
// pc is a bystander whose entries must never show up in pa's timeline.
var timelineFixture = []kith.TimelineEntry{
	entry("pa", 0, 1, "track", "Product Viewed"),
	entry("pa", 10, 5, "page", "Home"),
	entry("pa", 10, 6, "track", "Order Completed"),
	entry("pa", 20, 9, "identify", ""),
	entry("pa", 30, 12, "track", "Product Viewed"),
	entry("pa", 40, 14, "track", "Order Completed"),
	entry("pb", 5, 3, "track", "Product Viewed"),
	entry("pb", 10, 7, "track", "Product Viewed"),
	entry("pb", 10, 4, "screen", "Home"),
	entry("pb", 20, 10, "track", "Order Completed"),
	entry("pb", 45, 15, "page", "Pricing"),
	entry("pc", 10, 8, "track", "Order Completed"),
	entry("pc", 25, 11, "track", "Product Viewed"),
}

// expectTimeline is the reference model of Timeline: filter the members'
// entries, order newest first (Timestamp desc, Seq desc), then apply Limit.
func expectTimeline(entries []kith.TimelineEntry, members []string, q kith.TimelineQuery) []kith.TimelineEntry {
	var out []kith.TimelineEntry
	for _, e := range entries {
		switch {
		case !slices.Contains(members, e.ProfileID),
			!q.Start.IsZero() && e.Timestamp.Before(q.Start),
			!q.End.IsZero() && !e.Timestamp.Before(q.End),
			q.Type != "" && e.Type != q.Type,
			q.Event != "" && e.Event != q.Event,
			q.Before != nil && !(e.Timestamp.Before(q.Before.Timestamp) ||
				e.Timestamp.Equal(q.Before.Timestamp) && e.Seq < q.Before.Seq):
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b kith.TimelineEntry) int {
		return cmp.Or(b.Timestamp.Compare(a.Timestamp), cmp.Compare(b.Seq, a.Seq))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

// testTimeline checks Timeline's filters against the reference model.
func testTimeline(t *testing.T, s kith.Store) {
	var first, later []kith.TimelineEntry
	for _, e := range timelineFixture {
		if e.Seq <= 10 {
			first = append(first, e)
		} else {
			later = append(later, e)
		}
	}
	// pb's older entries were indexed before the merge, its newer ones
	// after; merges never rewrite timeline rows.
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 10, Profiles: profiles("pa", "pb", "pc"), Timeline: first})
	mustApply(t, s, 10, kith.IndexBatch{Cursor: 11, Merges: []kith.Merge{merge("pa", "pb", 21)}})
	mustApply(t, s, 11, kith.IndexBatch{Cursor: 15, Timeline: later})

	merged := []string{"pa", "pb"}
	tests := []struct {
		name    string
		profile string
		members []string
		q       kith.TimelineQuery
	}{
		{"all", "pa", merged, kith.TimelineQuery{Limit: 100}},
		{"bystander", "pc", []string{"pc"}, kith.TimelineQuery{Limit: 100}},
		{"start inclusive", "pa", merged, kith.TimelineQuery{Start: at(10), Limit: 100}},
		{"end exclusive", "pa", merged, kith.TimelineQuery{End: at(20), Limit: 100}},
		{"window", "pa", merged, kith.TimelineQuery{Start: at(10), End: at(30), Limit: 100}},
		{"window in another zone", "pa", merged, kith.TimelineQuery{Start: at(10).In(time.FixedZone("X", -5*3600)), End: at(30).In(time.FixedZone("Y", 7*3600)), Limit: 100}},
		{"empty window", "pa", merged, kith.TimelineQuery{Start: at(11), End: at(19), Limit: 100}},
		{"type", "pa", merged, kith.TimelineQuery{Type: "track", Limit: 100}},
		{"event", "pa", merged, kith.TimelineQuery{Event: "Order Completed", Limit: 100}},
		{"type and event", "pa", merged, kith.TimelineQuery{Type: "page", Event: "Home", Limit: 100}},
		{"limit", "pa", merged, kith.TimelineQuery{Limit: 3}},
		{"limit one", "pa", merged, kith.TimelineQuery{Limit: 1}},
		{"before tie", "pa", merged, kith.TimelineQuery{Before: &kith.TimelineCursor{Timestamp: at(10), Seq: 6}, Limit: 100}},
		{"before with filters", "pa", merged, kith.TimelineQuery{Before: &kith.TimelineCursor{Timestamp: at(20), Seq: 10}, Type: "track", Limit: 2}},
		{"before and start", "pa", merged, kith.TimelineQuery{Before: &kith.TimelineCursor{Timestamp: at(10), Seq: 7}, Start: at(10), Limit: 100}},
		{"before the oldest", "pa", merged, kith.TimelineQuery{Before: &kith.TimelineCursor{Timestamp: at(0), Seq: 1}, Limit: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Timeline(t.Context(), tt.profile, tt.q)
			noErr(t, err, "Timeline")
			checkTimeline(t, got, expectTimeline(timelineFixture, tt.members, tt.q))
		})
	}
}

// testTimelinePaging pages through a timeline full of equal timestamps
// with the Before cursor and checks that no entry is lost or repeated.
func testTimelinePaging(t *testing.T, s kith.Store) {
	var entries []kith.TimelineEntry
	types := []string{"track", "page", "identify"}
	for i := range 40 {
		p := []string{"pa", "pb", "pc"}[i%3]
		// Four distinct timestamps; distinct seqs, not in timestamp order.
		entries = append(entries, entry(p, (i*7)%4*10, int64(1000+(i*37)%41), types[i%len(types)], fmt.Sprintf("E%d", i%2)))
	}
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor:   1,
		Profiles: profiles("pa", "pb", "pc"),
		Merges:   []kith.Merge{merge("pa", "pb", 0)},
		Timeline: entries,
	})
	members := []string{"pa", "pb"}
	queries := []struct {
		name string
		q    kith.TimelineQuery
	}{
		{"all", kith.TimelineQuery{}},
		{"type", kith.TimelineQuery{Type: "track"}},
		{"window", kith.TimelineQuery{Start: at(10), End: at(30)}},
	}
	for _, tq := range queries {
		full := expectTimeline(entries, members, tq.q)
		for _, size := range []int{1, 2, 3, 7} {
			t.Run(fmt.Sprintf("%s/limit=%d", tq.name, size), func(t *testing.T) {
				var got []kith.TimelineEntry
				q := tq.q
				q.Limit = size
				for range len(entries) + 1 {
					page, err := s.Timeline(t.Context(), "pa", q)
					noErr(t, err, "Timeline")
					if len(page) > size {
						t.Fatalf("page of %d entries with Limit %d", len(page), size)
					}
					if len(page) == 0 {
						break
					}
					got = append(got, page...)
					last := page[len(page)-1]
					q.Before = &kith.TimelineCursor{Timestamp: last.Timestamp, Seq: last.Seq}
				}
				checkTimeline(t, got, full)
			})
		}
	}
}

// testProfileSummary checks Profile: members, counts over members, event
// time range, and not-found.
func testProfileSummary(t *testing.T, s kith.Store) {
	ctx := t.Context()
	_, err := s.Profile(ctx, "nobody")
	wantCode(t, err, kith.ENOTFOUND, "Profile of an unknown id")
	_, err = s.Canonical(ctx, "nobody")
	wantCode(t, err, kith.ENOTFOUND, "Canonical of an unknown id")

	// Ids chosen so that creation order is not sorted order.
	mustApply(t, s, 0, kith.IndexBatch{
		Cursor: 5,
		Profiles: []kith.NewProfile{
			{ID: "prof-m", CreatedAt: at(0).In(time.FixedZone("CET", 3600))},
			{ID: "prof-b", CreatedAt: at(1)},
			{ID: "prof-c", CreatedAt: at(2)},
			{ID: "prof-d", CreatedAt: at(3)},
		},
		Identifiers: []kith.IdentifierUpsert{
			ident(kith.IdentEmail, "m@example.com", "prof-m", "s", "1", 0, 0),
			ident(kith.IdentUserID, "m", "prof-m", "s", "1", 0, 0),
			ident(kith.IdentEmail, "b@example.com", "prof-b", "s", "2", 0, 0),
			ident(kith.IdentEmail, "c@example.com", "prof-c", "s", "3", 0, 0),
		},
		Traits: []kith.TraitUpsert{
			trait("prof-m", "x", `1`, "s", "1", 1),
			trait("prof-m", "y", `2`, "s", "1", 1),
			trait("prof-b", "y", `3`, "s", "2", 2),
			trait("prof-b", "z", `4`, "s", "2", 2),
		},
		Timeline: []kith.TimelineEntry{
			entry("prof-m", 5, 2, "track", "A"),
			entry("prof-m", 15, 4, "track", "B"),
			entry("prof-b", 1, 1, "page", "C"),
			entry("prof-b", 20, 5, "track", "D"),
			entry("prof-c", 100, 3, "track", "E"),
		},
		Merges: []kith.Merge{merge("prof-m", "prof-b", 3)},
	})

	tests := []struct {
		id   string
		want kith.ProfileSummary
	}{
		{"prof-m", kith.ProfileSummary{
			ID: "prof-m", CreatedAt: at(0), Members: []string{"prof-b", "prof-m"},
			Identifiers: 3, Traits: 3, Events: 4, FirstEventAt: at(1), LastEventAt: at(20),
		}},
		{"prof-c", kith.ProfileSummary{
			ID: "prof-c", CreatedAt: at(2), Members: []string{"prof-c"},
			Identifiers: 1, Traits: 0, Events: 1, FirstEventAt: at(100), LastEventAt: at(100),
		}},
		{"prof-d", kith.ProfileSummary{
			ID: "prof-d", CreatedAt: at(3), Members: []string{"prof-d"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := s.Profile(t.Context(), tt.id)
			noErr(t, err, "Profile")
			w := tt.want
			if got.ID != w.ID || !slices.Equal(got.Members, w.Members) || got.Identifiers != w.Identifiers ||
				got.Traits != w.Traits || got.Events != w.Events {
				t.Errorf("Profile(%q) = %+v, want %+v", tt.id, got, w)
			}
			checkTime(t, "CreatedAt", got.CreatedAt, w.CreatedAt)
			if w.Events == 0 {
				if !got.FirstEventAt.IsZero() || !got.LastEventAt.IsZero() {
					t.Errorf("profile without events has FirstEventAt %v, LastEventAt %v; want zero", got.FirstEventAt, got.LastEventAt)
				}
				return
			}
			checkTime(t, "FirstEventAt", got.FirstEventAt, w.FirstEventAt)
			checkTime(t, "LastEventAt", got.LastEventAt, w.LastEventAt)
		})
	}
}

// testProcessed checks that ApplyIndexBatch's processed counters add up
// per source next to the ack path's counters.
func testProcessed(t *testing.T, s kith.Store) {
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{
		message("s1", "a", at(0)), message("s1", "b", at(0)), message("s1", "c", at(0)),
		message("s2", "a", at(0)), message("s2", "b", at(0)),
	}})
	mustApply(t, s, 0, kith.IndexBatch{Cursor: 4, Processed: map[string]int64{"s1": 2, "s2": 2}})
	mustApply(t, s, 4, kith.IndexBatch{Cursor: 5, Processed: map[string]int64{"s1": 1, "s3": 4}})
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 3, Accepted: 3, Processed: 3},
		"s2": {Received: 2, Accepted: 2, Processed: 2},
		"s3": {Processed: 4},
	})
}

// testIndexConcurrent runs several indexers from the same cursor at once:
// exactly one batch applies, the others fail with ECONFLICT.
func testIndexConcurrent(t *testing.T, s kith.Store) {
	const indexers = 5
	errs := make([]error, indexers)
	var wg sync.WaitGroup
	for i := range indexers {
		wg.Go(func() {
			p := fmt.Sprintf("p%d", i)
			errs[i] = s.ApplyIndexBatch(t.Context(), 0, kith.IndexBatch{
				Cursor:    int64(10 + i),
				Profiles:  profiles(p),
				Traits:    []kith.TraitUpsert{trait(p, "winner", `true`, "src", "m", 0)},
				Processed: map[string]int64{"src": 1},
			})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch kith.ErrorCode(err) {
		case "":
			if winner >= 0 {
				t.Errorf("indexers %d and %d both applied a batch from cursor 0", winner, i)
			}
			winner = i
		case kith.ECONFLICT:
		default:
			t.Errorf("indexer %d: %v, want nil or ECONFLICT", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no indexer applied its batch")
	}
	cur, err := s.IndexCursor(t.Context())
	noErr(t, err, "IndexCursor")
	if cur != int64(10+winner) {
		t.Errorf("IndexCursor = %d, want %d (the winner's)", cur, 10+winner)
	}
	for i := range indexers {
		_, err := s.Canonical(t.Context(), fmt.Sprintf("p%d", i))
		if i == winner {
			noErr(t, err, "Canonical of the winner's profile")
		} else {
			wantCode(t, err, kith.ENOTFOUND, fmt.Sprintf("Canonical of loser %d's profile", i))
		}
	}
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{"src": {Processed: 1}})
}
