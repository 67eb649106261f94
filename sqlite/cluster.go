package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kithcdp/kith"
)

// Cluster returns the members of a unified profile, the identifier keys
// they own and the log positions of their events.
func (db *DB) Cluster(ctx context.Context, canonicalID string) (kith.Cluster, error) {
	var c kith.Cluster
	var err error
	if c.Members, err = db.members(ctx, canonicalID); err != nil {
		return c, err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT key FROM identifiers WHERE profile_id IN (`+memberSet+`)`, canonicalID)
	if err != nil {
		return c, fmt.Errorf("sqlite: cluster identifiers: %w", err)
	}
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return c, fmt.Errorf("sqlite: cluster identifiers: %w", err)
		}
		var key kith.IdentKey
		copy(key[:], k)
		c.Keys = append(c.Keys, key)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("sqlite: cluster identifiers: %w", err)
	}
	rows, err = db.stateR.QueryContext(ctx, `SELECT seq FROM timeline WHERE profile_id IN (`+memberSet+`) ORDER BY seq`, canonicalID)
	if err != nil {
		return c, fmt.Errorf("sqlite: cluster events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return c, fmt.Errorf("sqlite: cluster events: %w", err)
		}
		c.Seqs = append(c.Seqs, seq)
	}
	return c, rows.Err()
}

// ReplaceCluster records the split in log.db first (it must survive
// anything that discards state.db: a rebuild from the log applies it
// again), then replaces the members' derived rows in one state.db
// transaction.
func (db *DB) ReplaceCluster(ctx context.Context, members []string, b kith.IndexBatch, s *kith.Split) error {
	if s != nil {
		mj, err := json.Marshal(s.Merge)
		if err != nil {
			return fmt.Errorf("sqlite: record split: %w", err)
		}
		if _, err := db.logW.ExecContext(ctx, `INSERT INTO splits (id, survivor, absorbed, merge, by, reason, at) VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (id) DO NOTHING`, s.ID, s.Survivor, s.Absorbed, mj, s.By, s.Reason, micros(s.At)); err != nil {
			return fmt.Errorf("sqlite: record split: %w", err)
		}
	}
	ids, err := json.Marshal(members)
	if err != nil {
		return err
	}
	tx, err := db.stateW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: replace cluster: %w", err)
	}
	defer tx.Rollback()
	const in = `(SELECT value FROM json_each($1))`
	gone, err := deleteIdentifiers(ctx, tx, `DELETE FROM identifiers WHERE profile_id IN `+in+` RETURNING id, key`, string(ids))
	if err != nil {
		return fmt.Errorf("sqlite: replace cluster: %w", err)
	}
	for _, q := range []string{
		`DELETE FROM profiles WHERE id IN ` + in,
		`DELETE FROM merges WHERE survivor IN ` + in + ` OR absorbed IN ` + in,
		`DELETE FROM traits WHERE profile_id IN ` + in,
		`DELETE FROM timeline WHERE profile_id IN ` + in,
		`DELETE FROM orders WHERE profile_id IN ` + in,
		`DELETE FROM consents WHERE profile_id IN ` + in,
	} {
		if _, err := tx.ExecContext(ctx, q, string(ids)); err != nil {
			return fmt.Errorf("sqlite: replace cluster: %w", err)
		}
	}
	added, err := db.applyRows(ctx, tx, b)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: replace cluster: %w", err)
	}
	db.idents.forget(gone)
	return db.idents.publish(added)
}

// Splits lists the recorded splits, oldest first.
func (db *DB) Splits(ctx context.Context) ([]kith.Split, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT id, survivor, absorbed, merge, by, reason, at FROM splits ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: splits: %w", err)
	}
	defer rows.Close()
	var out []kith.Split
	for rows.Next() {
		var s kith.Split
		var mj []byte
		var at int64
		if err := rows.Scan(&s.ID, &s.Survivor, &s.Absorbed, &mj, &s.By, &s.Reason, &at); err != nil {
			return nil, fmt.Errorf("sqlite: splits: %w", err)
		}
		if err := json.Unmarshal(mj, &s.Merge); err != nil {
			return nil, fmt.Errorf("sqlite: split %s: %w", s.ID, err)
		}
		s.At = fromMicros(at)
		out = append(out, s)
	}
	return out, rows.Err()
}
