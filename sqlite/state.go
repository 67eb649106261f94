package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/kithcdp/kith"
)

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// IndexCursor returns the seq of the last log event applied to the state.
func (db *DB) IndexCursor(ctx context.Context) (int64, error) {
	return readCursor(ctx, db.stateR)
}

func readCursor(ctx context.Context, q querier) (int64, error) {
	var b []byte
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'index_cursor'`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("sqlite: read index cursor: %w", err)
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("sqlite: corrupt index cursor")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// LookupIdentifiers returns owner and canonical profile of existing keys.
// The identifier index names each key's candidate rows; a row counts only
// if it holds the key.
func (db *DB) LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error) {
	if err := db.idents.usable(); err != nil {
		return nil, fmt.Errorf("sqlite: lookup identifiers: %w", err)
	}
	out := make(map[kith.IdentKey]kith.IdentOwner, len(keys))
	// Keys that share a fingerprint share candidates: a row counts for
	// the key it holds, whichever key named it.
	asked := make(map[kith.IdentKey]bool, len(keys))
	rowSet := make(map[int64]bool)
	var cand []int64
	for _, k := range keys {
		asked[k] = true
		cand = db.idents.candidates(k, cand[:0])
		for _, id := range cand {
			rowSet[id] = true
		}
	}
	ids := make([]int64, 0, len(rowSet))
	for id := range rowSet {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), 500)
		rows, err := db.stateR.QueryContext(ctx, `SELECT i.key, i.profile_id, p.canonical_id FROM identifiers i
			JOIN profiles p ON p.id = i.profile_id WHERE i.id IN (`+placeholders(n, 1)+`)`, int64Args(rest[:n])...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: lookup identifiers: %w", err)
		}
		for rows.Next() {
			var kb []byte
			var o kith.IdentOwner
			if err := rows.Scan(&kb, &o.ProfileID, &o.Canonical); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: lookup identifiers: %w", err)
			}
			var k kith.IdentKey
			if len(kb) == len(k) {
				copy(k[:], kb)
				if asked[k] {
					out[k] = o
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: lookup identifiers: %w", err)
		}
		rest = rest[n:]
	}
	return out, nil
}

// ApplyIndexBatch applies b in one transaction with the cursor move.
func (db *DB) ApplyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error {
	tx, err := db.stateW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply index batch: begin: %w", err)
	}
	defer tx.Rollback()
	cur, err := readCursor(ctx, tx)
	if err != nil {
		return err
	}
	if cur != from {
		return kith.Errorf(kith.ECONFLICT, "index cursor is at %d, batch was derived from %d", cur, from)
	}
	added, err := db.applyRows(ctx, tx, b)
	if err != nil {
		return err
	}
	for src, n := range b.Processed {
		if _, err := tx.ExecContext(ctx, `INSERT INTO processed (source_id, value) VALUES ($1,$2)
			ON CONFLICT (source_id) DO UPDATE SET value = value + excluded.value`, src, n); err != nil {
			return fmt.Errorf("sqlite: apply processed counts: %w", err)
		}
	}
	var cb [8]byte
	binary.BigEndian.PutUint64(cb[:], uint64(b.Cursor))
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('index_cursor', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, cb[:]); err != nil {
		return fmt.Errorf("sqlite: apply index cursor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply index batch: commit: %w", err)
	}
	return db.idents.publish(added)
}

// Canonical resolves a profile id through the merge graph.
func (db *DB) Canonical(ctx context.Context, profileID string) (string, error) {
	var c string
	err := db.stateR.QueryRowContext(ctx, `SELECT canonical_id FROM profiles WHERE id = $1`, profileID).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", kith.Errorf(kith.ENOTFOUND, "profile %q not found", profileID)
	} else if err != nil {
		return "", fmt.Errorf("sqlite: canonical profile: %w", err)
	}
	return c, nil
}

// members returns the ids of the profiles that resolve to canonicalID.
func (db *DB) members(ctx context.Context, canonicalID string) ([]string, error) {
	rows, err := db.stateR.QueryContext(ctx, `SELECT id FROM profiles WHERE canonical_id = $1 ORDER BY id`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: profile members: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: profile members: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: profile members: %w", err)
	}
	if len(out) == 0 {
		return nil, kith.Errorf(kith.ENOTFOUND, "profile %q not found", canonicalID)
	}
	return out, nil
}

// exists fails with ENOTFOUND unless canonicalID is a canonical profile.
func (db *DB) exists(ctx context.Context, canonicalID string) error {
	var ok bool
	if err := db.stateR.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM profiles WHERE canonical_id = $1)`, canonicalID).Scan(&ok); err != nil {
		return fmt.Errorf("sqlite: profile: %w", err)
	}
	if !ok {
		return kith.Errorf(kith.ENOTFOUND, "profile %q not found", canonicalID)
	}
	return nil
}

// memberSet selects the profiles merged into the canonical profile $1. It
// is a subquery rather than bound ids, so a cluster of any size works.
const memberSet = `SELECT id FROM profiles WHERE canonical_id = $1`

// Profile summarises a unified profile.
func (db *DB) Profile(ctx context.Context, canonicalID string) (kith.ProfileSummary, error) {
	ms, err := db.members(ctx, canonicalID)
	if err != nil {
		return kith.ProfileSummary{}, err
	}
	s := kith.ProfileSummary{ID: canonicalID, Members: ms}
	in := memberSet
	args := []any{canonicalID}
	var created int64
	if err := db.stateR.QueryRowContext(ctx, `SELECT created_at FROM profiles WHERE id = $1`, canonicalID).Scan(&created); err != nil {
		return s, fmt.Errorf("sqlite: profile: %w", err)
	}
	s.CreatedAt = fromMicros(created)
	if err := db.stateR.QueryRowContext(ctx, `SELECT COUNT(*) FROM identifiers WHERE profile_id IN (`+in+`)`, args...).Scan(&s.Identifiers); err != nil {
		return s, fmt.Errorf("sqlite: profile: %w", err)
	}
	if err := db.stateR.QueryRowContext(ctx, `SELECT COUNT(DISTINCT key) FROM traits WHERE profile_id IN (`+in+`)`, args...).Scan(&s.Traits); err != nil {
		return s, fmt.Errorf("sqlite: profile: %w", err)
	}
	var first, last sql.NullInt64
	if err := db.stateR.QueryRowContext(ctx, `SELECT COUNT(*), MIN(ts), MAX(ts) FROM timeline WHERE profile_id IN (`+in+`)`, args...).Scan(&s.Events, &first, &last); err != nil {
		return s, fmt.Errorf("sqlite: profile: %w", err)
	}
	if first.Valid {
		s.FirstEventAt, s.LastEventAt = fromMicros(first.Int64), fromMicros(last.Int64)
	}
	return s, nil
}

// Traits returns, per key, the member value with the latest event time.
func (db *DB) Traits(ctx context.Context, canonicalID string) ([]kith.Trait, error) {
	if err := db.exists(ctx, canonicalID); err != nil {
		return nil, err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT profile_id, key, value, source_id, message_id, event_time FROM traits
		WHERE profile_id IN (`+memberSet+`) ORDER BY key, event_time DESC, profile_id`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: traits: %w", err)
	}
	defer rows.Close()
	var out []kith.Trait
	for rows.Next() {
		var t kith.Trait
		var v []byte
		var et int64
		if err := rows.Scan(&t.ProfileID, &t.Key, &v, &t.SourceID, &t.MessageID, &et); err != nil {
			return nil, fmt.Errorf("sqlite: traits: %w", err)
		}
		t.Value, t.EventTime, t.Provenance = v, fromMicros(et), kith.ProvenanceEvent
		if len(out) > 0 && out[len(out)-1].Key == t.Key {
			// An older value of the key, from another member: kept.
			out[len(out)-1].Others = append(out[len(out)-1].Others, t)
			continue
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: traits: %w", err)
	}
	ms, err := db.members(ctx, canonicalID)
	if err != nil {
		return nil, err
	}
	predicted, err := db.predictedTraits(ctx, ms)
	if err != nil {
		return nil, err
	}
	return kith.WithPredicted(out, predicted), nil
}

// Identities lists the identifiers of all members.
func (db *DB) Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error) {
	if err := db.exists(ctx, canonicalID); err != nil {
		return nil, err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT type, value, profile_id, source_id, message_id, first_seen, last_seen FROM identifiers
		WHERE profile_id IN (`+memberSet+`)`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: identities: %w", err)
	}
	defer rows.Close()
	var out []kith.Identity
	for rows.Next() {
		var id kith.Identity
		var fs, ls int64
		if err := rows.Scan(&id.Type, &id.Value, &id.ProfileID, &id.SourceID, &id.MessageID, &fs, &ls); err != nil {
			return nil, fmt.Errorf("sqlite: identities: %w", err)
		}
		id.FirstSeen, id.LastSeen = fromMicros(fs), fromMicros(ls)
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: identities: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].Value < out[j].Value
	})
	return out, nil
}

// Merges lists the merges into any member, oldest first.
func (db *DB) Merges(ctx context.Context, canonicalID string) ([]kith.Merge, error) {
	if err := db.exists(ctx, canonicalID); err != nil {
		return nil, err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT id, survivor, absorbed, source_id, message_id, ident_type, ident, at FROM merges
		WHERE survivor IN (`+memberSet+`) ORDER BY id`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: merges: %w", err)
	}
	defer rows.Close()
	var out []kith.Merge
	for rows.Next() {
		var m kith.Merge
		var at, id int64
		if err := rows.Scan(&id, &m.Survivor, &m.Absorbed, &m.SourceID, &m.MessageID, &m.IdentType, &m.Ident, &at); err != nil {
			return nil, fmt.Errorf("sqlite: merges: %w", err)
		}
		m.ID = fmt.Sprintf("m_%d", id)
		m.At = fromMicros(at)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Timeline returns a page of the unified timeline, newest first.
func (db *DB) Timeline(ctx context.Context, canonicalID string, q kith.TimelineQuery) ([]kith.TimelineEntry, error) {
	if err := db.exists(ctx, canonicalID); err != nil {
		return nil, err
	}
	args := []any{canonicalID}
	var where strings.Builder
	where.WriteString(`profile_id IN (` + memberSet + `)`)
	cond := func(c string, v any) {
		args = append(args, v)
		where.WriteString(" AND " + strings.Replace(c, "?", fmt.Sprintf("$%d", len(args)), 1))
	}
	if !q.Start.IsZero() {
		cond("ts >= ?", micros(q.Start))
	}
	if !q.End.IsZero() {
		cond("ts < ?", micros(q.End))
	}
	if q.Type != "" {
		cond("type = ?", q.Type)
	}
	if q.Event != "" {
		cond("event = ?", q.Event)
	}
	if q.Before != nil {
		args = append(args, micros(q.Before.Timestamp), q.Before.Seq)
		fmt.Fprintf(&where, " AND (ts, seq) < ($%d, $%d)", len(args)-1, len(args))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	rows, err := db.stateR.QueryContext(ctx, `SELECT profile_id, ts, seq, type, event FROM timeline WHERE `+where.String()+
		fmt.Sprintf(` ORDER BY ts DESC, seq DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: timeline: %w", err)
	}
	defer rows.Close()
	var out []kith.TimelineEntry
	for rows.Next() {
		var e kith.TimelineEntry
		var ts int64
		if err := rows.Scan(&e.ProfileID, &ts, &e.Seq, &e.Type, &e.Event); err != nil {
			return nil, fmt.Errorf("sqlite: timeline: %w", err)
		}
		e.Timestamp = fromMicros(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Secret returns the identifier-hashing key, creating it on first use.
func (db *DB) Secret(ctx context.Context) ([]byte, error) {
	db.secretMu.Lock()
	defer db.secretMu.Unlock()
	if db.secret != nil {
		return db.secret, nil
	}
	var b []byte
	err := db.logR.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'secret'`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		nb := make([]byte, 32)
		if _, err := rand.Read(nb); err != nil {
			return nil, fmt.Errorf("sqlite: create secret: %w", err)
		}
		if _, err := db.logW.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('secret', $1) ON CONFLICT (key) DO NOTHING`, nb); err != nil {
			return nil, fmt.Errorf("sqlite: create secret: %w", err)
		}
		err = db.logW.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'secret'`).Scan(&b)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: read secret: %w", err)
	}
	db.secret = b
	return b, nil
}

// rowsPerInsert is how many rows one multi-row INSERT carries: per-statement
// overhead dominates single-row inserts in a large batch.
const rowsPerInsert = 200

// insertRows inserts rows with multi-row VALUES statements, reusing one
// prepared statement for the full chunks.
func insertRows(ctx context.Context, tx *sql.Tx, insert string, ncols int, conflict string, rows int, args func(i int) []any) error {
	build := func(n int) string {
		var b strings.Builder
		b.WriteString(insert)
		b.WriteString(" VALUES ")
		for r := 0; r < n; r++ {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for c := 0; c < ncols; c++ {
				if c > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('?')
			}
			b.WriteByte(')')
		}
		b.WriteByte(' ')
		b.WriteString(conflict)
		return b.String()
	}
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	vals := make([]any, 0, rowsPerInsert*ncols)
	for start := 0; start < rows; start += rowsPerInsert {
		n := min(rowsPerInsert, rows-start)
		vals = vals[:0]
		for i := start; i < start+n; i++ {
			vals = append(vals, args(i)...)
		}
		var err error
		if n == rowsPerInsert {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, build(n)); err != nil {
					return fmt.Errorf("sqlite: apply: %s: %w", insert, err)
				}
			}
			_, err = full.ExecContext(ctx, vals...)
		} else {
			_, err = tx.ExecContext(ctx, build(n), vals...)
		}
		if err != nil {
			return fmt.Errorf("sqlite: apply: %s: %w", insert, err)
		}
		// A large batch takes a while; let request goroutines run between
		// statements rather than wait for the scheduler's 10 ms preemption.
		runtime.Gosched()
	}
	return nil
}

// applyRows inserts a batch's derived rows (not its cursor or counts). It
// returns the identifier rows it inserted, for the identifier index once
// tx commits.
func (db *DB) applyRows(ctx context.Context, tx *sql.Tx, b kith.IndexBatch) ([]identRow, error) {
	exec := func(what, insert string, ncols int, conflict string, rows int, args func(i int) []any) error {
		return insertRows(ctx, tx, insert, ncols, conflict, rows, args)
	}
	if err := exec("profiles", `INSERT INTO profiles (id, canonical_id, created_at)`, 3, ``, len(b.Profiles), func(i int) []any {
		p := b.Profiles[i]
		return []any{p.ID, p.ID, micros(p.CreatedAt)}
	}); err != nil {
		return nil, err
	}
	added, err := db.applyIdentifiers(ctx, tx, b.Identifiers)
	if err != nil {
		return nil, err
	}
	if len(b.Merges) > 0 {
		// In order (a later merge may move what an earlier one built), with
		// the two statements prepared once per batch.
		ins, err := tx.PrepareContext(ctx, `INSERT INTO merges (survivor, absorbed, source_id, message_id, ident_type, ident, at)
			VALUES ($1,$2,$3,$4,$5,$6,$7)`)
		if err != nil {
			return nil, fmt.Errorf("sqlite: apply merge: %w", err)
		}
		defer ins.Close()
		move, err := tx.PrepareContext(ctx, `UPDATE profiles SET canonical_id = $1 WHERE canonical_id = $2`)
		if err != nil {
			return nil, fmt.Errorf("sqlite: apply merge: %w", err)
		}
		defer move.Close()
		for _, m := range b.Merges {
			if _, err := ins.ExecContext(ctx, m.Survivor, m.Absorbed, m.SourceID, m.MessageID, m.IdentType, m.Ident, micros(m.At)); err != nil {
				return nil, fmt.Errorf("sqlite: apply merge: %w", err)
			}
			if _, err := move.ExecContext(ctx, m.Survivor, m.Absorbed); err != nil {
				return nil, fmt.Errorf("sqlite: apply merge: %w", err)
			}
		}
	}
	if err := exec("traits", `INSERT INTO traits (profile_id, key, value, source_id, message_id, event_time)`, 6,
		`ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value, source_id = excluded.source_id,
			message_id = excluded.message_id, event_time = excluded.event_time
		WHERE excluded.event_time >= traits.event_time`, len(b.Traits), func(i int) []any {
			t := b.Traits[i]
			return []any{t.ProfileID, t.Key, []byte(t.Value), t.SourceID, t.MessageID, micros(t.EventTime)}
		}); err != nil {
		return nil, err
	}
	if err := exec("timeline", `INSERT OR IGNORE INTO timeline (profile_id, ts, seq, type, event)`, 5, ``, len(b.Timeline), func(i int) []any {
		e := b.Timeline[i]
		return []any{e.ProfileID, micros(e.Timestamp), e.Seq, e.Type, e.Event}
	}); err != nil {
		return nil, err
	}
	if err := exec("orders", `INSERT OR IGNORE INTO orders (profile_id, ts, seq, source_id, order_id, revenue, currency, items)`, 8, ``, len(b.Orders), func(i int) []any {
		o := b.Orders[i]
		return []any{o.ProfileID, micros(o.Timestamp), o.Seq, o.SourceID, o.OrderID, o.Revenue, o.Currency, encodeItems(o.Items)}
	}); err != nil {
		return nil, err
	}
	if err := exec("consents", `INSERT OR IGNORE INTO consents (profile_id, seq, category, granted, at, source_id, message_id)`, 7, ``, len(b.Consents), func(i int) []any {
		c := b.Consents[i]
		return []any{c.ProfileID, c.Seq, c.Category, c.Granted, micros(c.At), c.SourceID, c.MessageID}
	}); err != nil {
		return nil, err
	}
	return added, nil
}

// applyIdentifiers writes a batch's identifier rows: one the table holds
// (found through the identifier index, checked by its key) has its first
// and last seen widened; a new one is appended with the next rowid. It
// returns the appended rows.
func (db *DB) applyIdentifiers(ctx context.Context, tx *sql.Tx, idents []kith.IdentifierUpsert) ([]identRow, error) {
	if len(idents) == 0 {
		return nil, nil
	}
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM identifiers`).Scan(&next); err != nil {
		return nil, fmt.Errorf("sqlite: apply identifiers: %w", err)
	}
	widen, err := tx.PrepareContext(ctx, `UPDATE identifiers SET first_seen = MIN(first_seen, $1), last_seen = MAX(last_seen, $2)
		WHERE id = $3 AND key = $4`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: apply identifiers: %w", err)
	}
	defer widen.Close()
	var (
		added []identRow
		fresh []kith.IdentifierUpsert
		at    = map[kith.IdentKey]int{} // index in fresh
		cand  []int64
	)
	for _, u := range idents {
		if i, ok := at[u.Key]; ok {
			f := &fresh[i]
			if u.FirstSeen.Before(f.FirstSeen) {
				f.FirstSeen = u.FirstSeen
			}
			if u.LastSeen.After(f.LastSeen) {
				f.LastSeen = u.LastSeen
			}
			continue
		}
		found := false
		cand = db.idents.candidates(u.Key, cand[:0])
		for _, id := range cand {
			res, err := widen.ExecContext(ctx, micros(u.FirstSeen), micros(u.LastSeen), id, u.Key[:])
			if err != nil {
				return nil, fmt.Errorf("sqlite: apply identifiers: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return nil, fmt.Errorf("sqlite: apply identifiers: %w", err)
			} else if n > 0 {
				found = true
				break
			}
		}
		if !found {
			at[u.Key] = len(fresh)
			fresh = append(fresh, u)
		}
	}
	if err := db.idents.room(len(fresh), next+int64(len(fresh))); err != nil {
		return nil, err
	}
	added = make([]identRow, len(fresh))
	for i, u := range fresh {
		added[i] = identRow{key: u.Key, id: next + 1 + int64(i)}
	}
	err = insertRows(ctx, tx, `INSERT INTO identifiers (id, key, type, value, profile_id, source_id, message_id, first_seen, last_seen)`, 9, ``,
		len(fresh), func(i int) []any {
			u := fresh[i]
			return []any{added[i].id, u.Key[:], u.Type, u.Value, u.ProfileID, u.SourceID, u.MessageID, micros(u.FirstSeen), micros(u.LastSeen)}
		})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// Consents implements kith.ProfileStore.
func (db *DB) Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error) {
	if err := db.exists(ctx, canonicalID); err != nil {
		return nil, err
	}
	rows, err := db.stateR.QueryContext(ctx, `SELECT profile_id, seq, category, granted, at, source_id, message_id FROM consents
		WHERE profile_id IN (`+memberSet+`) ORDER BY at, seq, category`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: consents: %w", err)
	}
	defer rows.Close()
	var out []kith.Consent
	for rows.Next() {
		var c kith.Consent
		var at int64
		if err := rows.Scan(&c.ProfileID, &c.Seq, &c.Category, &c.Granted, &at, &c.SourceID, &c.MessageID); err != nil {
			return nil, fmt.Errorf("sqlite: consents: %w", err)
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	return out, rows.Err()
}
