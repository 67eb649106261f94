package sqlite

import (
	"context"
	"fmt"

	"github.com/kithcdp/kith"
)

// AppendAudit implements kith.AuditStore, in log.db.
func (db *DB) AppendAudit(ctx context.Context, es []kith.AuditEntry) error {
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	defer tx.Rollback()
	for _, e := range es {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, token_id, token_name, action, target, status, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			micros(e.At), e.TokenID, e.TokenName, e.Action, e.Target, e.Status, e.Outcome); err != nil {
			return fmt.Errorf("sqlite: append audit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	return nil
}

// AuditLog implements kith.AuditStore.
func (db *DB) AuditLog(ctx context.Context, q kith.AuditQuery) ([]kith.AuditEntry, error) {
	after, limit, newest := q.Page()
	order := "seq"
	if newest {
		order = "seq DESC"
	}
	rows, err := db.logR.QueryContext(ctx, `SELECT seq, at, token_id, token_name, action, target, status, outcome FROM audit_log
		WHERE seq > $1 AND ($2 = '' OR token_id = $2) AND instr(action, $3) > 0 AND instr(target, $4) > 0
		ORDER BY `+order+` LIMIT $5`, after, q.TokenID, q.Action, q.Target, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit log: %w", err)
	}
	defer rows.Close()
	var out []kith.AuditEntry
	for rows.Next() {
		var e kith.AuditEntry
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.TokenID, &e.TokenName, &e.Action, &e.Target, &e.Status, &e.Outcome); err != nil {
			return nil, fmt.Errorf("sqlite: audit log: %w", err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
