package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kithcdp/kith"
)

// Destinations live in log.db with the other data that cannot be derived
// from the log (see logMigrations), written through its one writer with
// synchronous=FULL.

// isUnique reports whether err is a violation of a UNIQUE or PRIMARY KEY
// constraint.
func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE")
}

// CreateDestination implements kith.DestinationStore.
func (db *DB) CreateDestination(ctx context.Context, d kith.Destination, start kith.DestinationProgress) error {
	body, err := d.Settings()
	if err != nil {
		return fmt.Errorf("sqlite: create destination: %w", err)
	}
	err = db.inLogTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO destinations (id, name, config, body, created_at, log_seq, change_seq) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
			d.ID, d.Name, []byte(d.Config), body, micros(d.CreatedAt), start.LogSeq, start.ChangeSeq); err != nil {
			return err
		}
		return setSync(ctx, tx, d.ID, start)
	})
	if isUnique(err) {
		return kith.Errorf(kith.ECONFLICT, "destination %q or its id %q already exists", d.Name, d.ID)
	} else if err != nil {
		return fmt.Errorf("sqlite: create destination: %w", diskFull(err))
	}
	return nil
}

// UpdateDestination implements kith.DestinationStore.
func (db *DB) UpdateDestination(ctx context.Context, d kith.Destination) error {
	body, err := d.Settings()
	if err != nil {
		return fmt.Errorf("sqlite: update destination: %w", err)
	}
	res, err := db.logW.ExecContext(ctx, `UPDATE destinations SET name = $2, config = $3, body = $4 WHERE id = $1`,
		d.ID, d.Name, []byte(d.Config), body)
	if isUnique(err) {
		return kith.Errorf(kith.ECONFLICT, "destination %q already exists", d.Name)
	} else if err != nil {
		return fmt.Errorf("sqlite: update destination: %w", diskFull(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return kith.Errorf(kith.ENOTFOUND, "destination %q not found", d.ID)
	}
	return nil
}

const destinationColumns = `id, name, config, body, created_at`

// scanDestination reads a row of destinationColumns.
func scanDestination(row interface{ Scan(...any) error }) (kith.Destination, error) {
	var (
		id, name     string
		config, body []byte
		created      int64
	)
	if err := row.Scan(&id, &name, &config, &body, &created); err != nil {
		return kith.Destination{}, err
	}
	return kith.DestinationFromSettings(id, name, body, config, fromMicros(created))
}

// Destination implements kith.DestinationStore.
func (db *DB) Destination(ctx context.Context, name string) (kith.Destination, error) {
	d, err := scanDestination(db.logR.QueryRowContext(ctx, `SELECT `+destinationColumns+` FROM destinations WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return d, kith.Errorf(kith.ENOTFOUND, "destination %q not found", name)
	} else if err != nil {
		return d, fmt.Errorf("sqlite: destination: %w", err)
	}
	return d, nil
}

// Destinations implements kith.DestinationStore.
func (db *DB) Destinations(ctx context.Context) ([]kith.Destination, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT `+destinationColumns+` FROM destinations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: destinations: %w", err)
	}
	defer rows.Close()
	var out []kith.Destination
	for rows.Next() {
		d, err := scanDestination(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: destinations: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: destinations: %w", err)
	}
	return out, nil
}

// DeleteDestination implements kith.DestinationStore, in one transaction.
func (db *DB) DeleteDestination(ctx context.Context, id string) error {
	err := db.inLogTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM destinations WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return kith.Errorf(kith.ENOTFOUND, "destination %q not found", id)
		}
		for _, q := range []string{
			`DELETE FROM destination_filtered WHERE destination_id = $1`,
			`DELETE FROM destination_deliveries WHERE destination_id = $1`,
			`DELETE FROM destination_recipients WHERE destination_id = $1`,
			`DELETE FROM destination_positions WHERE destination_id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete destination: %w", err)
	}
	return nil
}

// inLogTx runs f in a transaction on the log.db writer and commits it
// unless f fails. A full disk becomes EUNAVAILABLE (see diskFull).
func (db *DB) inLogTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return diskFull(err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return diskFull(err)
	}
	return diskFull(tx.Commit())
}

// DestinationProgress implements kith.DestinationStore.
func (db *DB) DestinationProgress(ctx context.Context, id string) (kith.DestinationProgress, error) {
	p, err := destinationProgress(ctx, db.logR, id)
	if err != nil {
		return p, fmt.Errorf("sqlite: destination progress: %w", err)
	}
	return p, nil
}

// destinationProgress reads a destination's progress; ENOTFOUND if it is
// absent.
func destinationProgress(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (kith.DestinationProgress, error) {
	var p kith.DestinationProgress
	err := q.QueryRowContext(ctx, `SELECT d.log_seq, d.change_seq, coalesce(s.trait_seq, 0), coalesce(s.audience, 0), coalesce(s.after, ''),
		coalesce(s.replay_at, 0), coalesce(s.replay_to, 0), coalesce(s.replay_id, 0)
		FROM destinations d LEFT JOIN destination_positions s ON s.destination_id = d.id WHERE d.id = $1`, id).Scan(
		&p.LogSeq, &p.ChangeSeq, &p.TraitSeq, &p.Sync, &p.SyncAfter, &p.ReplayAt, &p.ReplayTo, &p.ReplayID)
	if errors.Is(err, sql.ErrNoRows) {
		return p, kith.Errorf(kith.ENOTFOUND, "destination %q not found", id)
	}
	return p, err
}

// AdvanceDestination implements kith.DestinationStore: one transaction on
// log.db that checks the step against the stored progress
// (kith.DestinationUpdate.Check), then moves the progress, adds the
// counters, upserts the Put deliveries and deletes the Done ones.
func (db *DB) AdvanceDestination(ctx context.Context, id string, u kith.DestinationUpdate) error {
	err := db.inLogTx(ctx, func(tx *sql.Tx) error {
		from, err := destinationProgress(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := u.Check(from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE destinations SET log_seq = $2, change_seq = $3,
			delivered = CASE WHEN delivered > 9223372036854775807 - $4 THEN 9223372036854775807 ELSE delivered + $4 END
			WHERE id = $1`, id, u.Progress.LogSeq, u.Progress.ChangeSeq, u.Delivered); err != nil {
			return fmt.Errorf("progress: %w", err)
		}
		if u.Progress.Extra() != from.Extra() {
			if err := setSync(ctx, tx, id, u.Progress); err != nil {
				return err
			}
		}
		for reason, n := range u.Filtered {
			if n == 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO destination_filtered (destination_id, reason, value) VALUES ($1,$2,$3)
				ON CONFLICT (destination_id, reason) DO UPDATE SET value = `+saturatingSum, id, reason, n); err != nil {
				return fmt.Errorf("filtered counter: %w", err)
			}
		}
		if err := forgetRecipients(ctx, tx, id, u.Forget); err != nil {
			return err
		}
		if len(u.Recipients) > 0 {
			rec, err := tx.PrepareContext(ctx, `INSERT INTO destination_recipients (profile_id, destination_id) VALUES ($1,$2)
				ON CONFLICT DO NOTHING`)
			if err != nil {
				return fmt.Errorf("recipients: %w", err)
			}
			defer rec.Close()
			for _, p := range u.Recipients {
				if _, err := rec.ExecContext(ctx, p, id); err != nil {
					return fmt.Errorf("recipient %q: %w", p, err)
				}
			}
		}
		if len(u.Put) > 0 {
			put, err := tx.PrepareContext(ctx, `INSERT INTO destination_deliveries
				(destination_id, id, key, seq, kind, body, attempts, first_at, next_at, last_status, last_error, dead)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
				ON CONFLICT (destination_id, id) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at,
				last_status = excluded.last_status, last_error = excluded.last_error, dead = excluded.dead`)
			if err != nil {
				return fmt.Errorf("put deliveries: %w", err)
			}
			defer put.Close()
			for _, d := range u.Put {
				if _, err := put.ExecContext(ctx, id, d.ID, d.Key, d.Seq, d.Kind, []byte(d.Body), d.Attempts,
					micros(d.FirstAt), micros(d.NextAt), d.LastStatus, kith.SafeText(d.LastError), d.Dead); err != nil {
					return fmt.Errorf("put delivery %q: %w", d.ID, err)
				}
			}
		}
		for _, did := range u.Done {
			if _, err := tx.ExecContext(ctx, `DELETE FROM destination_deliveries WHERE destination_id = $1 AND id = $2`, id, did); err != nil {
				return fmt.Errorf("done delivery %q: %w", did, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: advance destination %q: %w", id, err)
	}
	return nil
}

const deliveryColumns = `destination_id, id, key, seq, kind, body, attempts, first_at, next_at, last_status, last_error, dead`

// deliveries runs a query of deliveryColumns on log.db's readers.
func (db *DB) deliveries(ctx context.Context, query string, args ...any) ([]kith.Delivery, error) {
	rows, err := db.logR.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kith.Delivery
	for rows.Next() {
		var (
			d             kith.Delivery
			body          []byte
			first, nextAt int64
		)
		if err := rows.Scan(&d.Destination, &d.ID, &d.Key, &d.Seq, &d.Kind, &body, &d.Attempts, &first, &nextAt, &d.LastStatus, &d.LastError, &d.Dead); err != nil {
			return nil, err
		}
		if body != nil {
			d.Body = json.RawMessage(body)
		}
		d.FirstAt, d.NextAt = fromMicros(first), fromMicros(nextAt)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Deliveries implements kith.DestinationStore.
func (db *DB) Deliveries(ctx context.Context, id string, dead bool, after string, limit int) ([]kith.Delivery, error) {
	out, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND dead = $2 AND id > $3 ORDER BY id LIMIT $4`, id, dead, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: deliveries: %w", err)
	}
	return out, nil
}

// PendingDeliveries implements kith.DestinationStore.
func (db *DB) PendingDeliveries(ctx context.Context, id string) ([]kith.Delivery, error) {
	out, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND dead = 0 ORDER BY key, seq, id`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending deliveries: %w", err)
	}
	return out, nil
}

// DestinationCounts implements kith.DestinationStore in one statement, so
// that the counts agree with each other. Retrying and dead-lettered
// deliveries are counted on destination_deliveries_dead.
func (db *DB) DestinationCounts(ctx context.Context) (map[string]kith.DestinationCounts, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT d.id, d.delivered,
		(SELECT count(*) FROM destination_deliveries x WHERE x.destination_id = d.id AND x.dead = 0),
		(SELECT count(*) FROM destination_deliveries x WHERE x.destination_id = d.id AND x.dead = 1),
		(SELECT json_group_object(f.reason, f.value) FROM destination_filtered f WHERE f.destination_id = d.id)
		FROM destinations d`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: destination counts: %w", err)
	}
	defer rows.Close()
	out := map[string]kith.DestinationCounts{}
	for rows.Next() {
		var (
			id       string
			c        kith.DestinationCounts
			filtered []byte
		)
		if err := rows.Scan(&id, &c.Delivered, &c.Retrying, &c.DeadLettered, &filtered); err != nil {
			return nil, fmt.Errorf("sqlite: destination counts: %w", err)
		}
		if err := json.Unmarshal(filtered, &c.Filtered); err != nil {
			return nil, fmt.Errorf("sqlite: destination counts: filtered of %q: %w", id, err)
		}
		if len(c.Filtered) == 0 {
			c.Filtered = nil
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: destination counts: %w", err)
	}
	return out, nil
}

// forgetRecipients applies DestinationUpdate.Forget: the deliveries of
// the erased profiles are removed and counted, and so is the record that
// the destination received them.
func forgetRecipients(ctx context.Context, tx *sql.Tx, id string, profiles []string) error {
	var dropped int64
	for _, p := range profiles {
		res, err := tx.ExecContext(ctx, `DELETE FROM destination_deliveries WHERE destination_id = $1 AND key = $2`, id, p)
		if err != nil {
			return fmt.Errorf("forget deliveries: %w", err)
		}
		n, _ := res.RowsAffected()
		dropped += n
		if _, err := tx.ExecContext(ctx, `DELETE FROM destination_recipients WHERE profile_id = $1 AND destination_id = $2`, p, id); err != nil {
			return fmt.Errorf("forget recipient: %w", err)
		}
	}
	if dropped == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO destination_filtered (destination_id, reason, value) VALUES ($1,$2,$3)
		ON CONFLICT (destination_id, reason) DO UPDATE SET value = `+saturatingSum, id, kith.DeliveriesErased, dropped); err != nil {
		return fmt.Errorf("erased counter: %w", err)
	}
	return nil
}

// Delivery returns one retrying or dead-lettered delivery by ID.
func (db *DB) Delivery(ctx context.Context, id, delivery string) (kith.Delivery, error) {
	ds, err := db.deliveries(ctx, `SELECT `+deliveryColumns+` FROM destination_deliveries
		WHERE destination_id = $1 AND id = $2`, id, delivery)
	if err != nil {
		return kith.Delivery{}, fmt.Errorf("sqlite: delivery: %w", err)
	}
	if len(ds) == 0 {
		return kith.Delivery{}, kith.Errorf(kith.ENOTFOUND, "delivery %q of destination %q not found", delivery, id)
	}
	return ds[0], nil
}

// ReceivedBy returns the destinations that received any of the profiles.
func (db *DB) ReceivedBy(ctx context.Context, profiles []string) ([]string, error) {
	seen := map[string]bool{}
	for _, p := range profiles {
		rows, err := db.logR.QueryContext(ctx, `SELECT destination_id FROM destination_recipients WHERE profile_id = $1`, p)
		if err != nil {
			return nil, fmt.Errorf("sqlite: destinations that received %q: %w", p, err)
		}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: destinations that received %q: %w", p, err)
			}
			seen[d] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: destinations that received %q: %w", p, err)
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// setSync stores a destination's positions beyond the log and the
// audience changes (kith.DestinationProgress.Extra): a row while one is
// not zero, none after.
func setSync(ctx context.Context, tx *sql.Tx, id string, p kith.DestinationProgress) error {
	var err error
	if b := p.Extra(); b != (kith.DestinationProgress{}) {
		_, err = tx.ExecContext(ctx, `INSERT INTO destination_positions (destination_id, trait_seq, audience, after, replay_at, replay_to, replay_id)
			VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (destination_id) DO UPDATE SET trait_seq = excluded.trait_seq, audience = excluded.audience, after = excluded.after,
			replay_at = excluded.replay_at, replay_to = excluded.replay_to, replay_id = excluded.replay_id`,
			id, b.TraitSeq, b.Sync, b.SyncAfter, b.ReplayAt, b.ReplayTo, b.ReplayID)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM destination_positions WHERE destination_id = $1`, id)
	}
	if err != nil {
		return fmt.Errorf("sync progress: %w", err)
	}
	return nil
}
