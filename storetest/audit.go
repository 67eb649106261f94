package storetest

import (
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func testAuditLog(t *testing.T, s kith.Store) {
	ctx := t.Context()
	es := []kith.AuditEntry{
		{At: at(1), TokenID: "tok_a", TokenName: "ops", Action: "GET /v1/profiles/{ref}", Target: "ref=p_1", Status: 200, Outcome: "ok"},
		{At: at(2), TokenID: "tok_b", TokenName: "crm", Action: "POST /v1/privacy/erasures", Target: "", Status: 202, Outcome: "ok"},
		{At: at(3), TokenID: "tok_a", TokenName: "ops", Action: "DELETE /v1/audiences/{key}", Target: "key=vip", Status: 403, Outcome: "denied"},
	}
	noErr(t, s.AppendAudit(ctx, es[:2]), "AppendAudit")
	noErr(t, s.AppendAudit(ctx, es[2:]), "AppendAudit")
	all, err := s.AuditLog(ctx, kith.AuditQuery{})
	noErr(t, err, "AuditLog")
	if len(all) != 3 {
		t.Fatalf("AuditLog = %+v", all)
	}
	for i, e := range all {
		want := es[i]
		if e.Seq <= 0 || (i > 0 && e.Seq <= all[i-1].Seq) || !e.At.Equal(want.At) || e.TokenID != want.TokenID || e.TokenName != want.TokenName ||
			e.Action != want.Action || e.Target != want.Target || e.Status != want.Status || e.Outcome != want.Outcome {
			t.Fatalf("entry %d = %+v, want %+v with an increasing seq", i, e, want)
		}
	}
	newest, err := s.AuditLog(ctx, kith.AuditQuery{Newest: true, Limit: 1})
	noErr(t, err, "AuditLog newest")
	if len(newest) != 1 || newest[0].Seq != all[2].Seq {
		t.Fatalf("newest entry %+v, want seq %d", newest, all[2].Seq)
	}
	for _, tc := range []struct {
		q    kith.AuditQuery
		want int
	}{
		{kith.AuditQuery{TokenID: "tok_a"}, 2},
		{kith.AuditQuery{Action: "/v1/profiles/"}, 1},
		{kith.AuditQuery{Target: "key=vip"}, 1},
		{kith.AuditQuery{After: all[0].Seq}, 2},
		{kith.AuditQuery{Limit: 1}, 1},
		{kith.AuditQuery{TokenID: "tok_c"}, 0},
		{kith.AuditQuery{Newest: true, Limit: 2}, 2},
	} {
		got, err := s.AuditLog(ctx, tc.q)
		noErr(t, err, "AuditLog")
		if len(got) != tc.want {
			t.Errorf("AuditLog(%+v) = %d entries, want %d", tc.q, len(got), tc.want)
		}
	}
}

// testDailyEvents: accepted events are counted per day of arrival and the
// latest arrival per source is kept, beside the accounting.
func testDailyEvents(t *testing.T, s kith.Store) {
	ctx := t.Context()
	day1, day2 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	m := func(src, id string, at time.Time) kith.Message {
		e := message(src, id, at)
		e.ReceivedAt = at
		return e
	}
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{m("s1", "a", day1), m("s1", "b", day1), m("s2", "c", day2)}})
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{m("s1", "a", day2), m("s1", "d", day2)}}) // a is a duplicate
	got, err := s.DailyEvents(ctx, day1.Add(-48*time.Hour))
	noErr(t, err, "DailyEvents")
	if len(got) != 2 || got["2026-03-01"] != 2 || got["2026-03-02"] != 2 {
		t.Fatalf("DailyEvents = %v, want 2 on each day (duplicates not counted)", got)
	}
	if got, _ := s.DailyEvents(ctx, day2); len(got) != 1 {
		t.Fatalf("DailyEvents since the second day = %v", got)
	}
	counts, err := s.Counts(ctx)
	noErr(t, err, "Counts")
	if !counts["s1"].LastEventAt.Equal(day2) || !counts["s2"].LastEventAt.Equal(day2) {
		t.Fatalf("LastEventAt s1 %v s2 %v, want %v", counts["s1"].LastEventAt, counts["s2"].LastEventAt, day2)
	}
}

// testAudienceNetChanges: entries minus exits per day, bulk entries whole.
func testAudienceNetChanges(t *testing.T, s kith.Store) {
	ctx := t.Context()
	day1, day2 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	noErr(t, s.ApplyAudienceBatch(ctx, kith.AudienceBatch{Changes: []kith.MembershipChange{
		{Audience: "vip", ProfileID: "p1", Entered: true, At: day1, Cause: "event"},
		{Audience: "vip", ProfileID: "p2", Entered: true, At: day1, Cause: "event"},
		{Audience: "other", ProfileID: "p2", Entered: true, At: day1, Cause: "event"},
	}}), "ApplyAudienceBatch")
	noErr(t, s.ApplyAudienceBatch(ctx, kith.AudienceBatch{
		Changes: []kith.MembershipChange{{Audience: "vip", ProfileID: "p1", Entered: false, At: day2, Cause: "expiry"}},
		Bulk:    []kith.BulkChange{{Audience: "vip", Entered: true, ProfileIDs: []string{"p3", "p4", "p5"}, At: day2, Cause: "backfill"}},
	}), "ApplyAudienceBatch")
	got, err := s.AudienceNetChanges(ctx, "vip", day1.Add(-time.Hour))
	noErr(t, err, "AudienceNetChanges")
	if len(got) != 2 || got["2026-03-01"] != 2 || got["2026-03-02"] != 2 {
		t.Fatalf("AudienceNetChanges = %v, want 2 on each day", got)
	}
	if got, _ := s.AudienceNetChanges(ctx, "vip", day2.Add(-time.Hour)); len(got) != 1 {
		t.Fatalf("since the second day: %v", got)
	}
}
