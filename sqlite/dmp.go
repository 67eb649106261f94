package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// SaveDMPAudiences implements kith.DMPStore, in log.db.
func (db *DB) SaveDMPAudiences(ctx context.Context, as []kith.DMPAudience) error {
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save dmp audiences: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO dmp_audiences (key, partner, audience, id_type, expires_at, imported_at)
		VALUES ($1,$2,$3,$4,$5,$6)
		ON CONFLICT (key, partner, audience) DO UPDATE SET id_type = excluded.id_type, expires_at = excluded.expires_at, imported_at = excluded.imported_at`)
	if err != nil {
		return fmt.Errorf("sqlite: save dmp audiences: %w", err)
	}
	defer stmt.Close()
	for _, a := range as {
		if _, err := stmt.ExecContext(ctx, a.Key[:], a.Partner, a.Audience, a.IDType, micros(a.ExpiresAt), micros(a.ImportedAt)); err != nil {
			return fmt.Errorf("sqlite: save dmp audiences: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save dmp audiences: %w", err)
	}
	return nil
}

// DMPAudiences implements kith.DMPStore.
func (db *DB) DMPAudiences(ctx context.Context, keys []kith.IdentKey, now time.Time) ([]kith.DMPAudience, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(keys)+1)
	args = append(args, micros(now))
	ph := make([]string, len(keys))
	for i, k := range keys {
		args = append(args, k[:])
		ph[i] = fmt.Sprintf("$%d", i+2)
	}
	rows, err := db.logR.QueryContext(ctx, `SELECT key, partner, audience, id_type, expires_at, imported_at FROM dmp_audiences
		WHERE expires_at > $1 AND key IN (`+strings.Join(ph, ",")+`)
		ORDER BY partner, audience, id_type, key`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: dmp audiences: %w", err)
	}
	defer rows.Close()
	var out []kith.DMPAudience
	for rows.Next() {
		var a kith.DMPAudience
		var key []byte
		var exp, imp int64
		if err := rows.Scan(&key, &a.Partner, &a.Audience, &a.IDType, &exp, &imp); err != nil {
			return nil, fmt.Errorf("sqlite: dmp audiences: %w", err)
		}
		copy(a.Key[:], key)
		a.ExpiresAt, a.ImportedAt = fromMicros(exp), fromMicros(imp)
		out = append(out, a)
	}
	return out, rows.Err()
}

// PruneDMPAudiences implements kith.DMPStore.
func (db *DB) PruneDMPAudiences(ctx context.Context, now time.Time) (int64, error) {
	res, err := db.logW.ExecContext(ctx, `DELETE FROM dmp_audiences WHERE expires_at <= $1`, micros(now))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune dmp audiences: %w", err)
	}
	return res.RowsAffected()
}

// ScanIdentifiers implements kith.DMPStore over state.db.
func (db *DB) ScanIdentifiers(ctx context.Context, typ string, fn func(kith.IdentKey, string) error) error {
	rows, err := db.stateR.QueryContext(ctx, `SELECT key, value FROM identifiers WHERE type = $1`, typ)
	if err != nil {
		return fmt.Errorf("sqlite: scan identifiers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key []byte
		var v string
		if err := rows.Scan(&key, &v); err != nil {
			return fmt.Errorf("sqlite: scan identifiers: %w", err)
		}
		var k kith.IdentKey
		copy(k[:], key)
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return rows.Err()
}
