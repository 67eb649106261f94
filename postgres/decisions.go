package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// jsonOrNil passes evidence as jsonb text, or NULL.
func jsonOrNil(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// SaveLink implements kith.DecisionStore.
func (db *DB) SaveLink(ctx context.Context, l kith.Link) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO links (id, a, b, kind, weight, evidence, by_token, reason, at_seq, at)
		VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING`,
		l.ID, l.A, l.B, l.Kind, l.Weight, jsonOrNil(l.Evidence), l.By, l.Reason, l.AtSeq, l.At); err != nil {
		return fmt.Errorf("postgres: save link: %w", err)
	}
	return nil
}

// DeleteLink implements kith.DecisionStore.
func (db *DB) DeleteLink(ctx context.Context, id string) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM links WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete link: %w", err)
	}
	return nil
}

// Links implements kith.DecisionStore.
func (db *DB) Links(ctx context.Context) ([]kith.Link, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, a, b, kind, weight, evidence::text, by_token, reason, at_seq, at FROM links ORDER BY at_seq, at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: links: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Link, error) {
		var l kith.Link
		var ev *string
		err := row.Scan(&l.ID, &l.A, &l.B, &l.Kind, &l.Weight, &ev, &l.By, &l.Reason, &l.AtSeq, &l.At)
		if ev != nil {
			l.Evidence = json.RawMessage(*ev)
		}
		l.At = l.At.UTC()
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: links: %w", err)
	}
	return out, nil
}

// AddReviewItems implements kith.DecisionStore.
func (db *DB) AddReviewItems(ctx context.Context, items []kith.ReviewItem) (int, error) {
	added := 0
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for _, it := range items {
			tag, err := tx.Exec(ctx, `INSERT INTO review_items (id, pair, a, b, probability, weight, evidence, run_id, status, created_at)
				VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9,$10) ON CONFLICT DO NOTHING`,
				it.ID, kith.PairKey(it.A, it.B), it.A, it.B, it.Probability, it.Weight, jsonOrNil(it.Evidence), it.RunID, kith.ReviewPending, it.CreatedAt)
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: add review items: %w", err)
	}
	return added, nil
}

const reviewColumns = `id, a, b, probability, weight, evidence::text, run_id, status, created_at, decided_at, decided_by, reason`

func scanReview(row pgx.Row) (kith.ReviewItem, error) {
	var it kith.ReviewItem
	var ev *string
	var decided *time.Time
	if err := row.Scan(&it.ID, &it.A, &it.B, &it.Probability, &it.Weight, &ev, &it.RunID, &it.Status, &it.CreatedAt, &decided, &it.DecidedBy, &it.Reason); err != nil {
		return it, err
	}
	if ev != nil {
		it.Evidence = json.RawMessage(*ev)
	}
	it.CreatedAt = it.CreatedAt.UTC()
	if decided != nil {
		it.DecidedAt = decided.UTC()
	}
	return it, nil
}

// ReviewItems implements kith.DecisionStore.
func (db *DB) ReviewItems(ctx context.Context, status string, limit int) ([]kith.ReviewItem, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+reviewColumns+` FROM review_items
		WHERE $1 = '' OR status = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: review items: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.ReviewItem, error) { return scanReview(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: review items: %w", err)
	}
	return out, nil
}

// ReviewItem implements kith.DecisionStore.
func (db *DB) ReviewItem(ctx context.Context, id string) (kith.ReviewItem, error) {
	it, err := scanReview(db.pool.QueryRow(ctx, `SELECT `+reviewColumns+` FROM review_items WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return it, kith.Errorf(kith.ENOTFOUND, "review item %q not found", id)
	} else if err != nil {
		return it, fmt.Errorf("postgres: review item: %w", err)
	}
	return it, nil
}

// DecideReview implements kith.DecisionStore.
func (db *DB) DecideReview(ctx context.Context, id, status, by, reason string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE review_items SET status = $2, decided_by = $3, reason = $4, decided_at = $5
		WHERE id = $1 AND status = 'pending'`, id, status, by, reason, at)
	if err != nil {
		return fmt.Errorf("postgres: decide review item: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := db.ReviewItem(ctx, id); err != nil {
			return err
		}
		return kith.Errorf(kith.ECONFLICT, "review item %s is already decided", id)
	}
	return nil
}

// SaveDetachment implements kith.DecisionStore.
func (db *DB) SaveDetachment(ctx context.Context, d kith.Detachment) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO detachments (id, key, type, profile, by_token, reason, at) VALUES ($1,$2,$3,$4,$5,$6,$7)
		ON CONFLICT (id) DO NOTHING`, d.ID, d.Key[:], d.Type, d.Profile, d.By, d.Reason, d.At); err != nil {
		return fmt.Errorf("postgres: save detachment: %w", err)
	}
	return nil
}

// Detachments implements kith.DecisionStore.
func (db *DB) Detachments(ctx context.Context) ([]kith.Detachment, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, key, type, profile, by_token, reason, at FROM detachments ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: detachments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Detachment, error) {
		var d kith.Detachment
		var k []byte
		err := row.Scan(&d.ID, &k, &d.Type, &d.Profile, &d.By, &d.Reason, &d.At)
		copy(d.Key[:], k)
		d.At = d.At.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: detachments: %w", err)
	}
	return out, nil
}

// IdentityRules implements kith.DecisionStore.
func (db *DB) IdentityRules(ctx context.Context) ([]byte, error) {
	var b []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE name = 'identity_rules'`).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("postgres: identity rules: %w", err)
	}
	return b, nil
}

// SetIdentityRules implements kith.DecisionStore.
func (db *DB) SetIdentityRules(ctx context.Context, rules []byte) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO settings (name, value) VALUES ('identity_rules', $1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, rules); err != nil {
		return fmt.Errorf("postgres: set identity rules: %w", err)
	}
	return nil
}
