package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// encodeDefinition renders d as the JSON document stored for it. HTML
// escaping is off so that a condition or text comparing with < or > is
// stored as written rather than as \u003c. A condition that is not valid
// JSON is the caller's mistake, hence EINVALID.
func encodeDefinition(d kith.Definition) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, kith.Errorf(kith.EINVALID, "%s %q: %v", d.Kind, d.Key, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeDefinition reverses encodeDefinition, returning times in UTC and a
// missing condition as nil rather than the JSON literal null.
func decodeDefinition(b []byte) (kith.Definition, error) {
	var d kith.Definition
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	if string(d.Condition) == "null" {
		d.Condition = nil
	}
	for _, t := range [...]*time.Time{&d.CreatedAt, &d.UpdatedAt, &d.Backfill.StartedAt, &d.Backfill.FinishedAt} {
		*t = t.UTC()
	}
	return d, nil
}

// SaveDefinition creates or replaces the definition (d.Kind, d.Key) in
// audiences.db. The store keeps d as given; bumping Version is the
// caller's job, so that a running backfill can tell it is out of date.
func (db *DB) SaveDefinition(ctx context.Context, d kith.Definition) error {
	body, err := encodeDefinition(d)
	if err != nil {
		return fmt.Errorf("sqlite: save definition: %w", err)
	}
	err = db.durably(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO definitions (kind, key, body) VALUES ($1,$2,$3)
		ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body`, d.Kind, d.Key, body)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: save definition: %w", err)
	}
	return nil
}

// durably runs f on the audiences.db writer with synchronous=FULL, so
// its commit is on disk when it returns. The engine's own batches commit
// with NORMAL: they carry the engine's cursor, so a power cut that loses
// the last of them only makes the engine re-read that stretch of the log.
// Definitions are the user's and cannot be re-derived.
func (db *DB) durably(ctx context.Context, f func(*sql.Conn) error) error {
	c, err := db.audW.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	defer c.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`)
	return f(c)
}

// DeleteDefinition removes the definition (kind, key), or fails with
// ENOTFOUND if there is none. Memberships and history of an audience stay:
// only the engine writes those, by applying exits.
func (db *DB) DeleteDefinition(ctx context.Context, kind, key string) error {
	var res sql.Result
	err := db.durably(ctx, func(c *sql.Conn) (err error) {
		res, err = c.ExecContext(ctx, `DELETE FROM definitions WHERE kind = $1 AND key = $2`, kind, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete definition: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: delete definition: %w", err)
	} else if n == 0 {
		return kith.Errorf(kith.ENOTFOUND, "%s %q not found", kind, key)
	}
	return nil
}

// Definitions lists every definition, ordered by kind and then key (the
// table's primary key).
func (db *DB) Definitions(ctx context.Context) ([]kith.Definition, error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT kind, key, body FROM definitions ORDER BY kind, key`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: definitions: %w", err)
	}
	defer rows.Close()
	var out []kith.Definition
	for rows.Next() {
		var kind, key string
		var body []byte
		if err := rows.Scan(&kind, &key, &body); err != nil {
			return nil, fmt.Errorf("sqlite: definitions: %w", err)
		}
		d, err := decodeDefinition(body)
		if err != nil {
			return nil, fmt.Errorf("sqlite: definition %s %q: %w", kind, key, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: definitions: %w", err)
	}
	return out, nil
}

// AudienceCursor returns the log position of the last batch the audience
// engine applied with a cursor, 0 before the first.
func (db *DB) AudienceCursor(ctx context.Context) (int64, error) {
	var cur int64
	err := db.audR.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'cursor'`).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("sqlite: audience cursor: %w", err)
	}
	return cur, nil
}

// lastStates folds repeated profiles of one batch into their last state,
// as applying the states one after another would, and splits the result
// into states to store and profiles whose state is deleted (nil State).
func lastStates(in []kith.ProfileState) (upserts []kith.ProfileState, deletes []string) {
	last := make(map[string]int, len(in))
	for i, s := range in {
		last[s.ProfileID] = i
	}
	for i, s := range in {
		if last[s.ProfileID] != i {
			continue
		}
		if s.State == nil {
			deletes = append(deletes, s.ProfileID)
		} else {
			upserts = append(upserts, s)
		}
	}
	return upserts, deletes
}

// ApplyAudienceBatch applies b in one audiences.db transaction: the states,
// then every membership change in order (its history row, the member row
// and the audience's size), then the cursor when b.Cursor > 0. An entry for
// a profile that is already a member, or an exit for one that is not,
// rolls the whole batch back with ECONFLICT: it means the engine's view of
// the memberships and the store's have drifted apart, and applying the
// rest would make the history contradict the member lists.
//
// Member rows are written one prepared statement per change, since each
// change must see the ones before it (an exit and a re-entry in one
// batch); states and history rows go in multi-row inserts. A backfill
// applies hundreds of thousands of changes per batch this way.
func (db *DB) ApplyAudienceBatch(ctx context.Context, b kith.AudienceBatch) error {
	tx, err := db.audW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply audience batch: begin: %w", err)
	}
	defer tx.Rollback()

	upserts, deletes := lastStates(b.States)
	if err := insertRows(ctx, tx, `INSERT INTO states (profile_id, state)`, 2,
		`ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state`,
		len(upserts), func(i int) []any { return []any{upserts[i].ProfileID, upserts[i].State} }); err != nil {
		return err
	}
	if len(deletes) > 0 {
		del, err := tx.PrepareContext(ctx, `DELETE FROM states WHERE profile_id = $1`)
		if err != nil {
			return fmt.Errorf("sqlite: apply audience batch: %w", err)
		}
		defer del.Close()
		for _, id := range deletes {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("sqlite: apply audience batch: delete state: %w", err)
			}
		}
	}

	if err := applyMemberships(ctx, tx, b.Changes); err != nil {
		return err
	}
	if err := insertRows(ctx, tx, `INSERT INTO changes (audience, profile_id, entered, at, cause, cause_seq)`, 6, ``,
		len(b.Changes), func(i int) []any {
			c := b.Changes[i]
			return []any{c.Audience, c.ProfileID, c.Entered, micros(c.At), c.Cause, c.CauseSeq}
		}); err != nil {
		return err
	}

	if b.Cursor > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('cursor', $1)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, b.Cursor); err != nil {
			return fmt.Errorf("sqlite: apply audience batch: cursor: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply audience batch: commit: %w", err)
	}
	return nil
}

// applyMemberships applies changes to the member lists in order and then
// moves the sizes by the net count per audience.
func applyMemberships(ctx context.Context, tx *sql.Tx, changes []kith.MembershipChange) error {
	if len(changes) == 0 {
		return nil
	}
	enter, err := tx.PrepareContext(ctx, `INSERT INTO members (audience, profile_id, since) VALUES ($1,$2,$3)
		ON CONFLICT (audience, profile_id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("sqlite: apply audience batch: %w", err)
	}
	defer enter.Close()
	exit, err := tx.PrepareContext(ctx, `DELETE FROM members WHERE audience = $1 AND profile_id = $2`)
	if err != nil {
		return fmt.Errorf("sqlite: apply audience batch: %w", err)
	}
	defer exit.Close()

	sizes := map[string]int64{}
	for i, c := range changes {
		var res sql.Result
		if c.Entered {
			res, err = enter.ExecContext(ctx, c.Audience, c.ProfileID, micros(c.At))
		} else {
			res, err = exit.ExecContext(ctx, c.Audience, c.ProfileID)
		}
		if err != nil {
			return fmt.Errorf("sqlite: apply audience batch: change %d: %w", i, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: apply audience batch: change %d: %w", i, err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: apply audience batch: %w", membershipConflict(i, c))
		}
		if c.Entered {
			sizes[c.Audience]++
		} else {
			sizes[c.Audience]--
		}
		if i%4096 == 4095 {
			// Let request goroutines run during a long backfill batch.
			runtime.Gosched()
		}
	}

	for _, a := range slices.Sorted(mapKeys(sizes)) {
		if sizes[a] == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sizes (audience, n) VALUES ($1,$2)
			ON CONFLICT (audience) DO UPDATE SET n = n + excluded.n`, a, sizes[a]); err != nil {
			return fmt.Errorf("sqlite: apply audience batch: size of %q: %w", a, err)
		}
	}
	return nil
}

// membershipConflict describes change i that contradicts the member list.
func membershipConflict(i int, c kith.MembershipChange) error {
	if c.Entered {
		return kith.Errorf(kith.ECONFLICT, "change %d: profile %s entered audience %q but is already a member", i, c.ProfileID, c.Audience)
	}
	return kith.Errorf(kith.ECONFLICT, "change %d: profile %s exited audience %q but is not a member", i, c.ProfileID, c.Audience)
}

// LoadStates returns the stored states of those of ids that have one,
// looking them up 500 at a time.
func (db *DB) LoadStates(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), 500)
		args := make([]any, n)
		for i, id := range rest[:n] {
			args[i] = id
		}
		rows, err := db.audR.QueryContext(ctx, `SELECT profile_id, state FROM states WHERE profile_id IN (`+placeholders(n, 1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: load states: %w", err)
		}
		for rows.Next() {
			var id string
			var st []byte
			if err := rows.Scan(&id, &st); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: load states: %w", err)
			}
			out[id] = nonNil(st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: load states: %w", err)
		}
		rest = rest[n:]
	}
	return out, nil
}

// nonNil keeps a stored empty state distinguishable from a deleted one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// scanPage is how many states ScanStates reads per query.
const scanPage = 1000

// ScanStates calls fn for every stored state in profile id order. It reads
// in pages, each a short read of its own, so a scan over millions of
// states pins no snapshot (and no WAL growth) for its whole duration and fn
// may write to the store meanwhile; a state written during the scan is
// visited if its id sorts after the current page.
func (db *DB) ScanStates(ctx context.Context, fn func(id string, state []byte) error) error {
	type state struct {
		id string
		st []byte
	}
	page := make([]state, 0, scanPage)
	after := ""
	for {
		page = page[:0]
		rows, err := db.audR.QueryContext(ctx, `SELECT profile_id, state FROM states WHERE profile_id > $1 ORDER BY profile_id LIMIT $2`, after, scanPage)
		if err != nil {
			return fmt.Errorf("sqlite: scan states: %w", err)
		}
		for rows.Next() {
			var s state
			if err := rows.Scan(&s.id, &s.st); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: scan states: %w", err)
			}
			page = append(page, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: scan states: %w", err)
		}
		for _, s := range page {
			if err := fn(s.id, nonNil(s.st)); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		after = page[len(page)-1].id
	}
}

// Members lists up to limit members of audience in profile id order,
// starting after the profile id after ("" for the first page): keyset
// paging on the primary key, so every page costs the same.
func (db *DB) Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT profile_id, since FROM members
		WHERE audience = $1 AND profile_id > $2 ORDER BY profile_id LIMIT $3`, audience, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	defer rows.Close()
	var out []kith.Member
	for rows.Next() {
		m := kith.Member{Audience: audience}
		var since int64
		if err := rows.Scan(&m.ProfileID, &since); err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		m.Since = fromMicros(since)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	return out, nil
}

// AudienceSize returns the number of members of audience, kept in step
// with the member list so that no count over it is needed; 0 for an
// audience without members or unknown.
func (db *DB) AudienceSize(ctx context.Context, audience string) (int64, error) {
	var n int64
	err := db.audR.QueryRowContext(ctx, `SELECT n FROM sizes WHERE audience = $1`, audience).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("sqlite: audience size: %w", err)
	}
	return n, nil
}


// MembershipChanges returns up to limit changes with Seq > after in Seq
// order, only of audience and of profileID where those are not "". The
// query names only the filters given, so that SQLite can walk the
// (audience, seq) or (profile_id, seq) index instead of the whole history.
func (db *DB) MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	var q strings.Builder
	q.WriteString(`SELECT seq, audience, profile_id, entered, at, cause, cause_seq FROM changes WHERE seq > $1`)
	args := []any{after}
	if audience != "" {
		args = append(args, audience)
		fmt.Fprintf(&q, ` AND audience = $%d`, len(args))
	}
	if profileID != "" {
		args = append(args, profileID)
		fmt.Fprintf(&q, ` AND profile_id = $%d`, len(args))
	}
	args = append(args, limit)
	fmt.Fprintf(&q, ` ORDER BY seq LIMIT $%d`, len(args))
	rows, err := db.audR.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: membership changes: %w", err)
	}
	defer rows.Close()
	var out []kith.MembershipChange
	for rows.Next() {
		var c kith.MembershipChange
		var at int64
		if err := rows.Scan(&c.Seq, &c.Audience, &c.ProfileID, &c.Entered, &at, &c.Cause, &c.CauseSeq); err != nil {
			return nil, fmt.Errorf("sqlite: membership changes: %w", err)
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: membership changes: %w", err)
	}
	return out, nil
}
