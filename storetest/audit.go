package storetest

import (
	"testing"

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
	} {
		got, err := s.AuditLog(ctx, tc.q)
		noErr(t, err, "AuditLog")
		if len(got) != tc.want {
			t.Errorf("AuditLog(%+v) = %d entries, want %d", tc.q, len(got), tc.want)
		}
	}
}
