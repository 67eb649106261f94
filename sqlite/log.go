package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// dedupLoadMargin is how much earlier than the dedup cutoff the rebuild
// starts scanning, to cover events committed out of receive order.
const dedupLoadMargin = time.Hour

// loadDedup rebuilds the index from the events received since the last
// PruneDedup cutoff.
func loadDedup(ctx context.Context, r *sql.DB) (*dedupIndex, error) {
	d := newDedupIndex()
	var c int64
	if err := r.QueryRowContext(ctx, `SELECT COALESCE(MAX(value),0) FROM log_meta WHERE key = 'dedup_cutoff'`).Scan(&c); err != nil {
		return nil, fmt.Errorf("sqlite: load dedup cutoff: %w", err)
	}
	// The log is nearly in receive order: requests are stamped when they
	// arrive and appended when committed, so a slow upload lands a little
	// late. The binary search on seq therefore looks for a point well
	// before the cutoff (the server bounds a request's read time far below
	// this margin), and the scan filters exactly.
	var lo, hi int64
	if err := r.QueryRowContext(ctx, `SELECT COALESCE(MIN(seq),0), COALESCE(MAX(seq),0) FROM events`).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("sqlite: load dedup window: %w", err)
	}
	head := hi
	searchFrom := c - int64(dedupLoadMargin/time.Microsecond)
	for lo < hi {
		mid := lo + (hi-lo)/2
		var at int64
		err := r.QueryRowContext(ctx, `SELECT received_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1`, mid).Scan(&at)
		if err != nil {
			return nil, fmt.Errorf("sqlite: load dedup window: %w", err)
		}
		if at < searchFrom {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	d.sizeFor(head - lo + 1) // at most this many rows follow
	// In seq order, as the index takes them.
	rows, err := r.QueryContext(ctx, `SELECT seq, source_id, message_id, received_at FROM events WHERE seq >= $1 AND received_at >= $2 ORDER BY seq`, lo, c)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load dedup window: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, at int64
		var src, mid string
		if err := rows.Scan(&seq, &src, &mid, &at); err != nil {
			return nil, fmt.Errorf("sqlite: load dedup window: %w", err)
		}
		if err := d.add(d.hash(src, mid), seq, at); err != nil {
			return nil, err
		}
	}
	return d, rows.Err()
}

// Append stores the batch's new events and counters in one transaction.
func (db *DB) Append(ctx context.Context, b kith.AppendBatch) (kith.AppendResult, error) {
	res, err := db.append(ctx, b)
	return res, diskFull(err)
}

func (db *DB) append(ctx context.Context, b kith.AppendBatch) (kith.AppendResult, error) {
	res := kith.AppendResult{Duplicate: make([]bool, len(b.Events))}
	d := db.dedup
	d.mu.Lock()
	defer d.mu.Unlock()

	tx, err := db.logW.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("sqlite: append: begin: %w", err)
	}
	defer tx.Rollback()

	// Find duplicates: earlier in this batch, or a candidate of the index
	// whose log row holds the same id.
	hashes := make([]uint64, len(b.Events))
	inBatch := make(map[string]struct{}, len(b.Events))
	verify := map[int64][]int{} // log seq -> event indexes it is a candidate for
	var cands []int64
	for i, e := range b.Events {
		k := e.SourceID + "\x00" + e.MessageID
		if _, ok := inBatch[k]; ok {
			res.Duplicate[i] = true
			continue
		}
		inBatch[k] = struct{}{}
		hashes[i] = d.hash(e.SourceID, e.MessageID)
		cands = d.candidates(hashes[i], cands[:0])
		for _, seq := range cands {
			verify[seq] = append(verify[seq], i)
		}
	}
	if len(verify) > 0 {
		seqs := make([]int64, 0, len(verify))
		for s := range verify {
			seqs = append(seqs, s)
		}
		stored, err := eventKeys(ctx, tx, seqs)
		if err != nil {
			return res, err
		}
		for seq, idx := range verify {
			for _, i := range idx {
				e := b.Events[i]
				if stored[seq] == e.SourceID+"\x00"+e.MessageID {
					res.Duplicate[i] = true
				}
			}
		}
	}

	counts := map[[2]string]int64{}
	last := map[string]int64{} // source → latest arrival accepted
	type added struct {
		i   int
		seq int64
	}
	news := make([]added, 0, len(b.Events))
	for i, e := range b.Events {
		counts[[2]string{e.SourceID, "received"}]++
		if res.Duplicate[i] {
			counts[[2]string{e.SourceID, "duplicate"}]++
			continue
		}
		counts[[2]string{e.SourceID, "accepted"}]++
		counts[[2]string{e.SourceID, kith.DayPrefix + e.ReceivedAt.UTC().Format(time.DateOnly)}]++
		if at := micros(e.ReceivedAt); at > last[e.SourceID] {
			last[e.SourceID] = at
		}
		news = append(news, added{i: i})
	}
	// Multi-row inserts: this single writer holds the write lock, so the
	// rows of one statement get consecutive seqs ending at the last insert
	// id.
	full := tx.StmtContext(ctx, db.appendStmt)
	args := make([]any, 0, appendChunk*eventCols)
	for start := 0; start < len(news); start += appendChunk {
		chunk := news[start:min(start+appendChunk, len(news))]
		args = args[:0]
		for _, a := range chunk {
			e := b.Events[a.i]
			var rev any
			if e.Revenue != nil {
				rev = *e.Revenue
			}
			args = append(args, e.SourceID, e.MessageID, e.Type, e.Event, e.UserID, e.AnonymousID,
				micros(e.Timestamp), micros(e.ReceivedAt), rev, []byte(e.Raw))
		}
		var r sql.Result
		var err error
		if len(chunk) == appendChunk {
			r, err = full.ExecContext(ctx, args...)
		} else {
			r, err = tx.ExecContext(ctx, appendSQL(len(chunk)), args...)
		}
		if err != nil {
			return res, fmt.Errorf("sqlite: append events: %w", err)
		}
		last, err := r.LastInsertId()
		if err != nil {
			return res, fmt.Errorf("sqlite: append events: %w", err)
		}
		for j := range chunk {
			chunk[j].seq = last - int64(len(chunk)-1-j)
		}
		if last > dedupMaxSeq {
			// Roll back rather than store events the index cannot hold.
			return res, fmt.Errorf("sqlite: append events: log seq %d is past the dedup index's limit %d", last, int64(dedupMaxSeq))
		}
	}
	for src, reasons := range b.Rejected {
		for reason, n := range reasons {
			counts[[2]string{src, "received"}] += n
			counts[[2]string{src, "rejected:" + reason}] += n
		}
	}
	for src, n := range b.Suppressed {
		counts[[2]string{src, "received"}] += n
		counts[[2]string{src, "suppressed"}] += n
	}
	cnt := tx.StmtContext(ctx, db.cntStmt)
	for k, n := range counts {
		if _, err := cnt.ExecContext(ctx, k[0], k[1], n); err != nil {
			return res, fmt.Errorf("sqlite: append counters: %w", err)
		}
	}
	for src, at := range last {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (source_id, name, value) VALUES ($1, 'last_received', $2)
			ON CONFLICT (source_id, name) DO UPDATE SET value = max(value, excluded.value)`, src, at); err != nil {
			return res, fmt.Errorf("sqlite: append counters: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("sqlite: append: commit: %w", err)
	}
	res.Seqs = make([]int64, len(b.Events))
	// Only now, with the rows durable, do they enter the dedup index.
	for _, a := range news {
		res.Seqs[a.i] = a.seq
		if err := d.add(hashes[a.i], a.seq, micros(b.Events[a.i].ReceivedAt)); err != nil {
			return res, err // cannot happen: the seqs were checked before the commit
		}
	}
	return res, nil
}

// appendChunk is the number of events per multi-row INSERT.
const (
	appendChunk = 64
	eventCols   = 10
)

// appendSQL is the INSERT of n events.
func appendSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events (source_id, message_id, type, event, user_id, anonymous_id, ts, received_at, revenue, raw) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?,?,?,?,?,?,?,?,?)`)
	}
	return b.String()
}

// eventKeys returns source and messageId of the given log rows.
func eventKeys(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, seqs []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		chunk := seqs[:n]
		seqs = seqs[n:]
		rows, err := q.QueryContext(ctx, `SELECT seq, source_id, message_id FROM events WHERE seq IN (`+placeholders(len(chunk), 1)+`)`, int64Args(chunk)...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: verify dedup hits: %w", err)
		}
		for rows.Next() {
			var seq int64
			var src, mid string
			if err := rows.Scan(&seq, &src, &mid); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: verify dedup hits: %w", err)
			}
			out[seq] = src + "\x00" + mid
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: verify dedup hits: %w", err)
		}
	}
	return out, nil
}

// PruneDedup forgets messageIds received before cutoff. The cutoff is
// stored so that a restart does not bring them back.
func (db *DB) PruneDedup(ctx context.Context, cutoff time.Time) error {
	c := micros(cutoff)
	d := db.dedup
	d.mu.Lock()
	_, err := db.logW.ExecContext(ctx, `INSERT INTO log_meta (key, value) VALUES ('dedup_cutoff', $1)
		ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)`, c)
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sqlite: prune dedup: %w", err)
	}
	return d.prune(ctx, c, db.receivedBefore)
}

// receivedBefore reads which log rows in a seq range were received before
// cutoff, for dedupIndex.prune.
func (db *DB) receivedBefore(ctx context.Context, lo, hi, cutoff int64, mark func(seq int64)) error {
	rows, err := db.logR.QueryContext(ctx, `SELECT seq FROM events WHERE seq BETWEEN $1 AND $2 AND received_at < $3`, lo, hi, cutoff)
	if err != nil {
		return fmt.Errorf("sqlite: prune dedup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return fmt.Errorf("sqlite: prune dedup: %w", err)
		}
		mark(seq)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: prune dedup: %w", err)
	}
	return nil
}

const eventColumns = `seq, source_id, message_id, type, event, user_id, anonymous_id, ts, received_at, revenue, raw`

func scanEvent(rows *sql.Rows) (kith.Message, error) {
	var m kith.Message
	var ts, rat int64
	var rev sql.NullFloat64
	var raw []byte
	if err := rows.Scan(&m.Seq, &m.SourceID, &m.MessageID, &m.Type, &m.Event, &m.UserID, &m.AnonymousID, &ts, &rat, &rev, &raw); err != nil {
		return m, err
	}
	m.Timestamp, m.ReceivedAt = fromMicros(ts), fromMicros(rat)
	if rev.Valid {
		v := rev.Float64
		m.Revenue = &v
	}
	m.Raw = raw
	return m, nil
}

// ReadLog returns up to limit events after the given seq.
func (db *DB) ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read log: %w", err)
	}
	defer rows.Close()
	out := make([]kith.Message, 0, limit)
	for rows.Next() {
		m, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read log: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// LogHead returns the highest seq in the log.
func (db *DB) LogHead(ctx context.Context) (int64, error) {
	var head int64
	if err := db.logR.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq),0) FROM events`).Scan(&head); err != nil {
		return 0, fmt.Errorf("sqlite: log head: %w", err)
	}
	return head, nil
}

// EventsBySeq returns the events with the given seqs in that order.
func (db *DB) EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	byseq := make(map[int64]kith.Message, len(seqs))
	for rest := seqs; len(rest) > 0; {
		n := min(len(rest), 500)
		rows, err := db.logR.QueryContext(ctx, `SELECT `+eventColumns+` FROM events WHERE seq IN (`+placeholders(n, 1)+`)`, int64Args(rest[:n])...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: events by seq: %w", err)
		}
		for rows.Next() {
			m, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: events by seq: %w", err)
			}
			byseq[m.Seq] = m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: events by seq: %w", err)
		}
		rest = rest[n:]
	}
	out := make([]kith.Message, 0, len(seqs))
	for _, s := range seqs {
		if m, ok := byseq[s]; ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// SQLite turns an integer sum that overflows into a REAL, which then no
// longer scans into an int64: counters saturate instead, and a counter
// written as a REAL by an older version is read saturated.
const (
	// saturatingSum is the upsert's new value for a counter.
	saturatingSum = `CASE WHEN excluded.value > 0 AND value > 9223372036854775807 - excluded.value THEN 9223372036854775807 ELSE value + excluded.value END`
	// counterValue reads a counter as an integer.
	counterValue = `CASE WHEN typeof(value) = 'integer' THEN value WHEN value >= 9.2233720368547758e18 THEN 9223372036854775807 WHEN value <= -9.2233720368547758e18 THEN -9223372036854775808 ELSE CAST(value AS INTEGER) END`
)

// Counts returns the accounting per source: ack-path counters from the
// log, processed counters from the state.
func (db *DB) Counts(ctx context.Context) (map[string]kith.Counts, error) {
	out := map[string]kith.Counts{}
	get := func(src string) kith.Counts {
		c, ok := out[src]
		if !ok {
			c.Rejected = map[string]int64{}
		}
		return c
	}
	rows, err := db.logR.QueryContext(ctx, `SELECT source_id, name, `+counterValue+` FROM counters`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var src, name string
		var v int64
		if err := rows.Scan(&src, &name, &v); err != nil {
			return nil, fmt.Errorf("sqlite: counts: %w", err)
		}
		c := get(src)
		switch {
		case name == "received":
			c.Received = v
		case name == "accepted":
			c.Accepted = v
		case name == "duplicate":
			c.Duplicate = v
		case name == "last_received":
			c.LastEventAt = fromMicros(v)
		case strings.HasPrefix(name, kith.DayPrefix):
			continue // per-day counts: DailyEvents
		case name == "suppressed":
			c.Suppressed = v
		case strings.HasPrefix(name, "rejected:"):
			c.Rejected[strings.TrimPrefix(name, "rejected:")] = v
		}
		out[src] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: counts: %w", err)
	}
	prow, err := db.stateR.QueryContext(ctx, `SELECT source_id, value FROM processed`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: processed counts: %w", err)
	}
	defer prow.Close()
	for prow.Next() {
		var src string
		var v int64
		if err := prow.Scan(&src, &v); err != nil {
			return nil, fmt.Errorf("sqlite: processed counts: %w", err)
		}
		c := get(src)
		c.Processed = v
		out[src] = c
	}
	return out, prow.Err()
}

// placeholders returns "$from, $from+1, …" for n parameters.
func placeholders(n, from int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

func int64Args(v []int64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// DailyEvents implements kith.Store from the per-day counters.
func (db *DB) DailyEvents(ctx context.Context, since time.Time) (map[string]int64, error) {
	rows, err := db.logR.QueryContext(ctx, `SELECT name, sum(value) FROM counters WHERE name >= $1 AND name < $2 GROUP BY name`,
		kith.DayPrefix+since.UTC().Format(time.DateOnly), kith.DayPrefix+"~")
	if err != nil {
		return nil, fmt.Errorf("sqlite: daily events: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("sqlite: daily events: %w", err)
		}
		out[strings.TrimPrefix(name, kith.DayPrefix)] = n
	}
	return out, rows.Err()
}
