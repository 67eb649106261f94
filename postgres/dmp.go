package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kithcdp/kith"
)

// SaveDMPAudiences implements kith.DMPStore.
func (db *DB) SaveDMPAudiences(ctx context.Context, as []kith.DMPAudience) error {
	if len(as) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, a := range as {
		b.Queue(`INSERT INTO dmp_audiences (key, partner, audience, id_type, expires_at, imported_at)
			VALUES ($1,$2,$3,$4,$5,$6)
			ON CONFLICT (key, partner, audience) DO UPDATE SET id_type = excluded.id_type, expires_at = excluded.expires_at, imported_at = excluded.imported_at`,
			a.Key[:], a.Partner, a.Audience, a.IDType, a.ExpiresAt.UTC(), a.ImportedAt.UTC())
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: save dmp audiences: %w", err)
	}
	return nil
}

// DMPAudiences implements kith.DMPStore.
func (db *DB) DMPAudiences(ctx context.Context, keys []kith.IdentKey, now time.Time) ([]kith.DMPAudience, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ks := make([][]byte, len(keys))
	for i := range keys {
		ks[i] = keys[i][:]
	}
	rows, err := db.pool.Query(ctx, `SELECT key, partner, audience, id_type, expires_at, imported_at FROM dmp_audiences
		WHERE expires_at > $1 AND key = ANY($2)
		ORDER BY partner, audience, id_type, key`, now.UTC(), ks)
	if err != nil {
		return nil, fmt.Errorf("postgres: dmp audiences: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.DMPAudience, error) {
		var a kith.DMPAudience
		var key []byte
		err := row.Scan(&key, &a.Partner, &a.Audience, &a.IDType, &a.ExpiresAt, &a.ImportedAt)
		copy(a.Key[:], key)
		a.ExpiresAt, a.ImportedAt = a.ExpiresAt.UTC(), a.ImportedAt.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: dmp audiences: %w", err)
	}
	return out, nil
}

// PruneDMPAudiences implements kith.DMPStore.
func (db *DB) PruneDMPAudiences(ctx context.Context, now time.Time) (int64, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM dmp_audiences WHERE expires_at <= $1`, now.UTC())
	if err != nil {
		return 0, fmt.Errorf("postgres: prune dmp audiences: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ScanIdentifiers implements kith.DMPStore.
func (db *DB) ScanIdentifiers(ctx context.Context, typ string, fn func(kith.IdentKey, string) error) error {
	rows, err := db.pool.Query(ctx, `SELECT key, value FROM identifiers WHERE type = $1`, typ)
	if err != nil {
		return fmt.Errorf("postgres: scan identifiers: %w", err)
	}
	defer rows.Close()
	var key []byte
	var v string
	for rows.Next() {
		if err := rows.Scan(&key, &v); err != nil {
			return fmt.Errorf("postgres: scan identifiers: %w", err)
		}
		var k kith.IdentKey
		copy(k[:], key)
		if err := fn(k, v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: scan identifiers: %w", err)
	}
	return nil
}
