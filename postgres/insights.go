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

// orderItems is never null in JSON: an order without lines stores [].
func orderItems(items []kith.OrderItem) []kith.OrderItem {
	if items == nil {
		return []kith.OrderItem{}
	}
	return items
}

// ScanOrders implements kith.InsightStore: the orders joined to their
// profile's canonical id, sorted by it, so each unified profile's orders
// arrive together; PostgreSQL sorts in bounded memory (spilling to disk).
func (db *DB) ScanOrders(ctx context.Context, fn func(kith.CustomerOrders) error) error {
	rows, err := db.pool.Query(ctx, `
		SELECT p.canonical_id, o.ts, o.seq, o.source_id, o.order_id, o.revenue, o.currency, o.items::text
		FROM orders o JOIN profiles p ON p.id = o.profile_id
		ORDER BY p.canonical_id, o.ts, o.seq`)
	if err != nil {
		return fmt.Errorf("postgres: scan orders: %w", err)
	}
	defer rows.Close()
	var cur kith.CustomerOrders
	var items string
	for rows.Next() {
		var o kith.Order
		var canonical string
		if err := rows.Scan(&canonical, &o.Timestamp, &o.Seq, &o.SourceID, &o.OrderID, &o.Revenue, &o.Currency, &items); err != nil {
			return fmt.Errorf("postgres: scan orders: %w", err)
		}
		o.ProfileID = canonical
		o.Timestamp = o.Timestamp.UTC()
		if err := json.Unmarshal([]byte(items), &o.Items); err != nil {
			return fmt.Errorf("postgres: scan orders: items of seq %d: %w", o.Seq, err)
		}
		if len(o.Items) == 0 {
			o.Items = nil
		}
		if canonical != cur.ProfileID && len(cur.Orders) > 0 {
			if err := fn(cur); err != nil {
				return err
			}
			cur = kith.CustomerOrders{}
		}
		cur.ProfileID = canonical
		cur.Orders = append(cur.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: scan orders: %w", err)
	}
	if len(cur.Orders) > 0 {
		return fn(cur)
	}
	return nil
}

// WriteInsights implements kith.InsightStore.
func (db *DB) WriteInsights(ctx context.Context, runID string, at time.Time, ps []kith.ProfileInsights) error {
	if len(ps) == 0 {
		return nil
	}
	ids := make([]string, len(ps))
	objs := make([]string, len(ps))
	for i, p := range ps {
		j, err := p.TraitsJSON()
		if err != nil {
			return fmt.Errorf("postgres: write insights for %s: %w", p.ProfileID, err)
		}
		ids[i], objs[i] = p.ProfileID, string(j)
	}
	if _, err := db.pool.Exec(ctx, `
		INSERT INTO profile_insights (profile_id, run_id, at, traits)
		SELECT id, $3, $4, traits::jsonb FROM unnest($1::text[], $2::text[]) AS u(id, traits)
		ON CONFLICT (profile_id) DO UPDATE SET run_id = excluded.run_id, at = excluded.at, traits = excluded.traits`,
		ids, objs, runID, at); err != nil {
		return fmt.Errorf("postgres: write insights: %w", err)
	}
	return nil
}

// predictedTraits reads the predicted traits stored for the members of the
// profile.
func (db *DB) predictedTraits(ctx context.Context, canonicalID string) ([]kith.Trait, error) {
	rows, err := db.pool.Query(ctx, `SELECT profile_id, run_id, at, traits::text FROM profile_insights
		WHERE profile_id = ANY(ARRAY(`+membersSQL+`))`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("postgres: predicted traits: %w", err)
	}
	defer rows.Close()
	var out []kith.Trait
	for rows.Next() {
		var id, runID, obj string
		var at time.Time
		if err := rows.Scan(&id, &runID, &at, &obj); err != nil {
			return nil, fmt.Errorf("postgres: predicted traits: %w", err)
		}
		ts, err := kith.PredictedTraits(id, runID, at.UTC(), []byte(obj))
		if err != nil {
			return nil, fmt.Errorf("postgres: predicted traits of %s: %w", id, err)
		}
		out = append(out, ts...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: predicted traits: %w", err)
	}
	return out, nil
}

// SaveInsightRun implements kith.InsightStore.
func (db *DB) SaveInsightRun(ctx context.Context, r kith.InsightRun) error {
	var finished *time.Time
	if !r.FinishedAt.IsZero() {
		finished = &r.FinishedAt
	}
	var report *string
	if len(r.Report) > 0 {
		s := string(r.Report)
		report = &s
	}
	if _, err := db.pool.Exec(ctx, `
		INSERT INTO insight_runs (id, status, trigger, started_at, finished_at, error, report)
		VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, trigger = excluded.trigger,
			started_at = excluded.started_at, finished_at = excluded.finished_at,
			error = excluded.error, report = excluded.report`,
		r.ID, r.Status, r.Trigger, r.StartedAt, finished, r.Error, report); err != nil {
		return fmt.Errorf("postgres: save insight run: %w", err)
	}
	return nil
}

const runColumns = `id, status, trigger, started_at, finished_at, error, report::text`

func scanRun(row pgx.Row) (kith.InsightRun, error) {
	var r kith.InsightRun
	var finished *time.Time
	var report *string
	if err := row.Scan(&r.ID, &r.Status, &r.Trigger, &r.StartedAt, &finished, &r.Error, &report); err != nil {
		return r, err
	}
	r.StartedAt = r.StartedAt.UTC()
	if finished != nil {
		r.FinishedAt = finished.UTC()
	}
	if report != nil {
		r.Report = json.RawMessage(*report)
	}
	return r, nil
}

// InsightRun implements kith.InsightStore.
func (db *DB) InsightRun(ctx context.Context, id string) (kith.InsightRun, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM insight_runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, kith.Errorf(kith.ENOTFOUND, "insight run %q not found", id)
	} else if err != nil {
		return r, fmt.Errorf("postgres: insight run: %w", err)
	}
	return r, nil
}

// InsightRuns implements kith.InsightStore.
func (db *DB) InsightRuns(ctx context.Context, limit int) ([]kith.InsightRun, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+runColumns+` FROM insight_runs ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: insight runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.InsightRun, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: insight runs: %w", err)
	}
	return out, nil
}

// ScanPredicted implements kith.InsightStore.
func (db *DB) ScanPredicted(ctx context.Context, keys []string, fn func(string, map[string]json.RawMessage) error) error {
	rows, err := db.pool.Query(ctx, `
		SELECT DISTINCT ON (p.canonical_id) p.canonical_id, (
			SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)::text
			FROM jsonb_each(i.traits) e WHERE e.key = ANY($1))
		FROM profile_insights i JOIN profiles p ON p.id = i.profile_id
		WHERE i.traits ?| $1
		ORDER BY p.canonical_id, i.at DESC, i.profile_id`, keys)
	if err != nil {
		return fmt.Errorf("postgres: scan predicted traits: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c, obj string
		if err := rows.Scan(&c, &obj); err != nil {
			return fmt.Errorf("postgres: scan predicted traits: %w", err)
		}
		var vals map[string]json.RawMessage
		if err := json.Unmarshal([]byte(obj), &vals); err != nil {
			return fmt.Errorf("postgres: predicted traits of %s: %w", c, err)
		}
		if err := fn(c, vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: scan predicted traits: %w", err)
	}
	return nil
}
