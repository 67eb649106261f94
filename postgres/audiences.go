package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kithcdp/kith/membership"
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

// member is one of a profile's memberships: the audience and when the
// profile entered it (unix microseconds).
type held struct {
	audience string
	since    int64
}

// encodeMembers renders a profile's memberships, sorted by audience, as
// stored; nil for none.
func encodeMembers(ms []held) []byte {
	if len(ms) == 0 {
		return nil
	}
	var out []byte
	var prev int64
	for _, m := range ms {
		out = membership.AppendMember(out, m.audience, m.since, prev)
		prev = m.since
	}
	return out
}

// audProfile is one profile a batch names, as the batch is planned.
type audProfile struct {
	id       string
	ord      int64 // 0 until the profile has an ordinal
	row      bool  // it had a row before the batch
	hadState bool  // that row's state was not NULL
	blob     []byte
	members  []held // decoded from blob once a change needs them
	decoded  bool
	dirty    bool // the batch changed its memberships
	setState bool // the batch replaces the state (with state; nil for NULL)
	state    []byte
	needsOrd bool // a held change names it
}

// hasState reports whether the profile has a state after the batch.
func (p *audProfile) hasState() bool {
	if p.setState {
		return p.state != nil
	}
	return p.hadState
}

// chunkKey names one member chunk.
type chunkKey struct {
	audience string
	chunk    int64
}

// chunkOps is what a batch does to one member chunk: the offsets it ends
// up adding and removing (a later change to an offset overrides an
// earlier one).
type chunkOps struct{ add, remove membership.Chunk }

// audPlan is a batch checked against the stored memberships and turned
// into the rows to write.
type audPlan struct {
	profiles []audProfile // in the order the batch first names them
	index    map[string]int
	chunks   map[chunkKey]*chunkOps
	sizes    map[string]int64
}

// newAudPlan lists the profiles b names, in the order it first names
// them: States (the last state of each), then Changes, then Bulk.
func newAudPlan(b *kith.AudienceBatch) *audPlan {
	p := &audPlan{index: map[string]int{}, chunks: map[chunkKey]*chunkOps{}, sizes: map[string]int64{}}
	add := func(id string) *audProfile {
		i, ok := p.index[id]
		if !ok {
			i = len(p.profiles)
			p.index[id] = i
			p.profiles = append(p.profiles, audProfile{id: id})
		}
		return &p.profiles[i]
	}
	for _, s := range b.States {
		pr := add(s.ProfileID)
		pr.setState, pr.state = true, s.State
	}
	for _, c := range b.Changes {
		add(c.ProfileID).needsOrd = true
	}
	for _, bc := range b.Bulk {
		for _, id := range bc.ProfileIDs {
			add(id).needsOrd = true
		}
	}
	return p
}

// change applies one entry or exit to profile i's memberships and to the
// audience's chunk and size, and reports false if it contradicts them.
func (p *audPlan) change(i int, audience string, entered bool, at int64) (bool, error) {
	pr := &p.profiles[i]
	if !pr.decoded {
		err := membership.EachMember(pr.blob, func(a []byte, since int64) {
			pr.members = append(pr.members, held{string(a), since})
		})
		if err != nil {
			return false, fmt.Errorf("profile %s: %w", pr.id, err)
		}
		pr.decoded, pr.blob = true, nil
	}
	k, member := slices.BinarySearchFunc(pr.members, audience, func(m held, a string) int { return strings.Compare(m.audience, a) })
	if member == entered {
		return false, nil
	}
	key := chunkKey{audience, pr.ord >> membership.ChunkShift}
	ops := p.chunks[key]
	if ops == nil {
		ops = &chunkOps{}
		p.chunks[key] = ops
	}
	off := pr.ord & (membership.ChunkSize - 1)
	if entered {
		pr.members = slices.Insert(pr.members, k, held{audience, at})
		ops.add.Add(off)
		ops.remove.Remove(off)
		p.sizes[audience]++
	} else {
		pr.members = slices.Delete(pr.members, k, k+1)
		ops.remove.Add(off)
		ops.add.Remove(off)
		p.sizes[audience]--
	}
	pr.dirty = true
	return true, nil
}

// plan replays b's changes, then its bulk changes, over the stored
// memberships; an entry for a member or an exit for a non-member is
// ECONFLICT.
func (p *audPlan) plan(b *kith.AudienceBatch) error {
	for i, c := range b.Changes {
		ok, err := p.change(p.index[c.ProfileID], c.Audience, c.Entered, c.At.UnixMicro())
		if err != nil {
			return err
		} else if !ok {
			return membershipConflict(fmt.Sprintf("change %d", i), c.ProfileID, c.Audience, c.Entered)
		}
	}
	for i, bc := range b.Bulk {
		at := bc.At.UnixMicro()
		for _, id := range bc.ProfileIDs {
			ok, err := p.change(p.index[id], bc.Audience, bc.Entered, at)
			if err != nil {
				return err
			} else if !ok {
				return membershipConflict(fmt.Sprintf("bulk change %d", i), id, bc.Audience, bc.Entered)
			}
		}
	}
	return nil
}

// membershipConflict describes a change that contradicts the member list.
func membershipConflict(what, profile, audience string, entered bool) error {
	if entered {
		return kith.Errorf(kith.ECONFLICT, "%s: profile %s entered audience %q but is already a member", what, profile, audience)
	}
	return kith.Errorf(kith.ECONFLICT, "%s: profile %s exited audience %q but is not a member", what, profile, audience)
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
	p := newAudPlan(b)
	if len(p.profiles) > 0 {
		ids := make([]string, len(p.profiles))
		for i := range p.profiles {
			ids[i] = p.profiles[i].id
		}
		rows, err := tx.Query(ctx, `SELECT ord, profile_id, members, state IS NOT NULL FROM audience_profiles WHERE profile_id = ANY($1::text[])`, ids)
		if err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
		var (
			ord      int64
			id       string
			blob     []byte
			hasState bool
		)
		_, err = pgx.ForEachRow(rows, []any{&ord, &id, &blob, &hasState}, func() error {
			pr := &p.profiles[p.index[id]]
			pr.row, pr.ord, pr.hadState, pr.blob = true, ord, hasState, slices.Clone(blob)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
	}
	// New profiles that get a row take the next ordinals, in the order
	// the batch names them.
	var fresh []int
	for i := range p.profiles {
		if pr := &p.profiles[i]; !pr.row && (pr.needsOrd || pr.state != nil) {
			fresh = append(fresh, i)
		}
	}
	if len(fresh) > 0 {
		var last int64
		if err := tx.QueryRow(ctx, `SELECT setval('audience_profile_ords', nextval('audience_profile_ords') + $1 - 1)`, len(fresh)).Scan(&last); err != nil {
			return fmt.Errorf("ordinals: %w", err)
		}
		for k, i := range fresh {
			p.profiles[i].ord = last - int64(len(fresh)) + 1 + int64(k)
		}
	}
	if err := p.plan(b); err != nil {
		return err
	}
	chunks, err := p.readChunks(ctx, tx)
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
	p.queueProfiles(queue)
	chunks.queue(queue)
	var sizeA []string
	var sizeN []int64
	for _, a := range slices.Sorted(maps.Keys(p.sizes)) {
		if p.sizes[a] != 0 {
			sizeA, sizeN = append(sizeA, a), append(sizeN, p.sizes[a])
		}
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
	return writeHistory(ctx, tx, b)
}

// queueProfiles queues the writes of the profile rows the batch changed:
// rows inserted or with both columns changed, rows with only their state
// or only their memberships changed, and rows deleted because they hold
// neither a state nor a membership any more.
func (p *audPlan) queueProfiles(queue func(step, sql string, args ...any)) {
	type cols struct {
		ords    []int64
		ids     []string
		members [][]byte
		states  [][]byte
	}
	var both, states, members cols
	var deletes []int64
	for i := range p.profiles {
		pr := &p.profiles[i]
		if !pr.setState && !pr.dirty {
			continue
		}
		blob := pr.blob
		if pr.decoded {
			blob = encodeMembers(pr.members)
		}
		empty := !pr.hasState() && blob == nil
		switch {
		case empty && pr.row:
			deletes = append(deletes, pr.ord)
		case empty:
		case !pr.row || pr.setState && pr.dirty:
			both.ords, both.ids = append(both.ords, pr.ord), append(both.ids, pr.id)
			both.members, both.states = append(both.members, blob), append(both.states, pr.state)
		case pr.setState:
			states.ords, states.states = append(states.ords, pr.ord), append(states.states, pr.state)
		default:
			members.ords, members.members = append(members.ords, pr.ord), append(members.members, blob)
		}
	}
	if len(both.ords) > 0 {
		queue("write profiles", `INSERT INTO audience_profiles (ord, profile_id, members, state)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[])
			ON CONFLICT (ord) DO UPDATE SET members = excluded.members, state = excluded.state`,
			both.ords, both.ids, both.members, both.states)
	}
	if len(states.ords) > 0 {
		queue("write states", `UPDATE audience_profiles p SET state = u.state
			FROM unnest($1::bigint[], $2::bytea[]) AS u(ord, state) WHERE p.ord = u.ord`, states.ords, states.states)
	}
	if len(members.ords) > 0 {
		queue("write memberships", `UPDATE audience_profiles p SET members = u.members
			FROM unnest($1::bigint[], $2::bytea[]) AS u(ord, members) WHERE p.ord = u.ord`, members.ords, members.members)
	}
	if len(deletes) > 0 {
		queue("delete profiles", `DELETE FROM audience_profiles WHERE ord = ANY($1::bigint[])`, deletes)
	}
}

// chunkWrites are the member chunk rows a batch writes and deletes.
type chunkWrites struct {
	putA, delA []string
	putC, delC []int64
	putBits    [][]byte
}

// readChunks reads the chunks the batch touches in one query and applies
// the batch's ops to them.
func (p *audPlan) readChunks(ctx context.Context, tx pgx.Tx) (*chunkWrites, error) {
	w := &chunkWrites{}
	if len(p.chunks) == 0 {
		return w, nil
	}
	keys := slices.SortedFunc(maps.Keys(p.chunks), func(a, b chunkKey) int {
		if c := strings.Compare(a.audience, b.audience); c != 0 {
			return c
		}
		return cmp.Compare(a.chunk, b.chunk)
	})
	auds, nums := make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		auds[i], nums[i] = k.audience, k.chunk
	}
	rows, err := tx.Query(ctx, `SELECT c.audience, c.chunk, c.bits FROM audience_member_chunks c
		JOIN unnest($1::text[], $2::bigint[]) AS u(audience, chunk) ON c.audience = u.audience AND c.chunk = u.chunk`, auds, nums)
	if err != nil {
		return nil, fmt.Errorf("read member chunks: %w", err)
	}
	old := make(map[chunkKey][]byte, len(keys))
	var k chunkKey
	var bits []byte
	if _, err := pgx.ForEachRow(rows, []any{&k.audience, &k.chunk, &bits}, func() error {
		old[k] = slices.Clone(bits)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read member chunks: %w", err)
	}
	var m membership.Chunk
	for _, k := range keys {
		prev, ok := old[k]
		if err := membership.DecodeChunk(prev, &m); err != nil {
			return nil, fmt.Errorf("audience %q chunk %d: %w", k.audience, k.chunk, err)
		}
		op := p.chunks[k]
		for i := range m {
			m[i] = m[i]&^op.remove[i] | op.add[i]
		}
		switch b := m.Encode(); {
		case b == nil && ok:
			w.delA, w.delC = append(w.delA, k.audience), append(w.delC, k.chunk)
		case b != nil && !bytes.Equal(b, prev):
			w.putA, w.putC, w.putBits = append(w.putA, k.audience), append(w.putC, k.chunk), append(w.putBits, b)
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

// writeHistory copies b's changes and then its bulk changes into the
// history with the next seqs: a change is a row of its own, a bulk change
// one row covering as many seqs as it has profiles (a bulk change of one
// profile is stored as a change; one of none has no seq).
func writeHistory(ctx context.Context, tx pgx.Tx, b *kith.AudienceBatch) error {
	var next int64
	if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT seq + n FROM audience_changes ORDER BY seq DESC LIMIT 1), 1)`).Scan(&next); err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	var rows [][]any
	for _, c := range b.Changes {
		rows = append(rows, []any{next, 1, c.Audience, c.ProfileID, nil, c.Entered, c.At, c.Cause, c.CauseSeq})
		next++
	}
	for _, bc := range b.Bulk {
		switch len(bc.ProfileIDs) {
		case 0:
			continue
		case 1:
			rows = append(rows, []any{next, 1, bc.Audience, bc.ProfileIDs[0], nil, bc.Entered, bc.At, bc.Cause, int64(0)})
		default:
			rows = append(rows, []any{next, len(bc.ProfileIDs), bc.Audience, nil, membership.EncodeIDs(bc.ProfileIDs), bc.Entered, bc.At, bc.Cause, int64(0)})
		}
		next += int64(len(bc.ProfileIDs))
	}
	if len(rows) == 0 {
		return nil
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
		ms, err := membership.Members(id, blob)
		if err != nil {
			return fmt.Errorf("profile %s: %w", id, err)
		}
		if len(ms) > 0 {
			out[id] = ms
		}
		return nil
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
	type profile struct {
		ord      int64
		id       string
		state    []byte
		hasState bool
		members  []byte
	}
	var after int64
	for {
		rows, err := db.pool.Query(ctx, `SELECT ord, profile_id, state, state IS NOT NULL, members FROM audience_profiles
			WHERE ord > $1 AND (state IS NOT NULL OR members IS NOT NULL) ORDER BY ord LIMIT $2`, after, scanPage)
		if err != nil {
			return fmt.Errorf("postgres: scan states: %w", err)
		}
		page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (profile, error) {
			var p profile
			err := row.Scan(&p.ord, &p.id, &p.state, &p.hasState, &p.members)
			return p, err
		})
		if err != nil {
			return fmt.Errorf("postgres: scan states: %w", err)
		}
		for _, p := range page {
			var st []byte
			if p.hasState {
				st = p.state
				if st == nil {
					st = []byte{}
				}
			}
			var ms []kith.Member
			if len(p.members) > 0 {
				if ms, err = membership.Members(p.id, p.members); err != nil {
					return fmt.Errorf("postgres: scan states: profile %s: %w", p.id, err)
				}
			}
			if err := fn(p.id, st, ms); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		after = page[len(page)-1].ord
	}
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

// historyRow is one row of the history: a change (n = 1, profileID set)
// or a bulk change (n > 1, ids front-coded) covering seqs seq to
// seq+n-1.
type historyRow struct {
	seq       int64
	n         int64
	audience  string
	profileID *string
	ids       []byte
	entered   bool
	at        time.Time
	cause     string
	causeSeq  int64
}

// historyCols are the columns a historyRow scans.
const historyCols = `seq, n, audience, profile_id, profile_ids, entered, at, cause, cause_seq`

func (r *historyRow) fields() []any {
	return []any{&r.seq, &r.n, &r.audience, &r.profileID, &r.ids, &r.entered, &r.at, &r.cause, &r.causeSeq}
}

// change returns the change with the given seq and profile of r.
func (r *historyRow) change(seq int64, profile string) kith.MembershipChange {
	return kith.MembershipChange{Seq: seq, Audience: r.audience, ProfileID: profile, Entered: r.entered, At: r.at.UTC(), Cause: r.cause, CauseSeq: r.causeSeq}
}

// expand appends r's changes with seq > after to out until out holds
// limit.
func (r *historyRow) expand(out []kith.MembershipChange, after int64, limit int) ([]kith.MembershipChange, error) {
	if r.profileID != nil {
		if r.seq > after && len(out) < limit {
			out = append(out, r.change(r.seq, *r.profileID))
		}
		return out, nil
	}
	return membership.ExpandBulk(out, r.change(r.seq, ""), r.ids, after, limit)
}

// find returns the seq of profile in bulk row r, or 0.
func (r *historyRow) find(profile string) (int64, error) {
	return membership.FindInBulk(r.ids, r.seq, profile)
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
	var r historyRow
	if profileID == "" {
		// Every row holds at least one change after the position.
		rows, err := db.pool.Query(ctx, `SELECT `+historyCols+` FROM audience_changes
			WHERE seq >= `+fromSQL+filter+` ORDER BY seq LIMIT $2`, args...)
		if err != nil {
			return nil, err
		}
		_, err = pgx.ForEachRow(rows, r.fields(), func() error {
			var err error
			out, err = r.expand(out, after, limit)
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
	_, err = pgx.ForEachRow(rows, r.fields(), func() error {
		if len(out) == limit {
			return nil
		}
		if r.profileID != nil {
			out = append(out, r.change(r.seq, *r.profileID))
			return nil
		}
		seq, err := r.find(profileID)
		if err == nil && seq > after {
			out = append(out, r.change(seq, profileID))
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
