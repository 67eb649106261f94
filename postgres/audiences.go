package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// lockAudience is the advisory lock class (beside lockLog and lockMigrate)
// that serialises audience batches, so that the seqs of the membership
// history are assigned in commit order and a reader of "seq > after" never
// skips a change that commits late.
const lockAudience = 0x6b69746a

// encodeDefinition renders d as the JSON document stored for it. HTML
// escaping is off so that a condition or text comparing with < or > is
// stored as written rather than as \u003c. A condition that is not valid
// JSON is the caller's mistake, hence EINVALID.
func encodeDefinition(d kith.Definition) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return "", kith.Errorf(kith.EINVALID, "%s %q: %v", d.Kind, d.Key, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
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

// SaveDefinition creates or replaces the definition (d.Kind, d.Key). The
// store keeps d as given; bumping Version is the caller's job, so that a
// running backfill can tell it is out of date.
func (db *DB) SaveDefinition(ctx context.Context, d kith.Definition) error {
	body, err := encodeDefinition(d)
	if err != nil {
		return fmt.Errorf("postgres: save definition: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO audience_definitions (kind, key, body) VALUES ($1, $2, $3::json)
		ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body`, d.Kind, d.Key, body); err != nil {
		return fmt.Errorf("postgres: save definition: %w", err)
	}
	return nil
}

// DeleteDefinition removes the definition (kind, key), or fails with
// ENOTFOUND if there is none. Memberships and history of an audience stay:
// only the engine writes those, by applying exits.
func (db *DB) DeleteDefinition(ctx context.Context, kind, key string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM audience_definitions WHERE kind = $1 AND key = $2`, kind, key)
	if err != nil {
		return fmt.Errorf("postgres: delete definition: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return kith.Errorf(kith.ENOTFOUND, "%s %q not found", kind, key)
	}
	return nil
}

// Definitions lists every definition, ordered by kind and then key (byte
// order, like the embedded store).
func (db *DB) Definitions(ctx context.Context) ([]kith.Definition, error) {
	rows, err := db.pool.Query(ctx, `SELECT kind, key, body::text FROM audience_definitions ORDER BY kind, key`)
	if err != nil {
		return nil, fmt.Errorf("postgres: definitions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Definition, error) {
		var kind, key, body string
		if err := row.Scan(&kind, &key, &body); err != nil {
			return kith.Definition{}, err
		}
		d, err := decodeDefinition([]byte(body))
		if err != nil {
			return d, fmt.Errorf("%s %q: %w", kind, key, err)
		}
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: definitions: %w", err)
	}
	return out, nil
}

// AudienceCursor returns the log position of the last batch the audience
// engine applied with a cursor, 0 before the first.
func (db *DB) AudienceCursor(ctx context.Context) (int64, error) {
	var cur int64
	err := db.pool.QueryRow(ctx, `SELECT coalesce(max(value), 0) FROM audience_meta WHERE name = 'cursor'`).Scan(&cur)
	if err != nil {
		return 0, fmt.Errorf("postgres: audience cursor: %w", err)
	}
	return cur, nil
}

// lastStates folds repeated profiles of one batch into their last state,
// as applying the states one after another would (an upsert cannot touch
// one row twice), and splits the result into states to store and profiles
// whose state is deleted (nil State).
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

// memberKey names one (audience, profile) membership.
type memberKey struct{ audience, profile string }

// memberWrites is the net effect of a batch's changes on the member lists.
type memberWrites struct {
	delA, delP []string // memberships that ended
	putA, putP []string // memberships that began (or ended and began again)
	putSince   []time.Time
	sizeA      []string // audiences whose size moved, sorted
	sizeN      []int64
}

// distinctPairs lists the (audience, profile) pairs changes name, each
// once, in first-seen order.
func distinctPairs(changes []kith.MembershipChange) []memberKey {
	seen := make(map[memberKey]bool, len(changes))
	var out []memberKey
	for _, c := range changes {
		k := memberKey{c.Audience, c.ProfileID}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// planMemberships replays changes in order over the memberships the pairs
// had before the batch (initial) and returns the rows to delete and to
// write, and the size delta per audience; an entry for a member or an exit
// for a non-member is ECONFLICT.
func planMemberships(changes []kith.MembershipChange, pairs []memberKey, initial map[memberKey]bool) (w memberWrites, err error) {
	member := make(map[memberKey]bool, len(pairs))
	for _, k := range pairs {
		member[k] = initial[k]
	}
	since := make(map[memberKey]time.Time)
	delta := map[string]int64{}
	for i, c := range changes {
		k := memberKey{c.Audience, c.ProfileID}
		if member[k] == c.Entered {
			return w, membershipConflict(i, c)
		}
		member[k] = c.Entered
		if c.Entered {
			since[k] = c.At
			delta[c.Audience]++
		} else {
			delete(since, k)
			delta[c.Audience]--
		}
	}
	for _, k := range pairs {
		switch {
		case member[k]:
			// The last change was an entry: a new membership, or one
			// that ended and began again in this batch. Either way it
			// dates from that entry.
			w.putA, w.putP, w.putSince = append(w.putA, k.audience), append(w.putP, k.profile), append(w.putSince, since[k])
		case !member[k] && initial[k]:
			w.delA, w.delP = append(w.delA, k.audience), append(w.delP, k.profile)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(delta)) {
		if delta[a] != 0 {
			w.sizeA, w.sizeN = append(w.sizeA, a), append(w.sizeN, delta[a])
		}
	}
	return w, nil
}

// membershipConflict describes change i that contradicts the member list.
func membershipConflict(i int, c kith.MembershipChange) error {
	if c.Entered {
		return kith.Errorf(kith.ECONFLICT, "change %d: profile %s entered audience %q but is already a member", i, c.ProfileID, c.Audience)
	}
	return kith.Errorf(kith.ECONFLICT, "change %d: profile %s exited audience %q but is not a member", i, c.ProfileID, c.Audience)
}

// ApplyAudienceBatch applies b in one transaction: the states, every
// membership change in order (its history row, the member row and the
// audience's size), and the cursor when b.Cursor > 0. An entry for a
// profile that is already a member, or an exit for one that is not, rolls
// the whole batch back with ECONFLICT: the engine's view of the
// memberships and the store's have drifted apart, and applying the rest
// would make the history contradict the member lists.
//
// A backfill applies hundreds of thousands of changes per batch, so the
// work is done in a constant number of round trips: the memberships the
// batch touches are read once, the changes are replayed over them in
// memory to check them and find the net effect, the net writes go in one
// pipelined batch of array statements, and the history rows are copied in
// (COPY assigns their seqs in batch order). An advisory lock serialises
// batches, so history seqs are assigned in commit order and nothing else
// changes the member lists between the read and the writes.
func (db *DB) ApplyAudienceBatch(ctx context.Context, b kith.AudienceBatch) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: apply audience batch: begin: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, lockSQL, lockAudience); err != nil {
		return fmt.Errorf("postgres: apply audience batch: lock: %w", err)
	}

	pairs := distinctPairs(b.Changes)
	initial := make(map[memberKey]bool)
	if len(pairs) > 0 {
		rows, err := tx.Query(ctx, `SELECT m.audience, m.profile_id FROM audience_members m
			JOIN unnest($1::text[], $2::text[]) AS u(audience, profile_id)
			ON m.audience = u.audience AND m.profile_id = u.profile_id`,
			column(pairs, func(k memberKey) string { return k.audience }),
			column(pairs, func(k memberKey) string { return k.profile }))
		if err != nil {
			return fmt.Errorf("postgres: apply audience batch: read members: %w", err)
		}
		var k memberKey
		_, err = pgx.ForEachRow(rows, []any{&k.audience, &k.profile}, func() error {
			initial[k] = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: apply audience batch: read members: %w", err)
		}
	}
	w, err := planMemberships(b.Changes, pairs, initial)
	if err != nil {
		return fmt.Errorf("postgres: apply audience batch: %w", err)
	}

	var (
		batch pgx.Batch
		steps []string // what each queued statement does, for errors
	)
	queue := func(step, sql string, args ...any) {
		batch.Queue(sql, args...)
		steps = append(steps, step)
	}
	upserts, deletes := lastStates(b.States)
	if len(upserts) > 0 {
		queue("store states", `INSERT INTO audience_states (profile_id, state)
			SELECT * FROM unnest($1::text[], $2::bytea[])
			ON CONFLICT (profile_id) DO UPDATE SET state = excluded.state`,
			column(upserts, func(s kith.ProfileState) string { return s.ProfileID }),
			column(upserts, func(s kith.ProfileState) []byte { return s.State }))
	}
	if len(deletes) > 0 {
		queue("delete states", `DELETE FROM audience_states WHERE profile_id = ANY($1::text[])`, deletes)
	}
	if len(w.delA) > 0 {
		queue("delete members", `DELETE FROM audience_members m
			USING unnest($1::text[], $2::text[]) AS u(audience, profile_id)
			WHERE m.audience = u.audience AND m.profile_id = u.profile_id`, w.delA, w.delP)
	}
	if len(w.putA) > 0 {
		queue("add members", `INSERT INTO audience_members (audience, profile_id, since)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
			ON CONFLICT (audience, profile_id) DO UPDATE SET since = excluded.since`, w.putA, w.putP, w.putSince)
	}
	if len(w.sizeA) > 0 {
		queue("sizes", `INSERT INTO audience_sizes (audience, n)
			SELECT * FROM unnest($1::text[], $2::bigint[])
			ON CONFLICT (audience) DO UPDATE SET n = audience_sizes.n + excluded.n`, w.sizeA, w.sizeN)
	}
	if b.Cursor > 0 {
		queue("cursor", `INSERT INTO audience_meta (name, value) VALUES ('cursor', $1)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, b.Cursor)
	}
	if len(steps) > 0 {
		results := tx.SendBatch(ctx, &batch)
		for _, step := range steps {
			if _, err := results.Exec(); err != nil {
				results.Close()
				return fmt.Errorf("postgres: apply audience batch: %s: %w", step, err)
			}
		}
		if err := results.Close(); err != nil {
			return fmt.Errorf("postgres: apply audience batch: %w", err)
		}
	}

	if len(b.Changes) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audience_changes"},
			[]string{"audience", "profile_id", "entered", "at", "cause", "cause_seq"},
			pgx.CopyFromSlice(len(b.Changes), func(i int) ([]any, error) {
				c := b.Changes[i]
				return []any{c.Audience, c.ProfileID, c.Entered, c.At, c.Cause, c.CauseSeq}, nil
			}))
		if err != nil {
			return fmt.Errorf("postgres: apply audience batch: copy history: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: apply audience batch: commit: %w", err)
	}
	return nil
}

// LoadStates returns the stored states of those of ids that have one, in
// one query over an array of ids.
func (db *DB) LoadStates(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT profile_id, state FROM audience_states WHERE profile_id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: load states: %w", err)
	}
	var id string
	var st []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &st}, func() error {
		out[id] = append([]byte{}, st...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: load states: %w", err)
	}
	return out, nil
}

// scanPage is how many states ScanStates reads per query.
const scanPage = 1000

// ScanStates calls fn for every stored state in profile id order. It reads
// in pages by key, so a scan over millions of states holds no connection
// or snapshot while fn runs and fn may use the store; a state written
// during the scan is visited if its id sorts after the current page.
func (db *DB) ScanStates(ctx context.Context, fn func(id string, state []byte) error) error {
	type state struct {
		id string
		st []byte
	}
	after := ""
	for {
		rows, err := db.pool.Query(ctx, `SELECT profile_id, state FROM audience_states
			WHERE profile_id > $1 ORDER BY profile_id LIMIT $2`, after, scanPage)
		if err != nil {
			return fmt.Errorf("postgres: scan states: %w", err)
		}
		page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (state, error) {
			var s state
			err := row.Scan(&s.id, &s.st)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("postgres: scan states: %w", err)
		}
		for _, s := range page {
			if s.st == nil {
				s.st = []byte{}
			}
			if err := fn(s.id, s.st); err != nil {
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
	rows, err := db.pool.Query(ctx, `SELECT profile_id, since FROM audience_members
		WHERE audience = $1 AND profile_id > $2 ORDER BY profile_id LIMIT $3`, audience, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Member, error) {
		m := kith.Member{Audience: audience}
		err := row.Scan(&m.ProfileID, &m.Since)
		m.Since = m.Since.UTC()
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	return out, nil
}

// AudienceSize returns the number of members of audience, kept in step
// with the member list so that no count over it is needed; 0 for an
// audience without members or unknown.
func (db *DB) AudienceSize(ctx context.Context, audience string) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM audience_sizes WHERE audience = $1`, audience).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: audience size: %w", err)
	}
	return n, nil
}


// MembershipChanges returns up to limit changes with Seq > after in Seq
// order, only of audience and of profileID where those are not "". The
// query names only the filters given, so that the planner walks the
// (audience, seq) or (profile_id, seq) index instead of the whole history.
func (db *DB) MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	var q strings.Builder
	q.WriteString(`SELECT seq, audience, profile_id, entered, at, cause, cause_seq FROM audience_changes WHERE seq > $1`)
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
	rows, err := db.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: membership changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.MembershipChange, error) {
		var c kith.MembershipChange
		err := row.Scan(&c.Seq, &c.Audience, &c.ProfileID, &c.Entered, &c.At, &c.Cause, &c.CauseSeq)
		c.At = c.At.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: membership changes: %w", err)
	}
	return out, nil
}
