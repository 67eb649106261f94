package kith

import "testing"

func TestAuditOutcome(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{200, "ok"}, {202, "ok"}, {303, "ok"}, {400, "failed"}, {401, "failed"}, {403, "denied"}, {404, "failed"}, {500, "failed"},
	} {
		if got := AuditOutcome(tc.status); got != tc.want {
			t.Errorf("AuditOutcome(%d) = %q, want %q", tc.status, got, tc.want)
		}
	}
}
