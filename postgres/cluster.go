package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// Cluster implements kith.ProfileStore.
func (db *DB) Cluster(ctx context.Context, canonicalID string) (kith.Cluster, error) {
	var c kith.Cluster
	rows, err := db.pool.Query(ctx, `SELECT id FROM profiles WHERE canonical_id = $1 ORDER BY id`, canonicalID)
	if err != nil {
		return c, fmt.Errorf("postgres: cluster: %w", err)
	}
	if c.Members, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return c, fmt.Errorf("postgres: cluster: %w", err)
	}
	if len(c.Members) == 0 {
		return c, kith.Errorf(kith.ENOTFOUND, "profile %q not found", canonicalID)
	}
	rows, err = db.pool.Query(ctx, `SELECT key FROM identifiers WHERE profile_id = ANY($1)`, c.Members)
	if err != nil {
		return c, fmt.Errorf("postgres: cluster identifiers: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return c, fmt.Errorf("postgres: cluster identifiers: %w", err)
	}
	for _, k := range keys {
		var key kith.IdentKey
		copy(key[:], k)
		c.Keys = append(c.Keys, key)
	}
	rows, err = db.pool.Query(ctx, `SELECT seq FROM timeline WHERE profile_id = ANY($1) ORDER BY seq`, c.Members)
	if err != nil {
		return c, fmt.Errorf("postgres: cluster events: %w", err)
	}
	if c.Seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		return c, fmt.Errorf("postgres: cluster events: %w", err)
	}
	return c, nil
}

// ReplaceCluster implements kith.ProfileStore in one transaction.
func (db *DB) ReplaceCluster(ctx context.Context, members []string, b kith.IndexBatch, s *kith.Split) error {
	var mj []byte
	if s != nil {
		var err error
		if mj, err = json.Marshal(s.Merge); err != nil {
			return fmt.Errorf("postgres: record split: %w", err)
		}
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var batch pgx.Batch
		var steps []string
		queue := func(step, sql string, args ...any) {
			batch.Queue(sql, args...)
			steps = append(steps, step)
		}
		if s != nil {
			queue("split", `INSERT INTO splits (id, survivor, absorbed, merge, by_token, reason, at) VALUES ($1,$2,$3,$4::jsonb,$5,$6,$7)
				ON CONFLICT (id) DO NOTHING`, s.ID, s.Survivor, s.Absorbed, string(mj), s.By, s.Reason, s.At)
		}
		for _, q := range []string{
			`DELETE FROM profiles WHERE id = ANY($1)`,
			`DELETE FROM identifiers WHERE profile_id = ANY($1)`,
			`DELETE FROM merges WHERE survivor = ANY($1) OR absorbed = ANY($1)`,
			`DELETE FROM traits WHERE profile_id = ANY($1)`,
			`DELETE FROM timeline WHERE profile_id = ANY($1)`,
			`DELETE FROM orders WHERE profile_id = ANY($1)`,
			`DELETE FROM consents WHERE profile_id = ANY($1)`,
		} {
			queue("delete", q, members)
		}
		if err := queueRows(queue, b); err != nil {
			return err
		}
		results := tx.SendBatch(ctx, &batch)
		for _, step := range steps {
			if _, err := results.Exec(); err != nil {
				results.Close()
				return fmt.Errorf("postgres: replace cluster: %s: %w", step, err)
			}
		}
		return results.Close()
	})
}

// Splits implements kith.ProfileStore.
func (db *DB) Splits(ctx context.Context) ([]kith.Split, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, survivor, absorbed, merge::text, by_token, reason, at FROM splits ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: splits: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Split, error) {
		var s kith.Split
		var mj string
		if err := row.Scan(&s.ID, &s.Survivor, &s.Absorbed, &mj, &s.By, &s.Reason, &s.At); err != nil {
			return s, err
		}
		s.At = s.At.UTC()
		return s, json.Unmarshal([]byte(mj), &s.Merge)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: splits: %w", err)
	}
	return out, nil
}

// ScanTraits implements kith.ProfileStore: the traits joined to their
// canonical profile and sorted by it, folded to the latest value per key.
func (db *DB) ScanTraits(ctx context.Context, keys []string, fn func(string, map[string]json.RawMessage) error) error {
	rows, err := db.pool.Query(ctx, `
		SELECT p.canonical_id, t.key, t.value::text
		FROM traits t JOIN profiles p ON p.id = t.profile_id
		WHERE t.key = ANY($1)
		ORDER BY p.canonical_id, t.key, t.event_time DESC, t.profile_id`, keys)
	if err != nil {
		return fmt.Errorf("postgres: scan traits: %w", err)
	}
	defer rows.Close()
	var cur string
	vals := map[string]json.RawMessage{}
	for rows.Next() {
		var c, k, v string
		if err := rows.Scan(&c, &k, &v); err != nil {
			return fmt.Errorf("postgres: scan traits: %w", err)
		}
		if c != cur && len(vals) > 0 {
			if err := fn(cur, vals); err != nil {
				return err
			}
			vals = map[string]json.RawMessage{}
		}
		cur = c
		if _, seen := vals[k]; !seen { // the latest comes first
			vals[k] = json.RawMessage(v)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: scan traits: %w", err)
	}
	if len(vals) > 0 {
		return fn(cur, vals)
	}
	return nil
}
