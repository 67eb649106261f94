package kith

import (
	"context"
	"time"
)

// AuditEntry is one admin action in the append-only audit log: who (the
// token), when, what (the route), on what (the target, with identifiers
// replaced by keyed hashes), and how it ended.
type AuditEntry struct {
	Seq       int64     `json:"seq"`
	At        time.Time `json:"at"`
	TokenID   string    `json:"tokenId"`
	TokenName string    `json:"tokenName"`
	// Action is the route, "METHOD /path/{param}".
	Action string `json:"action"`
	// Target names what the action was on: the route's parameters
	// ("ref=p_0000…", "key=loyal_customers").
	Target string `json:"target,omitempty"`
	// Status is the HTTP status; Outcome "ok", "denied" (403) or
	// "failed".
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
}

// AuditOutcome names the outcome of a request that answered status.
func AuditOutcome(status int) string {
	switch {
	case status == 403: // Forbidden
		return "denied"
	case status >= 400:
		return "failed"
	}
	return "ok"
}

// AuditQuery selects audit entries, oldest first.
type AuditQuery struct {
	After   int64
	TokenID string
	// Action and Target match entries containing them.
	Action, Target string
	Limit          int
	// Newest returns the latest entries first (After is then ignored).
	Newest bool
}

// Page says which page of the log q asks for, the same for every store:
// entries after After, at most limit (100 when Limit is not positive);
// when q.Newest, the latest first and After ignored.
func (q AuditQuery) Page() (after int64, limit int, newest bool) {
	limit = q.Limit
	if limit <= 0 {
		limit = 100
	}
	if q.Newest {
		return 0, limit, true
	}
	return q.After, limit, false
}

// AuditStore keeps the audit log. There is no way to change or delete an
// entry.
type AuditStore interface {
	AppendAudit(ctx context.Context, es []AuditEntry) error
	AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}
