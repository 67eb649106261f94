package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/kithcdp/kith"
)

// encodeItems packs order lines compactly for the orders table: per line
// four length-prefixed strings (product id, sku, name, category) and two
// float64s (price, quantity). A scan over millions of orders decodes this
// several times faster than JSON.
func encodeItems(items []kith.OrderItem) []byte {
	n := 0
	for _, it := range items {
		n += 4*binary.MaxVarintLen32 + len(it.ProductID) + len(it.SKU) + len(it.Name) + len(it.Category) + 16
	}
	b := make([]byte, 0, n)
	for _, it := range items {
		for _, s := range [...]string{it.ProductID, it.SKU, it.Name, it.Category} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(it.Price))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(it.Quantity))
	}
	return b
}

// decodeItems reverses encodeItems.
func decodeItems(b []byte) ([]kith.OrderItem, error) {
	var out []kith.OrderItem
	for len(b) > 0 {
		var it kith.OrderItem
		for _, dst := range [...]*string{&it.ProductID, &it.SKU, &it.Name, &it.Category} {
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, errors.New("sqlite: corrupt order items")
			}
			*dst = string(b[n : n+int(l)])
			b = b[n+int(l):]
		}
		if len(b) < 16 {
			return nil, errors.New("sqlite: corrupt order items")
		}
		it.Price = math.Float64frombits(binary.LittleEndian.Uint64(b))
		it.Quantity = math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
		b = b[16:]
		out = append(out, it)
	}
	return out, nil
}

// ScanOrders visits each unified profile's orders. The orders table is
// clustered by profile, so profiles that were never merged are handed to fn
// as the scan passes them; the members of merged profiles are collected and
// handed over together at the end, in time order.
func (db *DB) ScanOrders(ctx context.Context, fn func(kith.CustomerOrders) error) error {
	canon, err := db.mergedCanonicals(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: scan orders: %w", err)
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT profile_id, ts, seq, source_id, order_id, revenue, currency, items
		FROM orders ORDER BY profile_id, ts, seq`)
	if err != nil {
		return fmt.Errorf("sqlite: scan orders: %w", err)
	}
	defer rows.Close()
	merged := map[string][]kith.Order{}
	var cur kith.CustomerOrders
	flush := func() error {
		if len(cur.Orders) == 0 {
			return nil
		}
		if c, ok := canon[cur.ProfileID]; ok {
			merged[c] = append(merged[c], cur.Orders...)
		} else if err := fn(cur); err != nil {
			return err
		}
		cur = kith.CustomerOrders{}
		return nil
	}
	var items []byte
	for rows.Next() {
		var o kith.Order
		var ts int64
		if err := rows.Scan(&o.ProfileID, &ts, &o.Seq, &o.SourceID, &o.OrderID, &o.Revenue, &o.Currency, &items); err != nil {
			return fmt.Errorf("sqlite: scan orders: %w", err)
		}
		o.Timestamp = fromMicros(ts)
		if o.Items, err = decodeItems(items); err != nil {
			return fmt.Errorf("%w (order seq %d)", err, o.Seq)
		}
		if o.ProfileID != cur.ProfileID {
			if err := flush(); err != nil {
				return err
			}
			cur.ProfileID = o.ProfileID
		}
		cur.Orders = append(cur.Orders, o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: scan orders: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	for _, c := range slices.Sorted(mapKeys(merged)) {
		os := merged[c]
		slices.SortFunc(os, kith.CompareOrders)
		if err := fn(kith.CustomerOrders{ProfileID: c, Orders: os}); err != nil {
			return err
		}
		delete(merged, c)
	}
	return nil
}

// WriteInsights replaces the predicted traits of the given profiles.
func (db *DB) WriteInsights(ctx context.Context, runID string, at time.Time, ps []kith.ProfileInsights) error {
	tx, err := db.insW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: write insights: %w", err)
	}
	defer tx.Rollback()
	encoded := make([][]byte, len(ps))
	for i, p := range ps {
		if encoded[i], err = json.Marshal(p.Traits); err != nil {
			return fmt.Errorf("sqlite: write insights for %s: %w", p.ProfileID, err)
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO profile_insights (profile_id, run_id, at, traits)`, 4,
		`ON CONFLICT (profile_id) DO UPDATE SET run_id = excluded.run_id, at = excluded.at, traits = excluded.traits`,
		len(ps), func(i int) []any { return []any{ps[i].ProfileID, runID, micros(at), encoded[i]} }); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: write insights: %w", err)
	}
	return nil
}

// predictedTraits reads the predicted traits stored for any of the
// profiles, the latest run's first.
func (db *DB) predictedTraits(ctx context.Context, profiles []string) ([]kith.Trait, error) {
	var out []kith.Trait
	for _, id := range profiles {
		var runID string
		var at int64
		var raw []byte
		err := db.insR.QueryRowContext(ctx, `SELECT run_id, at, traits FROM profile_insights WHERE profile_id = $1`, id).Scan(&runID, &at, &raw)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: predicted traits: %w", err)
		}
		ts, err := kith.PredictedTraits(id, runID, fromMicros(at), raw)
		if err != nil {
			return nil, fmt.Errorf("sqlite: predicted traits of %s: %w", id, err)
		}
		out = append(out, ts...)
	}
	return out, nil
}

// SaveInsightRun creates or replaces a run record.
func (db *DB) SaveInsightRun(ctx context.Context, r kith.InsightRun) error {
	var finished int64
	if !r.FinishedAt.IsZero() {
		finished = micros(r.FinishedAt)
	}
	if _, err := db.insW.ExecContext(ctx, `INSERT INTO insight_runs (id, status, trigger, started_at, finished_at, error, report)
		VALUES ($1,$2,$3,$4,$5,$6,$7)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, trigger = excluded.trigger, started_at = excluded.started_at,
			finished_at = excluded.finished_at, error = excluded.error, report = excluded.report`,
		r.ID, r.Status, r.Trigger, micros(r.StartedAt), finished, r.Error, []byte(r.Report)); err != nil {
		return fmt.Errorf("sqlite: save insight run: %w", err)
	}
	return nil
}

const runColumns = `id, status, trigger, started_at, finished_at, error, report`

func scanRun(s interface{ Scan(...any) error }) (kith.InsightRun, error) {
	var r kith.InsightRun
	var started, finished int64
	var report []byte
	if err := s.Scan(&r.ID, &r.Status, &r.Trigger, &started, &finished, &r.Error, &report); err != nil {
		return r, err
	}
	r.StartedAt = fromMicros(started)
	if finished != 0 {
		r.FinishedAt = fromMicros(finished)
	}
	if len(report) > 0 {
		r.Report = report
	}
	return r, nil
}

// InsightRun returns one run record.
func (db *DB) InsightRun(ctx context.Context, id string) (kith.InsightRun, error) {
	r, err := scanRun(db.insR.QueryRowContext(ctx, `SELECT `+runColumns+` FROM insight_runs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, kith.Errorf(kith.ENOTFOUND, "insight run %q not found", id)
	} else if err != nil {
		return r, fmt.Errorf("sqlite: insight run: %w", err)
	}
	return r, nil
}

// InsightRuns lists the latest runs, newest first.
func (db *DB) InsightRuns(ctx context.Context, limit int) ([]kith.InsightRun, error) {
	rows, err := db.insR.QueryContext(ctx, `SELECT `+runColumns+` FROM insight_runs ORDER BY started_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: insight runs: %w", err)
	}
	defer rows.Close()
	var out []kith.InsightRun
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: insight runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: insight runs: %w", err)
	}
	return out, nil
}

// ScanPredicted implements kith.InsightStore.
func (db *DB) ScanPredicted(ctx context.Context, keys []string, fn func(string, map[string]json.RawMessage) error) error {
	canon, err := db.mergedCanonicals(ctx)
	if err != nil {
		return err
	}
	rows, err := db.insR.QueryContext(ctx, `SELECT profile_id, at, traits FROM profile_insights`)
	if err != nil {
		return fmt.Errorf("sqlite: scan predicted traits: %w", err)
	}
	defer rows.Close()
	type latest struct {
		vals map[string]json.RawMessage
		at   int64
	}
	merged := map[string]latest{}
	for rows.Next() {
		var id string
		var at int64
		var raw []byte
		if err := rows.Scan(&id, &at, &raw); err != nil {
			return fmt.Errorf("sqlite: scan predicted traits: %w", err)
		}
		vals, err := pickKeys(raw, keys)
		if err != nil {
			return fmt.Errorf("sqlite: predicted traits of %s: %w", id, err)
		}
		if len(vals) == 0 {
			continue
		}
		if c, ok := canon[id]; ok {
			if old, seen := merged[c]; !seen || at > old.at {
				merged[c] = latest{vals, at}
			}
			continue
		}
		if err := fn(id, vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: scan predicted traits: %w", err)
	}
	for _, c := range slices.Sorted(mapKeys(merged)) {
		if err := fn(c, merged[c].vals); err != nil {
			return err
		}
	}
	return nil
}

// pickKeys returns the members of a JSON object named in keys.
func pickKeys(obj []byte, keys []string) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(obj, &all); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, k := range keys {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}
