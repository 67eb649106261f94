package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kithcdp/kith"
)

// SaveLink records a link in log.db, where decisions live.
func (db *DB) SaveLink(ctx context.Context, l kith.Link) error {
	if _, err := db.logW.ExecContext(ctx, `INSERT INTO links (id, a, b, kind, weight, evidence, by, reason, at_seq, at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING`,
		l.ID, l.A, l.B, l.Kind, l.Weight, []byte(l.Evidence), l.By, l.Reason, l.AtSeq, micros(l.At)); err != nil {
		return fmt.Errorf("sqlite: save link: %w", err)
	}
	return nil
}

// DeleteLink removes a link.
func (db *DB) DeleteLink(ctx context.Context, id string) error {
	if _, err := db.logW.ExecContext(ctx, `DELETE FROM links WHERE id = $1`, id); err != nil {
		return fmt.Errorf("sqlite: delete link: %w", err)
	}
	return nil
}

// Links lists the links in AtSeq order.
func (db *DB) Links(ctx context.Context) ([]kith.Link, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT id, a, b, kind, weight, evidence, by, reason, at_seq, at FROM links ORDER BY at_seq, at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: links: %w", err)
	}
	defer rows.Close()
	var out []kith.Link
	for rows.Next() {
		var l kith.Link
		var ev []byte
		var at int64
		if err := rows.Scan(&l.ID, &l.A, &l.B, &l.Kind, &l.Weight, &ev, &l.By, &l.Reason, &l.AtSeq, &at); err != nil {
			return nil, fmt.Errorf("sqlite: links: %w", err)
		}
		if len(ev) > 0 {
			l.Evidence = ev
		}
		l.At = fromMicros(at)
		out = append(out, l)
	}
	return out, rows.Err()
}

// AddReviewItems queues candidate pairs not seen before.
func (db *DB) AddReviewItems(ctx context.Context, items []kith.ReviewItem) (int, error) {
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: add review items: %w", err)
	}
	defer tx.Rollback()
	added := 0
	for _, it := range items {
		res, err := tx.ExecContext(ctx, `INSERT INTO review_items (id, pair, a, b, probability, weight, evidence, run_id, status, created_at, decided_at, decided_by, reason)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,0,'','') ON CONFLICT DO NOTHING`,
			it.ID, kith.PairKey(it.A, it.B), it.A, it.B, it.Probability, it.Weight, []byte(it.Evidence), it.RunID, kith.ReviewPending, micros(it.CreatedAt))
		if err != nil {
			return 0, fmt.Errorf("sqlite: add review item: %w", err)
		}
		n, _ := res.RowsAffected()
		added += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: add review items: %w", err)
	}
	return added, nil
}

const reviewColumns = `id, a, b, probability, weight, evidence, run_id, status, created_at, decided_at, decided_by, reason`

func scanReview(s interface{ Scan(...any) error }) (kith.ReviewItem, error) {
	var it kith.ReviewItem
	var ev []byte
	var created, decided int64
	if err := s.Scan(&it.ID, &it.A, &it.B, &it.Probability, &it.Weight, &ev, &it.RunID, &it.Status, &created, &decided, &it.DecidedBy, &it.Reason); err != nil {
		return it, err
	}
	if len(ev) > 0 {
		it.Evidence = ev
	}
	it.CreatedAt = fromMicros(created)
	if decided != 0 {
		it.DecidedAt = fromMicros(decided)
	}
	return it, nil
}

// ReviewItems lists queued items, newest first.
func (db *DB) ReviewItems(ctx context.Context, status string, limit int) ([]kith.ReviewItem, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT `+reviewColumns+` FROM review_items
		WHERE $1 = '' OR status = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: review items: %w", err)
	}
	defer rows.Close()
	var out []kith.ReviewItem
	for rows.Next() {
		it, err := scanReview(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: review items: %w", err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// ReviewItem returns one item.
func (db *DB) ReviewItem(ctx context.Context, id string) (kith.ReviewItem, error) {
	it, err := scanReview(db.logR.QueryRowContext(ctx, `SELECT `+reviewColumns+` FROM review_items WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return it, kith.Errorf(kith.ENOTFOUND, "review item %q not found", id)
	} else if err != nil {
		return it, fmt.Errorf("sqlite: review item: %w", err)
	}
	return it, nil
}

// DecideReview settles a pending item.
func (db *DB) DecideReview(ctx context.Context, id, status, by, reason string, at time.Time) error {
	res, err := db.logW.ExecContext(ctx, `UPDATE review_items SET status = $2, decided_by = $3, reason = $4, decided_at = $5
		WHERE id = $1 AND status = 'pending'`, id, status, by, reason, micros(at))
	if err != nil {
		return fmt.Errorf("sqlite: decide review item: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := db.ReviewItem(ctx, id); err != nil {
			return err
		}
		return kith.Errorf(kith.ECONFLICT, "review item %s is already decided", id)
	}
	return nil
}

// SaveDetachment records a detachment in log.db.
func (db *DB) SaveDetachment(ctx context.Context, d kith.Detachment) error {
	if _, err := db.logW.ExecContext(ctx, `INSERT INTO detachments (id, key, type, profile, by, reason, at) VALUES ($1,$2,$3,$4,$5,$6,$7)
		ON CONFLICT (id) DO NOTHING`, d.ID, d.Key[:], d.Type, d.Profile, d.By, d.Reason, micros(d.At)); err != nil {
		return fmt.Errorf("sqlite: save detachment: %w", err)
	}
	return nil
}

// Detachments lists the detachments, oldest first.
func (db *DB) Detachments(ctx context.Context) ([]kith.Detachment, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT id, key, type, profile, by, reason, at FROM detachments ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: detachments: %w", err)
	}
	defer rows.Close()
	var out []kith.Detachment
	for rows.Next() {
		var d kith.Detachment
		var k []byte
		var at int64
		if err := rows.Scan(&d.ID, &k, &d.Type, &d.Profile, &d.By, &d.Reason, &at); err != nil {
			return nil, fmt.Errorf("sqlite: detachments: %w", err)
		}
		copy(d.Key[:], k)
		d.At = fromMicros(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

// IdentityRules returns the stored identity rules, nil if none.
func (db *DB) IdentityRules(ctx context.Context) ([]byte, error) {
	var b []byte
	err := db.logR.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'identity_rules'`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: identity rules: %w", err)
	}
	return b, nil
}

// SetIdentityRules stores the identity rules.
func (db *DB) SetIdentityRules(ctx context.Context, rules []byte) error {
	if _, err := db.logW.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('identity_rules', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, rules); err != nil {
		return fmt.Errorf("sqlite: set identity rules: %w", err)
	}
	return nil
}
