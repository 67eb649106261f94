package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/kithcdp/kith"
)

// AppendAudit implements kith.AuditStore.
func (db *DB) AppendAudit(ctx context.Context, es []kith.AuditEntry) error {
	if len(es) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range es {
		b.Queue(`INSERT INTO audit_log (at, token_id, token_name, action, target, status, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			e.At.UTC(), e.TokenID, e.TokenName, e.Action, e.Target, e.Status, e.Outcome)
	}
	if err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return fmt.Errorf("postgres: append audit: %w", refusedData(err))
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
	rows, err := db.pool.Query(ctx, `SELECT seq, at, token_id, token_name, action, target, status, outcome FROM audit_log
		WHERE seq > $1 AND ($2 = '' OR token_id = $2) AND strpos(action, $3) > 0 AND strpos(target, $4) > 0
		ORDER BY `+order+` LIMIT $5`, after, q.TokenID, q.Action, q.Target, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.AuditEntry, error) {
		var e kith.AuditEntry
		err := row.Scan(&e.Seq, &e.At, &e.TokenID, &e.TokenName, &e.Action, &e.Target, &e.Status, &e.Outcome)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: audit log: %w", err)
	}
	return out, nil
}
