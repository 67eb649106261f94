package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// Counter names in the counters table; rejections are counted under
// counterRejected followed by the reason.
const (
	counterReceived   = "received"
	counterAccepted   = "accepted"
	counterDuplicate  = "duplicate"
	counterRejected   = "rejected:"
	counterSuppressed = "suppressed"
	counterProcessed  = "processed"
)

// eventColumns are the events columns a kith.Message reads from, in the
// order scanMessage expects.
const eventColumns = `seq, source_id, message_id, type, event, user_id, anonymous_id, ts, received_at, revenue, raw`

// Append implements kith.EventLog. It runs as one transaction: take the log
// lock, claim the messageIds, insert the new events and add the counters.
func (db *DB) Append(ctx context.Context, b kith.AppendBatch) (kith.AppendResult, error) {
	res, err := db.append(ctx, b)
	return res, refusedData(err)
}

func (db *DB) append(ctx context.Context, b kith.AppendBatch) (kith.AppendResult, error) {
	res := kith.AppendResult{Duplicate: make([]bool, len(b.Events))}
	if len(b.Events) == 0 && len(b.Rejected) == 0 && len(b.Suppressed) == 0 {
		return res, nil
	}

	// Duplicates inside the batch never reach the database: the first
	// occurrence is the one that may be stored.
	type msgKey struct{ source, id string }
	seen := make(map[msgKey]bool, len(b.Events))
	var (
		candidates []int
		srcs, mids []string
		receivedAt []time.Time
		claimed    = make(map[msgKey]bool, len(b.Events))
	)
	for i, e := range b.Events {
		k := msgKey{e.SourceID, e.MessageID}
		if seen[k] {
			res.Duplicate[i] = true
			continue
		}
		seen[k] = true
		candidates = append(candidates, i)
		srcs = append(srcs, e.SourceID)
		mids = append(mids, e.MessageID)
		receivedAt = append(receivedAt, e.ReceivedAt)
	}

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return kith.AppendResult{}, fmt.Errorf("postgres: append: begin: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, lockSQL, lockLog); err != nil {
		return kith.AppendResult{}, fmt.Errorf("postgres: append: lock: %w", err)
	}

	if len(candidates) > 0 {
		rows, err := tx.Query(ctx, `
			INSERT INTO message_ids (source_id, message_id, received_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
			ON CONFLICT (source_id, message_id) DO NOTHING
			RETURNING source_id, message_id`, srcs, mids, receivedAt)
		if err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: dedup: %w", err)
		}
		var k msgKey
		_, err = pgx.ForEachRow(rows, []any{&k.source, &k.id}, func() error {
			claimed[k] = true
			return nil
		})
		if err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: dedup: %w", err)
		}
		for _, i := range candidates {
			e := b.Events[i]
			if !claimed[msgKey{e.SourceID, e.MessageID}] {
				res.Duplicate[i] = true
			}
		}
	}

	var (
		kept   []kith.Message
		keptAt []int // index in b.Events of each kept event
		delta  = map[string]map[string]int64{}
		last   = map[string]time.Time{} // source → latest arrival accepted
	)
	add := func(source, name string, v int64) {
		if v == 0 {
			return
		}
		if delta[source] == nil {
			delta[source] = map[string]int64{}
		}
		delta[source][name] += v
	}
	for i, e := range b.Events {
		add(e.SourceID, counterReceived, 1)
		if res.Duplicate[i] {
			add(e.SourceID, counterDuplicate, 1)
			continue
		}
		add(e.SourceID, counterAccepted, 1)
		add(e.SourceID, kith.DayPrefix+e.ReceivedAt.UTC().Format(time.DateOnly), 1)
		if e.ReceivedAt.After(last[e.SourceID]) {
			last[e.SourceID] = e.ReceivedAt
		}
		kept = append(kept, e)
		keptAt = append(keptAt, i)
	}
	for source, reasons := range b.Rejected {
		for reason, v := range reasons {
			add(source, counterReceived, v)
			add(source, counterRejected+reason, v)
		}
	}
	for source, v := range b.Suppressed {
		add(source, counterReceived, v)
		add(source, counterSuppressed, v)
	}
	if len(kept) > 0 {
		// COPY is ~1.5x faster than a multi-row INSERT here. It evaluates
		// the identity default row by row, so Seqs ascend in batch order.
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"},
			[]string{"source_id", "message_id", "type", "event", "user_id", "anonymous_id", "ts", "received_at", "revenue", "raw"},
			pgx.CopyFromSlice(len(kept), func(i int) ([]any, error) {
				e := kept[i]
				return []any{e.SourceID, e.MessageID, e.Type, e.Event, e.UserID, e.AnonymousID, e.Timestamp, e.ReceivedAt, e.Revenue, string(e.Raw)}, nil
			}))
		if err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: copy events: %w", err)
		}
		// Appends are serialised by the advisory lock and nothing else
		// draws from the identity sequence, so this COPY's Seqs are the
		// consecutive values ending at the sequence's current value.
		var last int64
		if err := tx.QueryRow(ctx, `SELECT currval(pg_get_serial_sequence('events', 'seq'))`).Scan(&last); err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: read seqs: %w", err)
		}
		res.Seqs = make([]int64, len(b.Events))
		for j, i := range keptAt {
			res.Seqs[i] = last - int64(len(kept)-1-j)
		}
	}
	if sql, args, ok := countersUpsert(delta); ok {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: counters: %w", err)
		}
	}
	for src, at := range last {
		if _, err := tx.Exec(ctx, `INSERT INTO counters (source_id, name, value) VALUES ($1, 'last_received', $2)
			ON CONFLICT (source_id, name) DO UPDATE SET value = greatest(counters.value, excluded.value)`, src, at.UnixMicro()); err != nil {
			return kith.AppendResult{}, fmt.Errorf("postgres: append: counters: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return kith.AppendResult{}, fmt.Errorf("postgres: append: commit: %w", err)
	}
	return res, nil
}

// countersUpsert returns the statement that adds delta (source → counter
// name → amount) to the counters table, or ok=false if there is nothing to
// add. Rows are sorted so that concurrent writers lock them in one order.
func countersUpsert(delta map[string]map[string]int64) (sql string, args []any, ok bool) {
	type row struct {
		source, name string
		v            int64
	}
	var rows []row
	for source, names := range delta {
		for name, v := range names {
			if v != 0 {
				rows = append(rows, row{source, name, v})
			}
		}
	}
	if len(rows) == 0 {
		return "", nil, false
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.name, b.name))
	})
	srcs := make([]string, len(rows))
	names := make([]string, len(rows))
	vals := make([]int64, len(rows))
	for i, r := range rows {
		srcs[i], names[i], vals[i] = r.source, r.name, r.v
	}
	return `
		INSERT INTO counters (source_id, name, value)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (source_id, name) DO UPDATE SET value = counters.value + excluded.value`,
		[]any{srcs, names, vals}, true
}

// scanMessage scans a row selected with eventColumns.
func scanMessage(row pgx.CollectableRow) (kith.Message, error) {
	var (
		m   kith.Message
		raw []byte
	)
	err := row.Scan(&m.Seq, &m.SourceID, &m.MessageID, &m.Type, &m.Event, &m.UserID, &m.AnonymousID,
		&m.Timestamp, &m.ReceivedAt, &m.Revenue, &raw)
	if err != nil {
		return kith.Message{}, err
	}
	m.Timestamp, m.ReceivedAt = m.Timestamp.UTC(), m.ReceivedAt.UTC()
	m.Raw = raw
	return m, nil
}

// ReadLog implements kith.EventLog.
func (db *DB) ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read log: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, fmt.Errorf("postgres: read log: %w", err)
	}
	return msgs, nil
}

// LogHead implements kith.EventLog.
func (db *DB) LogHead(ctx context.Context) (int64, error) {
	var head int64
	if err := db.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM events`).Scan(&head); err != nil {
		return 0, fmt.Errorf("postgres: log head: %w", err)
	}
	return head, nil
}

// EventsBySeq implements kith.EventLog.
func (db *DB) EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `
		SELECT e.seq, e.source_id, e.message_id, e.type, e.event, e.user_id, e.anonymous_id, e.ts, e.received_at, e.revenue, e.raw
		FROM unnest($1::bigint[]) WITH ORDINALITY AS q(seq, ord)
		JOIN events e ON e.seq = q.seq
		ORDER BY q.ord`, seqs)
	if err != nil {
		return nil, fmt.Errorf("postgres: events by seq: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, fmt.Errorf("postgres: events by seq: %w", err)
	}
	return msgs, nil
}

// PruneDedup implements kith.Store: messageIds received before cutoff may
// be accepted again.
func (db *DB) PruneDedup(ctx context.Context, cutoff time.Time) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM message_ids WHERE received_at < $1`, cutoff); err != nil {
		return fmt.Errorf("postgres: prune dedup: %w", err)
	}
	return nil
}

// Counts implements kith.Store.
func (db *DB) Counts(ctx context.Context) (map[string]kith.Counts, error) {
	rows, err := db.pool.Query(ctx, `SELECT source_id, name, value FROM counters`)
	if err != nil {
		return nil, fmt.Errorf("postgres: counts: %w", err)
	}
	out := map[string]kith.Counts{}
	var (
		source, name string
		v            int64
	)
	_, err = pgx.ForEachRow(rows, []any{&source, &name, &v}, func() error {
		c := out[source]
		switch name {
		case counterReceived:
			c.Received = v
		case counterAccepted:
			c.Accepted = v
		case counterDuplicate:
			c.Duplicate = v
		case counterProcessed:
			c.Processed = v
		case counterSuppressed:
			c.Suppressed = v
		case "last_received":
			c.LastEventAt = time.UnixMicro(v).UTC()
		default:
			if strings.HasPrefix(name, kith.DayPrefix) {
				break // per-day counts: DailyEvents
			}
			reason, ok := strings.CutPrefix(name, counterRejected)
			if !ok {
				return fmt.Errorf("unknown counter %q", name)
			}
			if c.Rejected == nil {
				c.Rejected = map[string]int64{}
			}
			c.Rejected[reason] = v
		}
		out[source] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: counts: %w", err)
	}
	return out, nil
}

// DailyEvents implements kith.Store from the per-day counters.
func (db *DB) DailyEvents(ctx context.Context, since time.Time) (map[string]int64, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, sum(value)::bigint FROM counters WHERE name >= $1 AND name < $2 GROUP BY name`,
		kith.DayPrefix+since.UTC().Format(time.DateOnly), kith.DayPrefix+"~")
	if err != nil {
		return nil, fmt.Errorf("postgres: daily events: %w", err)
	}
	out := map[string]int64{}
	var name string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &n}, func() error {
		out[strings.TrimPrefix(name, kith.DayPrefix)] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: daily events: %w", err)
	}
	return out, nil
}
