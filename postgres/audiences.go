package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/membership"
)

// lockAudience is the advisory lock class (beside lockLog and lockMigrate)
// that serialises audience batches, so that the seqs of the membership
// history are assigned in commit order and a reader of "seq > after" never
// skips a change that commits late.
const lockAudience = 0x6b69746a

// SaveDefinition creates or replaces the definition (d.Kind, d.Key). The
// store keeps d as given; bumping Version is the caller's job, so that a
// running backfill can tell it is out of date.
func (db *DB) SaveDefinition(ctx context.Context, d kith.Definition) error {
	body, err := membership.EncodeDefinition(d)
	if err != nil {
		return fmt.Errorf("postgres: save definition: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO audience_definitions (kind, key, body) VALUES ($1, $2, $3::json)
		ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body`, d.Kind, d.Key, string(body)); err != nil {
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
		d, err := membership.DecodeDefinition([]byte(body))
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

// AudienceCursors returns the log positions of the last batches the
// audience engine applied with a Cursor and with a StatesCursor, 0 before
// the first.
func (db *DB) AudienceCursors(ctx context.Context) (cursor, statesCursor int64, err error) {
	err = db.pool.QueryRow(ctx, `SELECT
		coalesce(max(value) FILTER (WHERE name = 'cursor'), 0),
		coalesce(max(value) FILTER (WHERE name = 'states_cursor'), 0)
		FROM audience_meta`).Scan(&cursor, &statesCursor)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: audience cursors: %w", err)
	}
	return cursor, statesCursor, nil
}

// ApplyAudienceBatch applies b in one transaction: the states (the last
// one per profile), every membership change in order and then every bulk
// change (each moving the profile's memberships, the audience's member
// chunk and size and appending to the history), and the cursors that are
// > 0. An entry for a profile that is already a member, or an exit for
// one that is not, rolls the whole batch back with ECONFLICT: the
// engine's view of the memberships and the store's have drifted apart,
// and applying the rest would make the history contradict the member
// lists.
//
// The work takes a constant number of round trips whatever the size of
// the batch: the rows of the profiles it names are read in one query, the
// changes are replayed over their memberships in memory (a profile named
// for the first time gets the next ordinals), the touched chunks are read
// in one query, and the writes go in one pipelined batch of array
// statements (a profile's state and memberships in one row, each chunk
// and size once) and one COPY of the history, a bulk change being one
// row. An advisory lock serialises batches, so nothing else changes the
// rows between the reads and the writes, and history seqs, which the
// batch gives itself after the last one, are in commit order.
func (db *DB) ApplyAudienceBatch(ctx context.Context, b kith.AudienceBatch) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: apply audience batch: begin: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, lockSQL, lockAudience); err != nil {
		return fmt.Errorf("postgres: apply audience batch: lock: %w", err)
	}
	if err := applyAudienceBatch(ctx, tx, &b); err != nil {
		return fmt.Errorf("postgres: apply audience batch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: apply audience batch: commit: %w", err)
	}
	return nil
}

func applyAudienceBatch(ctx context.Context, tx pgx.Tx, b *kith.AudienceBatch) error {
	p := membership.NewPlan(b)
	if ids := p.IDs(); len(ids) > 0 {
		rows, err := tx.Query(ctx, `SELECT ord, profile_id, members, state IS NOT NULL FROM audience_profiles WHERE profile_id = ANY($1::text[])`, ids)
		if err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
		stored, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (membership.StoredRow, error) {
			var r membership.StoredRow
			err := row.Scan(&r.Ord, &r.ID, &r.Members, &r.HasState)
			return r, err
		})
		if err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
		if err := p.Found(stored); err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
	}
	// New profiles that get a row take the next ordinals, reserved at
	// once.
	var first int64
	if n := p.NewProfiles(); n > 0 {
		var last int64
		if err := tx.QueryRow(ctx, `SELECT setval('audience_profile_ords', nextval('audience_profile_ords') + $1 - 1)`, n).Scan(&last); err != nil {
			return fmt.Errorf("ordinals: %w", err)
		}
		first = last - int64(n) + 1
	}
	if err := p.Finish(first); err != nil {
		return err
	}
	chunks, err := readChunks(ctx, tx, p.Chunks())
	if err != nil {
		return err
	}

	var (
		batch pgx.Batch
		steps []string // what each queued statement does, for errors
	)
	queue := func(step, sql string, args ...any) {
		batch.Queue(sql, args...)
		steps = append(steps, step)
	}
	queueProfiles(queue, p)
	chunks.queue(queue)
	var sizeA []string
	var sizeN []int64
	for _, s := range p.Sizes() {
		sizeA, sizeN = append(sizeA, s.Audience), append(sizeN, s.N)
	}
	if len(sizeA) > 0 {
		queue("sizes", `INSERT INTO audience_sizes (audience, n)
			SELECT * FROM unnest($1::text[], $2::bigint[])
			ON CONFLICT (audience) DO UPDATE SET n = audience_sizes.n + excluded.n`, sizeA, sizeN)
	}
	for _, c := range []struct {
		name string
		v    int64
	}{{"cursor", b.Cursor}, {"states_cursor", b.StatesCursor}} {
		if c.v > 0 {
			queue(c.name, `INSERT INTO audience_meta (name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, c.name, c.v)
		}
	}
	if len(steps) > 0 {
		results := tx.SendBatch(ctx, &batch)
		for _, step := range steps {
			if _, err := results.Exec(); err != nil {
				results.Close()
				return fmt.Errorf("%s: %w", step, err)
			}
		}
		if err := results.Close(); err != nil {
			return err
		}
	}
	if err := writeHistory(ctx, tx, p); err != nil {
		return err
	}
	return writeTraitChanges(ctx, tx, b.TraitChanges)
}

// queueProfiles queues the writes of the profile rows the batch changes,
// each kind of write one array statement: rows inserted or with both
// columns replaced, rows with only their state or only their memberships
// replaced, and rows deleted because they hold neither a state nor a
// membership any more.
func queueProfiles(queue func(step, sql string, args ...any), p *membership.Plan) {
	w := p.Rows()
	ords := func(rows []membership.Row) []int64 {
		out := make([]int64, len(rows))
		for i, r := range rows {
			out[i] = r.Ord
		}
		return out
	}
	members := func(rows []membership.Row) [][]byte {
		out := make([][]byte, len(rows))
		for i, r := range rows {
			out[i] = p.AppendMembers(nil, r)
		}
		return out
	}
	states := func(rows []membership.Row) [][]byte {
		out := make([][]byte, len(rows))
		for i, r := range rows {
			out[i] = p.State(r)
		}
		return out
	}
	if len(w.Both) > 0 {
		ids := make([]string, len(w.Both))
		for i, r := range w.Both {
			ids[i] = p.ID(r)
		}
		queue("write profiles", `INSERT INTO audience_profiles (ord, profile_id, members, state)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[])
			ON CONFLICT (ord) DO UPDATE SET members = excluded.members, state = excluded.state`,
			ords(w.Both), ids, members(w.Both), states(w.Both))
	}
	if len(w.States) > 0 {
		queue("write states", `UPDATE audience_profiles p SET state = u.state
			FROM unnest($1::bigint[], $2::bytea[]) AS u(ord, state) WHERE p.ord = u.ord`, ords(w.States), states(w.States))
	}
	if len(w.Members) > 0 {
		queue("write memberships", `UPDATE audience_profiles p SET members = u.members
			FROM unnest($1::bigint[], $2::bytea[]) AS u(ord, members) WHERE p.ord = u.ord`, ords(w.Members), members(w.Members))
	}
	if len(w.Deletes) > 0 {
		queue("delete profiles", `DELETE FROM audience_profiles WHERE ord = ANY($1::bigint[])`, ords(w.Deletes))
	}
}

// chunkWrites are the member chunk rows a batch writes and deletes.
type chunkWrites struct {
	putA, delA []string
	putC, delC []int64
	putBits    [][]byte
}

// readChunks reads the chunks the batch changes in one query and works
// out their rows after the changes.
func readChunks(ctx context.Context, tx pgx.Tx, changes []membership.ChunkChange) (*chunkWrites, error) {
	w := &chunkWrites{}
	if len(changes) == 0 {
		return w, nil
	}
	auds, nums := make([]string, len(changes)), make([]int64, len(changes))
	for i, c := range changes {
		auds[i], nums[i] = c.Audience, c.Chunk
	}
	rows, err := tx.Query(ctx, `SELECT c.audience, c.chunk, c.bits FROM audience_member_chunks c
		JOIN unnest($1::text[], $2::bigint[]) AS u(audience, chunk) ON c.audience = u.audience AND c.chunk = u.chunk`, auds, nums)
	if err != nil {
		return nil, fmt.Errorf("read member chunks: %w", err)
	}
	type chunkKey struct {
		audience string
		chunk    int64
	}
	old := make(map[chunkKey][]byte, len(changes))
	var k chunkKey
	var bits []byte
	if _, err := pgx.ForEachRow(rows, []any{&k.audience, &k.chunk, &bits}, func() error {
		old[k] = slices.Clone(bits)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read member chunks: %w", err)
	}
	for _, c := range changes {
		switch bits, write, err := c.Apply(old[chunkKey{c.Audience, c.Chunk}]); {
		case err != nil:
			return nil, err
		case write && bits == nil:
			w.delA, w.delC = append(w.delA, c.Audience), append(w.delC, c.Chunk)
		case write:
			w.putA, w.putC, w.putBits = append(w.putA, c.Audience), append(w.putC, c.Chunk), append(w.putBits, bits)
		}
	}
	return w, nil
}

// queue queues the chunk writes.
func (w *chunkWrites) queue(queue func(step, sql string, args ...any)) {
	if len(w.putA) > 0 {
		queue("write member chunks", `INSERT INTO audience_member_chunks (audience, chunk, bits)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])
			ON CONFLICT (audience, chunk) DO UPDATE SET bits = excluded.bits`, w.putA, w.putC, w.putBits)
	}
	if len(w.delA) > 0 {
		queue("delete member chunks", `DELETE FROM audience_member_chunks c
			USING unnest($1::text[], $2::bigint[]) AS u(audience, chunk)
			WHERE c.audience = u.audience AND c.chunk = u.chunk`, w.delA, w.delC)
	}
}

// writeHistory copies the batch's history rows, with the seqs after the
// last one, into the history in one COPY, a bulk change's ids
// front-coded.
func writeHistory(ctx context.Context, tx pgx.Tx, p *membership.Plan) error {
	var next int64
	if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT seq + n FROM audience_changes ORDER BY seq DESC LIMIT 1), 1)`).Scan(&next); err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	history := p.History(next)
	if len(history) == 0 {
		return nil
	}
	rows := make([][]any, len(history))
	for i, r := range history {
		if r.N == 1 {
			rows[i] = []any{r.Seq, r.N, r.Audience, r.ProfileID, nil, r.Entered, r.At, r.Cause, r.CauseSeq}
		} else {
			rows[i] = []any{r.Seq, r.N, r.Audience, nil, membership.EncodeIDs(r.ProfileIDs), r.Entered, r.At, r.Cause, r.CauseSeq}
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audience_changes"},
		[]string{"seq", "n", "audience", "profile_id", "profile_ids", "entered", "at", "cause", "cause_seq"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy history: %w", err)
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
	rows, err := db.pool.Query(ctx, `SELECT profile_id, state FROM audience_profiles
		WHERE profile_id = ANY($1::text[]) AND state IS NOT NULL`, ids)
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

// LoadProfiles returns the stored states and the memberships of those of
// ids that have them, in one query over an array of ids.
func (db *DB) LoadProfiles(ctx context.Context, ids []string) (map[string][]byte, map[string][]kith.Member, error) {
	states, members := make(map[string][]byte, len(ids)), make(map[string][]kith.Member)
	if len(ids) == 0 {
		return states, members, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT profile_id, state IS NOT NULL, state, members FROM audience_profiles
		WHERE profile_id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: load profiles: %w", err)
	}
	var id string
	var hasState bool
	var st, blob []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &hasState, &st, &blob}, func() error {
		if hasState {
			states[id] = append([]byte{}, st...)
		}
		if blob == nil {
			return nil
		}
		return membership.CollectMembers(members, id, blob)
	}); err != nil {
		return nil, nil, fmt.Errorf("postgres: load profiles: %w", err)
	}
	return states, members, nil
}

// LoadMemberships returns the memberships of those of ids that have any,
// sorted by audience, in one query over an array of ids.
func (db *DB) LoadMemberships(ctx context.Context, ids []string) (map[string][]kith.Member, error) {
	out := make(map[string][]kith.Member)
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT profile_id, members FROM audience_profiles
		WHERE profile_id = ANY($1::text[]) AND members IS NOT NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: load memberships: %w", err)
	}
	var id string
	var blob []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &blob}, func() error {
		return membership.CollectMembers(out, id, blob)
	}); err != nil {
		return nil, fmt.Errorf("postgres: load memberships: %w", err)
	}
	return out, nil
}

// scanPage is how many profiles ScanStates reads per query.
const scanPage = 2000

// ScanStates calls fn for every profile with a state or a membership, in
// ordinal order (the order in which profiles were first stored), with its
// state (nil if it has none) and its memberships. It reads in pages by
// ordinal, so a scan over millions of profiles holds no connection or
// snapshot while fn runs and fn may use the store; a profile stored during
// the scan is visited, as it comes after the current page.
func (db *DB) ScanStates(ctx context.Context, fn func(id string, state []byte, members []kith.Member) error) error {
	return membership.ScanStates("postgres: scan states", scanPage, func(after int64) ([]membership.StateRow, error) {
		rows, err := db.pool.Query(ctx, `SELECT ord, profile_id, state, state IS NOT NULL, members FROM audience_profiles
			WHERE ord > $1 AND (state IS NOT NULL OR members IS NOT NULL) ORDER BY ord LIMIT $2`, after, scanPage)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (membership.StateRow, error) {
			var r membership.StateRow
			err := row.Scan(&r.Ord, &r.ID, &r.State, &r.HasState, &r.Members)
			return r, err
		})
	}, fn)
}

// Members lists up to limit members of audience in ordinal order, starting
// after the profile after ("" for the first page), which must be a known
// profile (EINVALID otherwise; it need not be a member any more). It walks
// the audience's member chunks from the one holding after's ordinal and
// then looks the ordinals' profile ids up, in one read-only snapshot so
// that both agree. Since is not filled in.
func (db *DB) Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []kith.Member
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var from int64
		if after != "" {
			err := tx.QueryRow(ctx, `SELECT ord FROM audience_profiles WHERE profile_id = $1`, after).Scan(&from)
			if errors.Is(err, pgx.ErrNoRows) {
				return kith.Errorf(kith.EINVALID, "members of %q after %q: no such profile", audience, after)
			} else if err != nil {
				return err
			}
			from++
		}
		rows, err := tx.Query(ctx, `SELECT chunk, bits FROM audience_member_chunks WHERE audience = $1 AND chunk >= $2 ORDER BY chunk`, audience, from>>membership.ChunkShift)
		if err != nil {
			return err
		}
		var ords []int64
		var m membership.Chunk
		for len(ords) < limit && rows.Next() {
			var chunk int64
			var b []byte
			if err := rows.Scan(&chunk, &b); err != nil {
				rows.Close()
				return err
			}
			if err := membership.DecodeChunk(b, &m); err != nil {
				rows.Close()
				return fmt.Errorf("chunk %d: %w", chunk, err)
			}
			base := chunk << membership.ChunkShift
			m.Each(max(from-base, 0), func(i int64) bool {
				ords = append(ords, base+i)
				return len(ords) < limit
			})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ords) == 0 {
			return nil
		}
		rows, err = tx.Query(ctx, `SELECT ord, profile_id FROM audience_profiles WHERE ord = ANY($1::bigint[])`, ords)
		if err != nil {
			return err
		}
		ids := make(map[int64]string, len(ords))
		var ord int64
		var id string
		if _, err := pgx.ForEachRow(rows, []any{&ord, &id}, func() error {
			ids[ord] = id
			return nil
		}); err != nil {
			return err
		}
		out = make([]kith.Member, 0, len(ords))
		for _, ord := range ords {
			if id, ok := ids[ord]; ok {
				out = append(out, kith.Member{Audience: audience, ProfileID: id})
			}
		}
		return nil
	})
	if kith.ErrorCode(err) == kith.EINVALID {
		return nil, err
	} else if err != nil {
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

// historyCols are the columns of a history row, in the order of
// historyFields.
const historyCols = `seq, n, audience, coalesce(profile_id, ''), profile_ids, entered, at, cause, cause_seq`

// historyFields are where a row of historyCols is scanned to.
func historyFields(r *membership.HistoryRow) []any {
	return []any{&r.Seq, &r.N, &r.Audience, &r.ProfileID, &r.IDs, &r.Entered, &r.At, &r.Cause, &r.CauseSeq}
}

// fromSQL is the first seq a read after $1 must look at: that of the row
// holding seq $1+1, a bulk row that began at or before $1 if one
// straddles it.
const fromSQL = `coalesce((SELECT CASE WHEN seq + n - 1 > $1 THEN seq ELSE $1 + 1 END
	FROM audience_changes WHERE seq <= $1 ORDER BY seq DESC LIMIT 1), $1 + 1)`

// MembershipChanges returns up to limit changes with Seq > after in Seq
// order, only of audience and of profileID where those are not "", a bulk
// change expanded into one change per profile. The query names only the
// filters given, so that the planner walks the (audience, seq) or
// (profile_id, seq) index instead of the whole history; for one profile,
// the bulk rows after the position are searched as well (there are few of
// them, a handful per backfill), in the same statement so that both come
// from one snapshot.
func (db *DB) MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := db.membershipChanges(ctx, after, audience, profileID, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: held changes: %w", err)
	}
	return out, nil
}

func (db *DB) membershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	args := []any{after, limit}
	filter := ""
	if audience != "" {
		args = append(args, audience)
		filter = ` AND audience = $3`
	}
	var out []kith.MembershipChange
	var r membership.HistoryRow
	if profileID == "" {
		// Every row holds at least one change after the position.
		rows, err := db.pool.Query(ctx, `SELECT `+historyCols+` FROM audience_changes
			WHERE seq >= `+fromSQL+filter+` ORDER BY seq LIMIT $2`, args...)
		if err != nil {
			return nil, err
		}
		_, err = pgx.ForEachRow(rows, historyFields(&r), func() error {
			var err error
			out, err = r.Expand(out, after, limit)
			return err
		})
		return out, err
	}
	args = append(args, profileID)
	p := fmt.Sprintf("$%d", len(args))
	rows, err := db.pool.Query(ctx, `(SELECT `+historyCols+` FROM audience_changes
			WHERE profile_id = `+p+` AND seq > $1`+filter+` ORDER BY seq LIMIT $2)
		UNION ALL
		(SELECT `+historyCols+` FROM audience_changes WHERE n > 1 AND seq >= `+fromSQL+filter+`)
		ORDER BY seq`, args...)
	if err != nil {
		return nil, err
	}
	_, err = pgx.ForEachRow(rows, historyFields(&r), func() error {
		if len(out) == limit {
			return nil
		}
		if r.N == 1 {
			out = append(out, r.Change(r.Seq, r.ProfileID))
			return nil
		}
		seq, err := r.Find(profileID)
		if err == nil && seq > after {
			out = append(out, r.Change(seq, profileID))
		}
		return err
	})
	return out, err
}

// AudienceNetChanges implements kith.AudienceStore.
func (db *DB) AudienceNetChanges(ctx context.Context, audience string, since time.Time) (map[string]int64, error) {
	rows, err := db.pool.Query(ctx, `SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), sum(CASE WHEN entered THEN n ELSE -n END)::bigint
		FROM audience_changes WHERE audience = $1 AND at >= $2 GROUP BY 1`, audience, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: audience net changes: %w", err)
	}
	out := map[string]int64{}
	var day string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&day, &n}, func() error {
		out[day] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: audience net changes: %w", err)
	}
	return out, nil
}

// writeTraitChanges appends to the trait change stream, with seqs taken
// from its sequence under the batch lock.
func writeTraitChanges(ctx context.Context, tx pgx.Tx, chs []kith.TraitChange) error {
	if len(chs) == 0 {
		return nil
	}
	var last int64
	if err := tx.QueryRow(ctx, `SELECT setval('trait_change_seqs', nextval('trait_change_seqs') + $1 - 1)`, len(chs)).Scan(&last); err != nil {
		return fmt.Errorf("trait change seqs: %w", err)
	}
	rows := make([][]any, len(chs))
	for i, c := range chs {
		v := string(c.Value)
		if v == "" {
			v = "null"
		}
		rows[i] = []any{last - int64(len(chs)) + 1 + int64(i), c.ProfileID, c.Key, v, c.Provenance, c.At, c.CauseSeq}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"trait_changes"},
		[]string{"seq", "profile_id", "key", "value", "provenance", "at", "cause_seq"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy trait changes: %w", err)
	}
	// The last values, each profile and key once (the batch's last).
	type pk struct{ p, k string }
	latest := map[pk]string{}
	var order []pk
	for _, r := range rows {
		k := pk{r[1].(string), r[2].(string)}
		if _, ok := latest[k]; !ok {
			order = append(order, k)
		}
		latest[k] = r[3].(string)
	}
	var setP, setK, setV, delP, delK []string
	for _, k := range order {
		if v := latest[k]; v == "null" {
			delP, delK = append(delP, k.p), append(delK, k.k)
		} else {
			setP, setK, setV = append(setP, k.p), append(setK, k.k), append(setV, v)
		}
	}
	if len(setP) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO trait_values (profile_id, key, value) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
			ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value`, setP, setK, setV); err != nil {
			return fmt.Errorf("trait values: %w", err)
		}
	}
	if len(delP) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM trait_values t USING unnest($1::text[], $2::text[]) AS d(p, k)
			WHERE t.profile_id = d.p AND t.key = d.k`, delP, delK); err != nil {
			return fmt.Errorf("trait values: %w", err)
		}
	}
	return nil
}

// LoadTraitValues implements kith.AudienceStore.
func (db *DB) LoadTraitValues(ctx context.Context, ids []string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT profile_id, key, value FROM trait_values WHERE profile_id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("postgres: trait values: %w", refusedData(err))
	}
	var id, key, v string
	if _, err := pgx.ForEachRow(rows, []any{&id, &key, &v}, func() error {
		if out[id] == nil {
			out[id] = map[string]json.RawMessage{}
		}
		out[id][key] = json.RawMessage(v)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: trait values: %w", refusedData(err))
	}
	return out, nil
}

// TraitChanges implements kith.AudienceStore.
func (db *DB) TraitChanges(ctx context.Context, after int64, limit int) ([]kith.TraitChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT seq, profile_id, key, value, provenance, at, cause_seq FROM trait_changes
		WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: trait changes: %w", err)
	}
	var out []kith.TraitChange
	var (
		c     kith.TraitChange
		value string
	)
	if _, err := pgx.ForEachRow(rows, []any{&c.Seq, &c.ProfileID, &c.Key, &value, &c.Provenance, &c.At, &c.CauseSeq}, func() error {
		c.Value, c.At = json.RawMessage(value), c.At.UTC()
		out = append(out, c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: trait changes: %w", err)
	}
	return out, nil
}

// TraitChangeHead implements kith.AudienceStore.
func (db *DB) TraitChangeHead(ctx context.Context) (int64, error) {
	var head int64
	if err := db.pool.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trait_change_seqs`).Scan(&head); err != nil {
		return 0, fmt.Errorf("postgres: trait change head: %w", err)
	}
	return head, nil
}
