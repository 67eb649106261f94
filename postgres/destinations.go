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

// CreateDestination implements kith.DestinationStore.
func (db *DB) CreateDestination(ctx context.Context, d kith.Destination, start kith.DestinationProgress) error {
	body, err := d.Settings()
	if err != nil {
		return fmt.Errorf("postgres: create destination: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO destinations (id, name, config, body, created_at, log_seq, change_seq) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			d.ID, d.Name, []byte(d.Config), string(body), d.CreatedAt, start.LogSeq, start.ChangeSeq); err != nil {
			return err
		}
		b := &pgx.Batch{}
		queueSync(b, d.ID, start)
		return tx.SendBatch(ctx, b).Close()
	})
	if isUniqueViolation(err) {
		return kith.Errorf(kith.ECONFLICT, "destination %q or its id %q already exists", d.Name, d.ID)
	} else if err != nil {
		return fmt.Errorf("postgres: create destination: %w", refusedData(err))
	}
	return nil
}

// UpdateDestination implements kith.DestinationStore.
func (db *DB) UpdateDestination(ctx context.Context, d kith.Destination) error {
	body, err := d.Settings()
	if err != nil {
		return fmt.Errorf("postgres: update destination: %w", err)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE destinations SET name = $2, config = $3, body = $4 WHERE id = $1`,
		d.ID, d.Name, []byte(d.Config), string(body))
	if isUniqueViolation(err) {
		return kith.Errorf(kith.ECONFLICT, "destination %q already exists", d.Name)
	} else if err != nil {
		return fmt.Errorf("postgres: update destination: %w", refusedData(err))
	}
	if tag.RowsAffected() == 0 {
		return kith.Errorf(kith.ENOTFOUND, "destination %q not found", d.ID)
	}
	return nil
}

const destinationColumns = `id, name, config, body, created_at`

// scanDestination reads a row of destinationColumns.
func scanDestination(row pgx.Row) (kith.Destination, error) {
	var (
		id, name     string
		config, body []byte
		created      time.Time
	)
	if err := row.Scan(&id, &name, &config, &body, &created); err != nil {
		return kith.Destination{}, err
	}
	return kith.DestinationFromSettings(id, name, body, config, created)
}

// Destination implements kith.DestinationStore.
func (db *DB) Destination(ctx context.Context, name string) (kith.Destination, error) {
	d, err := scanDestination(db.pool.QueryRow(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, kith.Errorf(kith.ENOTFOUND, "destination %q not found", name)
	} else if err != nil {
		return d, fmt.Errorf("postgres: destination: %w", refusedData(err))
	}
	return d, nil
}

// Destinations implements kith.DestinationStore.
func (db *DB) Destinations(ctx context.Context) ([]kith.Destination, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: destinations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Destination, error) { return scanDestination(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: destinations: %w", err)
	}
	return out, nil
}

// DeleteDestination implements kith.DestinationStore, in one transaction
// that deletes the destination's row first: an advance waiting for that
// row's lock then finds it gone, so no delivery outlives its destination.
func (db *DB) DeleteDestination(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM destinations WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return kith.Errorf(kith.ENOTFOUND, "destination %q not found", id)
		}
		for _, q := range []string{
			`DELETE FROM destination_filtered WHERE destination_id = $1`,
			`DELETE FROM destination_deliveries WHERE destination_id = $1`,
			`DELETE FROM destination_recipients WHERE destination_id = $1`,
			`DELETE FROM destination_positions WHERE destination_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: delete destination: %w", refusedData(err))
	}
	return nil
}

// progressSQL reads a destination's progress.
const progressSQL = `SELECT d.log_seq, d.change_seq, coalesce(s.trait_seq, 0), coalesce(s.audience, 0), coalesce(s.after, ''),
	coalesce(s.replay_at, 0), coalesce(s.replay_to, 0), coalesce(s.replay_id, 0)
	FROM destinations d LEFT JOIN destination_positions s ON s.destination_id = d.id WHERE d.id = $1`

// progressOf is where a progress row (progressSQL) is scanned into.
func progressOf(p *kith.DestinationProgress) []any {
	return []any{&p.LogSeq, &p.ChangeSeq, &p.TraitSeq, &p.Sync, &p.SyncAfter, &p.ReplayAt, &p.ReplayTo, &p.ReplayID}
}

// DestinationProgress implements kith.DestinationStore.
func (db *DB) DestinationProgress(ctx context.Context, id string) (kith.DestinationProgress, error) {
	var p kith.DestinationProgress
	err := db.pool.QueryRow(ctx, progressSQL, id).Scan(progressOf(&p)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, kith.Errorf(kith.ENOTFOUND, "destination %q not found", id)
	} else if err != nil {
		return p, fmt.Errorf("postgres: destination progress: %w", refusedData(err))
	}
	return p, nil
}

// AdvanceDestination implements kith.DestinationStore: one transaction
// that locks the destination's row, checks the step against the stored
// progress (kith.DestinationUpdate.Check), and sends the rest as one
// pipelined batch: the progress and counters, the Put upserts, the Done
// deletes. A value PostgreSQL refuses fails the step with EINVALID and
// nothing of it is stored.
func (db *DB) AdvanceDestination(ctx context.Context, id string, u kith.DestinationUpdate) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var from kith.DestinationProgress
		err := tx.QueryRow(ctx, progressSQL+` FOR UPDATE OF d`, id).Scan(progressOf(&from)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return kith.Errorf(kith.ENOTFOUND, "destination %q not found", id)
		} else if err != nil {
			return err
		}
		if err := u.Check(from); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE destinations SET log_seq = $2, change_seq = $3, delivered = delivered + $4 WHERE id = $1`,
			id, u.Progress.LogSeq, u.Progress.ChangeSeq, u.Delivered)
		if u.Progress.Extra() != from.Extra() {
			queueSync(b, id, u.Progress)
		}
		for reason, n := range u.Filtered {
			if n != 0 {
				b.Queue(`INSERT INTO destination_filtered (destination_id, reason, value) VALUES ($1,$2,$3)
					ON CONFLICT (destination_id, reason) DO UPDATE SET value = destination_filtered.value + excluded.value`, id, reason, n)
			}
		}
		if len(u.Forget) > 0 {
			b.Queue(`WITH gone AS (DELETE FROM destination_deliveries WHERE destination_id = $1 AND key = ANY($2) RETURNING 1),
				n AS (SELECT count(*) AS n FROM gone)
				INSERT INTO destination_filtered (destination_id, reason, value) SELECT $1::text, $3::text, n FROM n WHERE n > 0
				ON CONFLICT (destination_id, reason) DO UPDATE SET value = destination_filtered.value + excluded.value`,
				id, u.Forget, kith.DeliveriesErased)
			b.Queue(`DELETE FROM destination_recipients WHERE destination_id = $1 AND profile_id = ANY($2)`, id, u.Forget)
		}
		if len(u.Recipients) > 0 {
			b.Queue(`INSERT INTO destination_recipients (profile_id, destination_id) SELECT p, $1 FROM unnest($2::text[]) AS p
				ON CONFLICT DO NOTHING`, id, u.Recipients)
		}
		for _, d := range u.Put {
			b.Queue(`INSERT INTO destination_deliveries
				(destination_id, id, key, seq, kind, body, attempts, first_at, next_at, last_status, last_error, dead)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
				ON CONFLICT (destination_id, id) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at,
				last_status = excluded.last_status, last_error = excluded.last_error, dead = excluded.dead`,
				id, d.ID, d.Key, d.Seq, d.Kind, []byte(d.Body), d.Attempts, d.FirstAt, d.NextAt, d.LastStatus, kith.SafeText(d.LastError), d.Dead)
		}
		if len(u.Done) > 0 {
			b.Queue(`DELETE FROM destination_deliveries WHERE destination_id = $1 AND id = ANY($2)`, id, u.Done)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: advance destination %q: %w", id, refusedData(err))
	}
	return nil
}

const deliveryColumns = `destination_id, id, key, seq, kind, body, attempts, first_at, next_at, last_status, last_error, dead`

// deliveries runs a query of deliveryColumns.
func (db *DB) deliveries(ctx context.Context, query string, args ...any) ([]kith.Delivery, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Delivery, error) {
		var d kith.Delivery
		var body []byte
		err := row.Scan(&d.Destination, &d.ID, &d.Key, &d.Seq, &d.Kind, &body, &d.Attempts, &d.FirstAt, &d.NextAt, &d.LastStatus, &d.LastError, &d.Dead)
		if body != nil {
			d.Body = json.RawMessage(body)
		}
		d.FirstAt, d.NextAt = d.FirstAt.UTC(), d.NextAt.UTC()
		return d, err
	})
}

// Deliveries implements kith.DestinationStore.
func (db *DB) Deliveries(ctx context.Context, id string, dead bool, after string, limit int) ([]kith.Delivery, error) {
	out, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND dead = $2 AND id > $3 ORDER BY id LIMIT $4`, id, dead, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: deliveries: %w", refusedData(err))
	}
	return out, nil
}

// PendingDeliveries implements kith.DestinationStore.
func (db *DB) PendingDeliveries(ctx context.Context, id string) ([]kith.Delivery, error) {
	out, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND NOT dead ORDER BY key, seq, id`, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending deliveries: %w", refusedData(err))
	}
	return out, nil
}

// DestinationCounts implements kith.DestinationStore in one statement, so
// that the counts agree with each other. Retrying and dead-lettered
// deliveries are counted on destination_deliveries_dead.
func (db *DB) DestinationCounts(ctx context.Context) (map[string]kith.DestinationCounts, error) {
	rows, err := db.pool.Query(ctx, `SELECT d.id, d.delivered,
		(SELECT count(*) FROM destination_deliveries x WHERE x.destination_id = d.id AND NOT x.dead),
		(SELECT count(*) FROM destination_deliveries x WHERE x.destination_id = d.id AND x.dead),
		(SELECT json_object_agg(f.reason, f.value) FROM destination_filtered f WHERE f.destination_id = d.id)
		FROM destinations d`)
	if err != nil {
		return nil, fmt.Errorf("postgres: destination counts: %w", err)
	}
	out := map[string]kith.DestinationCounts{}
	var (
		id       string
		c        kith.DestinationCounts
		filtered map[string]int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &c.Delivered, &c.Retrying, &c.DeadLettered, &filtered}, func() error {
		c.Filtered, filtered = filtered, nil
		out[id] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: destination counts: %w", err)
	}
	return out, nil
}

// Delivery implements kith.DestinationStore.
func (db *DB) Delivery(ctx context.Context, id, delivery string) (kith.Delivery, error) {
	ds, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND id = $2`, id, delivery)
	if err != nil {
		return kith.Delivery{}, fmt.Errorf("postgres: delivery: %w", refusedData(err))
	}
	if len(ds) == 0 {
		return kith.Delivery{}, kith.Errorf(kith.ENOTFOUND, "delivery %q of destination %q not found", delivery, id)
	}
	return ds[0], nil
}

// ReceivedBy implements kith.DestinationStore.
func (db *DB) ReceivedBy(ctx context.Context, profiles []string) ([]string, error) {
	// Text PostgreSQL cannot hold (a NUL, invalid UTF-8) is in no row.
	storable := make([]string, 0, len(profiles))
	for _, p := range profiles {
		if kith.TextProblem(p) == "" {
			storable = append(storable, p)
		}
	}
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT destination_id FROM destination_recipients
		WHERE profile_id = ANY($1) ORDER BY destination_id`, storable)
	if err != nil {
		return nil, fmt.Errorf("postgres: destinations that received profiles: %w", refusedData(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: destinations that received profiles: %w", refusedData(err))
	}
	return out, nil
}

// queueSync stores a destination's positions beyond the log and the
// audience changes (kith.DestinationProgress.Extra): a row while one is
// not zero, none after.
func queueSync(b *pgx.Batch, id string, p kith.DestinationProgress) {
	if bf := p.Extra(); bf != (kith.DestinationProgress{}) {
		b.Queue(`INSERT INTO destination_positions (destination_id, trait_seq, audience, after, replay_at, replay_to, replay_id)
			VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (destination_id) DO UPDATE SET trait_seq = excluded.trait_seq, audience = excluded.audience, after = excluded.after,
			replay_at = excluded.replay_at, replay_to = excluded.replay_to, replay_id = excluded.replay_id`,
			id, bf.TraitSeq, bf.Sync, bf.SyncAfter, bf.ReplayAt, bf.ReplayTo, bf.ReplayID)
		return
	}
	b.Queue(`DELETE FROM destination_positions WHERE destination_id = $1`, id)
}
