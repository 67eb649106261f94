package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
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
// as a scan passes them; the members of merged profiles are collected and
// handed over together at the end, in time order.
//
// Reading and decoding millions of rows is the scan's cost, so the table is
// read in parts by profile id (see orderParts), each on its own connection
// and goroutine, and fn is handed their batches in turn: part 1's first
// batch, part 2's first, part 1's second, and so on. The order is the same
// on every run over the same data, and fn is never called concurrently.
func (db *DB) ScanOrders(ctx context.Context, fn func(kith.CustomerOrders) error) error {
	canon, err := db.mergedCanonicals(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: scan orders: %w", err)
	}
	bounds, err := db.orderParts(ctx, max(1, min(runtime.GOMAXPROCS(0), 4)))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts := make([]*orderPart, len(bounds)+1)
	var wg sync.WaitGroup
	for i := range parts {
		var lo, hi string
		if i > 0 {
			lo = bounds[i-1]
		}
		if i < len(bounds) {
			hi = bounds[i]
		}
		p := &orderPart{batches: make(chan []kith.CustomerOrders, 2), merged: map[string][]kith.Order{}}
		parts[i] = p
		wg.Go(func() {
			defer close(p.batches)
			p.err = db.scanOrderPart(ctx, lo, hi, canon, p)
		})
	}
	// On an early return the readers are cancelled and drained, so none is
	// left blocked on its channel.
	defer func() {
		cancel()
		for _, p := range parts {
			for range p.batches {
			}
		}
		wg.Wait()
	}()
	for open := len(parts); open > 0; {
		for _, p := range parts {
			if p.done {
				continue
			}
			batch, ok := <-p.batches
			if !ok {
				p.done = true
				open--
				if p.err != nil {
					return p.err
				}
				continue
			}
			for _, co := range batch {
				if err := fn(co); err != nil {
					return err
				}
			}
		}
	}
	merged := parts[0].merged
	for _, p := range parts[1:] {
		for c, os := range p.merged {
			merged[c] = append(merged[c], os...)
		}
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

// orderPart is one reader of ScanOrders: the batches of customers it has
// read, the orders of merged profiles it set aside, and why it stopped
// early, if it did (set before batches is closed).
type orderPart struct {
	batches chan []kith.CustomerOrders
	merged  map[string][]kith.Order
	err     error
	done    bool
}

// orderBatch is about how many orders a reader hands over at a time.
const orderBatch = 4096

// scanOrderPart reads the orders of profile ids in [lo, hi) ("" leaves a
// side open) into p.
func (db *DB) scanOrderPart(ctx context.Context, lo, hi string, canon map[string]string, p *orderPart) error {
	q := `SELECT profile_id, ts, seq, source_id, order_id, revenue, currency, items FROM orders`
	var args []any
	switch {
	case lo != "" && hi != "":
		q, args = q+` WHERE profile_id >= $1 AND profile_id < $2`, []any{lo, hi}
	case lo != "":
		q, args = q+` WHERE profile_id >= $1`, []any{lo}
	case hi != "":
		q, args = q+` WHERE profile_id < $1`, []any{hi}
	}
	rows, err := db.stateR.QueryContext(ctx, q+` ORDER BY profile_id, ts, seq`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: scan orders: %w", err)
	}
	defer rows.Close()
	var batch []kith.CustomerOrders
	n := 0
	send := func() error {
		select {
		case p.batches <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch, n = nil, 0
		return nil
	}
	var cur kith.CustomerOrders
	flush := func() error {
		if len(cur.Orders) == 0 {
			return nil
		}
		if c, ok := canon[cur.ProfileID]; ok {
			p.merged[c] = append(p.merged[c], cur.Orders...)
		} else {
			batch = append(batch, cur)
			if n += len(cur.Orders); n >= orderBatch {
				if err := send(); err != nil {
					return err
				}
			}
		}
		cur = kith.CustomerOrders{}
		return nil
	}
	var items sql.RawBytes
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
	if len(batch) > 0 {
		return send()
	}
	return nil
}

// orderParts returns up to k-1 profile ids that cut the orders table into
// k parts of about equal width, for ScanOrders to read side by side: the
// first and last profile ids are read from the ends of the table's key,
// and the cuts are spaced evenly between them, reading the bytes after
// their common prefix as a number. Profile ids are random after a fixed
// prefix, so equal width is about equal size; where they are not, the
// parts are uneven and the scan is as correct, only less parallel.
func (db *DB) orderParts(ctx context.Context, k int) ([]string, error) {
	if k < 2 {
		return nil, nil
	}
	var lo, hi sql.NullString
	if err := db.stateR.QueryRowContext(ctx, `SELECT (SELECT profile_id FROM orders ORDER BY profile_id LIMIT 1),
		(SELECT profile_id FROM orders ORDER BY profile_id DESC LIMIT 1)`).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("sqlite: scan orders: %w", err)
	}
	return keyCuts(lo.String, hi.String, k), nil
}

// keyCuts returns up to k-1 distinct strings c, lo < c <= hi, in
// ascending order, dividing [lo, hi] into k parts of about equal width.
func keyCuts(lo, hi string, k int) []string {
	if lo >= hi {
		return nil
	}
	pre := 0
	for pre < len(lo) && pre < len(hi) && lo[pre] == hi[pre] {
		pre++
	}
	// The 8 bytes after the common prefix, as big-endian numbers (a
	// shorter string is padded with zeros, which sorts it first).
	num := func(s string) uint64 {
		var b [8]byte
		copy(b[:], s[min(pre, len(s)):])
		return binary.BigEndian.Uint64(b[:])
	}
	a, z := num(lo), num(hi)
	var cuts []string
	for i := 1; i < k; i++ {
		v := a + uint64(float64(z-a)*float64(i)/float64(k))
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], v)
		c := hi[:pre] + strings.TrimRight(string(b[:]), "\x00")
		if c > lo && c <= hi && (len(cuts) == 0 || c > cuts[len(cuts)-1]) {
			cuts = append(cuts, c)
		}
	}
	return cuts
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
		if encoded[i], err = p.TraitsJSON(); err != nil {
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
