package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kithcdp/kith/membership"
	"hash/maphash"
	"maps"
	"math"
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

// AudienceCursors returns the log positions of the last batches the
// audience engine applied with a Cursor and with a StatesCursor, 0 before
// the first.
func (db *DB) AudienceCursors(ctx context.Context) (cursor, statesCursor int64, err error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT key, value FROM meta WHERE key IN ('cursor', 'states_cursor')`)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var v int64
		if err := rows.Scan(&key, &v); err != nil {
			return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
		}
		if key == "cursor" {
			cursor = v
		} else {
			statesCursor = v
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
	}
	return cursor, statesCursor, nil
}

// membership is one of a profile's memberships while a batch is planned:
// the audience (an index in audPlan.auds) and when the profile entered it
// (unix microseconds). It holds no pointer, so that a million profiles'
// memberships cost the garbage collector nothing to scan.
type held struct {
	aud   int32
	since int64
}

// Flags of an audProfile.
const (
	hasRow   = 1 << iota // it had a row before the batch
	hadState             // that row's state was not NULL
	dirty                // the batch changed its memberships
)

// audProfile is one profile a batch names, as the batch is planned.
type audProfile struct {
	ord     int64 // 0 until the profile has an ordinal
	members []held
	state   int32 // 1 + the index in b.States of its last state; 0 for none
	flags   uint8
}

// chunkOps is what a batch does to one member chunk: the offsets it ends
// up adding and removing (a later change to an offset overrides an
// earlier one).
type chunkOps struct{ add, remove membership.Chunk }

// audPlan is a batch checked against the stored memberships and turned
// into the rows to write. It is planned profile by profile: every
// profile's entries and exits, in batch order, are replayed over its
// stored memberships as soon as its row has been read. Changes to
// different profiles are independent, so this finds a conflict exactly
// when replaying the whole batch in order would.
type audPlan struct {
	b        *kith.AudienceBatch
	ids      []string // the profiles the batch names, first named first
	index    *idTable
	profiles []audProfile // parallel to ids
	// Profile i's changes are ops[opStart[i]:opStart[i+1]], in batch
	// order, each a kind: k < len(b.Changes) is b.Changes[k], and
	// len(b.Changes)+k is b.Bulk[k].
	opStart []int
	ops     []int32
	kindAud []int32 // per kind: the audience
	kindAt  []int64 // per kind: the time, unix microseconds
	order   []int32 // the profiles planned, in the order they were

	auds      []string // the audiences the plan meets, by index
	audIdx    map[string]int32
	chunks    []map[int64]*chunkOps // per audience
	lastChunk []int64               // per audience: the chunk of lastOps
	lastOps   []*chunkOps
	sizes     []int64 // per audience: the change in size
}

// batchNames counts the profile ids b names, repeats included.
func batchNames(b *kith.AudienceBatch) int {
	n := len(b.States) + len(b.Changes)
	for _, bc := range b.Bulk {
		n += len(bc.ProfileIDs)
	}
	return n
}

// idTable is a plan's index from profile id to profile: open addressing
// with linear probing over slots that hold the id's hash and the id
// itself, so that finding an id costs one cache miss where a Go map costs
// two or three, and ids are looked up in groups whose misses the
// processor overlaps. A backfill batch names millions of ids, and misses
// are most of what each costs.
type idTable struct {
	seed  maphash.Seed
	slots []idSlot
	mask  uint64
	ids   []string // by index: the order in which they were added
	sink  uint64   // keeps the loads that start a group's misses
}

// idSlot is one slot of an idTable.
type idSlot struct {
	h   uint64
	id  string
	idx int32 // 1 + the profile's index; 0 for an empty slot
	n   int32 // how many changes name the profile
}

// idGroup is how many ids an idTable looks up at once.
const idGroup = 16

func newIDTable(hint int) *idTable {
	size := 16
	for size < 2*hint {
		size <<= 1
	}
	return &idTable{seed: maphash.MakeSeed(), slots: make([]idSlot, size), mask: uint64(size - 1)}
}

// grow doubles the table.
func (t *idTable) grow() {
	old := t.slots
	t.slots = make([]idSlot, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.idx == 0 {
			continue
		}
		pos := s.h & t.mask
		for t.slots[pos].idx != 0 {
			pos = (pos + 1) & t.mask
		}
		t.slots[pos] = s
	}
}

// lookup sets out[i] to the index of ids[i], or to -1 if the table lacks
// it; with add set it adds what it lacks instead, with the next indexes,
// and with count it counts each id as a change that names the profile.
func (t *idTable) lookup(ids []string, out []int32, add, count bool) {
	var hs [idGroup]uint64
	for start := 0; start < len(ids); start += idGroup {
		group := ids[start:min(start+idGroup, len(ids))]
		if add && 2*(len(t.ids)+len(group)) > len(t.slots) {
			t.grow()
		}
		// Load every slot of the group first: the loads do not depend
		// on each other, so their misses overlap.
		var sink uint64
		for k, id := range group {
			h := maphash.String(t.seed, id)
			hs[k] = h
			sink += t.slots[h&t.mask].h
		}
		t.sink += sink
		for k, id := range group {
			h := hs[k]
			pos := h & t.mask
			var s *idSlot
			for {
				s = &t.slots[pos]
				if s.idx == 0 {
					if !add {
						s = nil
						break
					}
					t.ids = append(t.ids, id)
					*s = idSlot{h: h, id: id, idx: int32(len(t.ids))}
					break
				}
				if s.h == h && s.id == id {
					break
				}
				pos = (pos + 1) & t.mask
			}
			if s == nil {
				out[start+k] = -1
				continue
			}
			if count {
				s.n++
			}
			if out != nil {
				out[start+k] = s.idx - 1
			}
		}
	}
}

// newAudPlan lists the profiles b names, in the order it first names
// them (States, then Changes, then Bulk), and groups the changes by
// profile. The index starts with room for the longest list, the fewest
// profiles the batch can name, and grows.
func newAudPlan(b *kith.AudienceBatch) *audPlan {
	most := max(len(b.States), len(b.Changes))
	for _, bc := range b.Bulk {
		most = max(most, len(bc.ProfileIDs))
	}
	p := &audPlan{b: b, index: newIDTable(most), audIdx: map[string]int32{}}
	ids := make([]string, 0, max(len(b.States), len(b.Changes)))
	for _, s := range b.States {
		ids = append(ids, s.ProfileID)
	}
	stateIdx := make([]int32, len(ids))
	p.index.lookup(ids, stateIdx, true, false)
	ids = ids[:0]
	for _, c := range b.Changes {
		ids = append(ids, c.ProfileID)
	}
	changeIdx := make([]int32, len(ids))
	p.index.lookup(ids, changeIdx, true, true)
	bulkIdx := make([][]int32, len(b.Bulk))
	for k, bc := range b.Bulk {
		bulkIdx[k] = make([]int32, len(bc.ProfileIDs))
		p.index.lookup(bc.ProfileIDs, bulkIdx[k], true, true)
	}
	p.ids = p.index.ids

	p.opStart = make([]int, len(p.ids)+1)
	for _, s := range p.index.slots {
		if s.idx != 0 {
			p.opStart[s.idx] = int(s.n)
		}
	}
	for i := range p.ids {
		p.opStart[i+1] += p.opStart[i]
	}
	p.ops = make([]int32, p.opStart[len(p.ids)])
	next := slices.Clone(p.opStart[:len(p.ids)]) // where profile i's next change goes
	for k, i := range changeIdx {
		p.ops[next[i]] = int32(k)
		next[i]++
	}
	for k, idx := range bulkIdx {
		kind := int32(len(b.Changes) + k)
		for _, i := range idx {
			p.ops[next[i]] = kind
			next[i]++
		}
	}
	p.kindAud = make([]int32, 0, len(b.Changes)+len(b.Bulk))
	p.kindAt = make([]int64, 0, len(b.Changes)+len(b.Bulk))
	for _, c := range b.Changes {
		p.kindAud, p.kindAt = append(p.kindAud, p.aud(c.Audience)), append(p.kindAt, micros(c.At))
	}
	for _, bc := range b.Bulk {
		p.kindAud, p.kindAt = append(p.kindAud, p.aud(bc.Audience)), append(p.kindAt, micros(bc.At))
	}

	p.profiles = make([]audProfile, len(p.ids))
	for i, j := range stateIdx {
		p.profiles[j].state = int32(i + 1)
	}
	p.order = make([]int32, 0, len(p.ids))
	return p
}

// aud returns the index of audience, adding it.
func (p *audPlan) aud(audience string) int32 {
	if i, ok := p.audIdx[audience]; ok {
		return i
	}
	i := int32(len(p.auds))
	p.audIdx[audience] = i
	p.auds = append(p.auds, audience)
	p.chunks = append(p.chunks, map[int64]*chunkOps{})
	p.lastChunk = append(p.lastChunk, -1)
	p.lastOps = append(p.lastOps, nil)
	p.sizes = append(p.sizes, 0)
	return i
}

// state returns the state the batch gives profile i, and whether it gives
// one (nil for NULL).
func (p *audPlan) state(i int) ([]byte, bool) {
	if s := p.profiles[i].state; s > 0 {
		return p.b.States[s-1].State, true
	}
	return nil, false
}

// hasState reports whether profile i has a state after the batch.
func (p *audPlan) hasState(i int) bool {
	if st, ok := p.state(i); ok {
		return st != nil
	}
	return p.profiles[i].flags&hadState != 0
}

// found takes the stored row of profile i and plans the profile.
func (p *audPlan) found(i int32, ord int64, blob []byte, withState bool) error {
	pr := &p.profiles[i]
	if pr.flags&hasRow != 0 {
		return nil // read already: planned once
	}
	pr.ord = ord
	pr.flags |= hasRow
	if withState {
		pr.flags |= hadState
	}
	if n := p.opStart[i+1] - p.opStart[i]; n > 0 {
		// Room for the stored memberships (three bytes at least each)
		// and the entries.
		pr.members = make([]held, 0, len(blob)/3+n)
	}
	if err := membership.EachMember(blob, func(audience []byte, since int64) {
		aud, ok := p.audIdx[string(audience)]
		if !ok {
			aud = p.aud(string(audience))
		}
		pr.members = append(pr.members, held{aud, since})
	}); err != nil {
		return fmt.Errorf("profile %s: %w", p.ids[i], err)
	}
	return p.planProfile(i)
}

// planNew gives the profiles without a row that get one the ordinals from
// next on, in the order the batch names them, and plans them.
func (p *audPlan) planNew(next int64) error {
	for i := range p.profiles {
		pr := &p.profiles[i]
		if pr.flags&hasRow != 0 {
			continue
		}
		if st, _ := p.state(i); p.opStart[i+1] == p.opStart[i] && st == nil {
			continue // only a state deleted that was never stored
		}
		pr.ord = next
		next++
		if err := p.planProfile(int32(i)); err != nil {
			return err
		}
	}
	return nil
}

// planProfile replays profile i's changes over its memberships, recording
// what they do to the member chunks and sizes; an entry for a member or
// an exit for a non-member is ECONFLICT.
func (p *audPlan) planProfile(i int32) error {
	p.order = append(p.order, i)
	pr := &p.profiles[i]
	off := pr.ord & (membership.ChunkSize - 1)
	for _, kind := range p.ops[p.opStart[i]:p.opStart[i+1]] {
		aud := p.kindAud[kind]
		var entered bool
		if int(kind) < len(p.b.Changes) {
			entered = p.b.Changes[kind].Entered
		} else {
			entered = p.b.Bulk[int(kind)-len(p.b.Changes)].Entered
		}
		name := p.auds[aud]
		k, member := slices.BinarySearchFunc(pr.members, name, func(m held, a string) int { return strings.Compare(p.auds[m.aud], a) })
		if member == entered {
			what := fmt.Sprintf("change %d", kind)
			if int(kind) >= len(p.b.Changes) {
				what = fmt.Sprintf("bulk change %d", int(kind)-len(p.b.Changes))
			}
			return membershipConflict(what, p.ids[i], name, entered)
		}
		ops := p.lastOps[aud]
		if p.lastChunk[aud] != pr.ord>>membership.ChunkShift {
			m := p.chunks[aud]
			if ops = m[pr.ord>>membership.ChunkShift]; ops == nil {
				ops = &chunkOps{}
				m[pr.ord>>membership.ChunkShift] = ops
			}
			p.lastChunk[aud], p.lastOps[aud] = pr.ord>>membership.ChunkShift, ops
		}
		if entered {
			pr.members = slices.Insert(pr.members, k, held{aud, p.kindAt[kind]})
			ops.add.Add(off)
			ops.remove.Remove(off)
			p.sizes[aud]++
		} else {
			pr.members = slices.Delete(pr.members, k, k+1)
			ops.remove.Add(off)
			ops.add.Remove(off)
			p.sizes[aud]--
		}
		pr.flags |= dirty
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

// lookupBatch is how many ids one IN list carries.
const lookupBatch = 500

// profileCols are the columns of a profile row a batch reads.
const profileCols = `SELECT id, profile_id, members, state IS NOT NULL FROM profiles`

// lookup reads the rows of the batch's profiles that exist and plans
// them. A batch that is a page of a backfill names profiles of a run of
// consecutive ordinals (ScanStates hands them out in ordinal order), in
// that order: if the ordinals of the first and last profile each list
// names span few more ordinals than the batch names profiles, that range
// is read in one pass, which is much cheaper than as many lookups by
// profile id. The profiles not found in it (or all, for another batch) are
// looked up by id, in id order so that the index is walked forwards.
func (p *audPlan) lookup(ctx context.Context, tx *sql.Tx) error {
	if lo, hi, err := p.probe(ctx, tx); err != nil {
		return err
	} else if hi >= lo && hi-lo < 2*int64(len(p.ids)) {
		rows, err := tx.QueryContext(ctx, profileCols+` WHERE id BETWEEN $1 AND $2 ORDER BY id`, lo, hi)
		if err != nil {
			return err
		}
		if err := p.foundRows(rows); err != nil {
			return err
		}
	}
	var ids []string
	for i, id := range p.ids {
		if p.profiles[i].flags&hasRow == 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return lookupIDs(ctx, tx, profileCols+` WHERE profile_id IN `, ids, func(stmt *sql.Stmt, args ...any) error {
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		return p.foundRows(rows)
	})
}

// probe returns the lowest and highest ordinal of the first and last
// profiles that the batch's lists (states, changes, each bulk change)
// name, lo > hi if none is stored.
func (p *audPlan) probe(ctx context.Context, tx *sql.Tx) (lo, hi int64, err error) {
	lo, hi = math.MaxInt64, 0
	if len(p.ids) < probeMin {
		return lo, hi, nil
	}
	var probes []any
	ends := func(first, last string) { probes = append(probes, first, last) }
	if n := len(p.b.States); n > 0 {
		ends(p.b.States[0].ProfileID, p.b.States[n-1].ProfileID)
	}
	if n := len(p.b.Changes); n > 0 {
		ends(p.b.Changes[0].ProfileID, p.b.Changes[n-1].ProfileID)
	}
	for _, bc := range p.b.Bulk {
		if n := len(bc.ProfileIDs); n > 0 {
			ends(bc.ProfileIDs[0], bc.ProfileIDs[n-1])
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT min(id), max(id) FROM profiles WHERE profile_id IN (`+placeholders(len(probes), 1)+`)`, probes...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	var first, last sql.NullInt64
	for rows.Next() {
		if err := rows.Scan(&first, &last); err != nil {
			return 0, 0, err
		}
	}
	if first.Valid {
		lo, hi = first.Int64, last.Int64
	}
	return lo, hi, rows.Err()
}

// probeMin is the fewest profiles for which a batch probes for a run of
// ordinals.
const probeMin = 1000

// foundRows takes the stored rows that rows reads and plans their
// profiles, closing rows.
func (p *audPlan) foundRows(rows *sql.Rows) error {
	defer rows.Close()
	page := make([]scanRow, 0, 256)
	for rows.Next() {
		var r scanRow
		if err := rows.Scan(&r.ord, &r.id, &r.blob, &r.withState); err != nil {
			return err
		}
		if page = append(page, r); len(page) == cap(page) {
			if err := p.foundPage(page); err != nil {
				return err
			}
			page = page[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return p.foundPage(page)
}

// foundPage takes a page of stored rows and plans their profiles.
func (p *audPlan) foundPage(page []scanRow) error {
	ids := make([]string, len(page))
	for k := range page {
		ids[k] = page[k].id
	}
	idx := make([]int32, len(page))
	p.index.lookup(ids, idx, false, false)
	for k, r := range page {
		if idx[k] >= 0 {
			if err := p.found(idx[k], r.ord, r.blob, r.withState); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanRow is a profile row read by a tableScan.
type scanRow struct {
	ord       int64
	id        string
	blob      []byte
	withState bool
}

// tableScan reads the whole profiles table, in ordinal order, on a
// goroutine of its own, so that the batch is planned meanwhile.
type tableScan struct {
	pages chan []scanRow
	stop  chan struct{}
	errc  chan error
}

// startScan starts reading the profiles table.
func startScan(ctx context.Context, tx *sql.Tx) *tableScan {
	const pageRows = 2048
	s := &tableScan{pages: make(chan []scanRow, 1024), stop: make(chan struct{}), errc: make(chan error, 1)}
	go func() {
		defer close(s.pages)
		s.errc <- func() error {
			rows, err := tx.QueryContext(ctx, profileCols+` ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			page := make([]scanRow, 0, pageRows)
			send := func() bool {
				select {
				case s.pages <- page:
					page = make([]scanRow, 0, pageRows)
					return true
				case <-s.stop:
					return false
				}
			}
			for rows.Next() {
				var r scanRow
				if err := rows.Scan(&r.ord, &r.id, &r.blob, &r.withState); err != nil {
					return err
				}
				if page = append(page, r); len(page) == pageRows && !send() {
					return nil
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(page) > 0 {
				send()
			}
			return nil
		}()
	}()
	return s
}

// each calls fn with every page of rows until it fails, and ends the
// scan.
func (s *tableScan) each(fn func(page []scanRow) error) error {
	var err error
	for page := range s.pages {
		if err = fn(page); err != nil {
			break
		}
	}
	if cerr := s.cancel(); err == nil {
		err = cerr
	}
	return err
}

// cancel ends the scan and waits for its goroutine, returning its error.
func (s *tableScan) cancel() error {
	close(s.stop)
	for range s.pages {
	}
	return <-s.errc
}

// lookupIDs runs query, which ends in "IN ", with ids in lists of up to
// lookupBatch, preparing each length of list once.
func lookupIDs(ctx context.Context, tx *sql.Tx, query string, ids []string, fn func(stmt *sql.Stmt, args ...any) error) error {
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, s := range stmts {
			s.Close()
		}
	}()
	args := make([]any, 0, lookupBatch)
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		stmt := stmts[n]
		if stmt == nil {
			var err error
			if stmt, err = tx.PrepareContext(ctx, query+`(?`+strings.Repeat(`,?`, n-1)+`)`); err != nil {
				return err
			}
			stmts[n] = stmt
		}
		args = args[:0]
		for _, id := range rest[:n] {
			args = append(args, id)
		}
		if err := fn(stmt, args...); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// rowsPerWrite is how many rows one statement of writeRows carries.
const rowsPerWrite = 250

// writeRows writes n rows with statements "head VALUES (...),(...) tail"
// of up to rowsPerWrite rows each (the full-size one prepared once); fill
// appends the values of row i to dst. The values of the next statement
// are put together on another goroutine while SQLite executes the
// current one, so that encoding a million rows overlaps writing them;
// fill must not touch what the caller changes meanwhile.
func writeRows(ctx context.Context, tx *sql.Tx, head string, ncols int, tail string, n int, fill func(dst []any, i int) []any) error {
	if n == 0 {
		return nil
	}
	stmtFor := func(rows int) string {
		row := `(?` + strings.Repeat(`,?`, ncols-1) + `)`
		return head + ` VALUES ` + row + strings.Repeat(`,`+row, rows-1) + ` ` + tail
	}
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	exec := func(args []any) error {
		var err error
		if len(args) == rowsPerWrite*ncols {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, stmtFor(rowsPerWrite)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, stmtFor(len(args)/ncols), args...)
		}
		return err
	}
	if n <= rowsPerWrite {
		args := make([]any, 0, n*ncols)
		for i := range n {
			args = fill(args, i)
		}
		if err := exec(args); err != nil {
			return fmt.Errorf("%s: %w", head, err)
		}
		return nil
	}
	free, ready := make(chan []any, 3), make(chan []any, 3)
	for range 3 {
		free <- make([]any, 0, rowsPerWrite*ncols)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ready)
		for start := 0; start < n; start += rowsPerWrite {
			var args []any
			select {
			case args = <-free:
			case <-stop:
				return
			}
			args = args[:0]
			for i := start; i < min(start+rowsPerWrite, n); i++ {
				args = fill(args, i)
			}
			ready <- args
		}
	}()
	defer func() {
		close(stop)
		for range ready {
		}
		<-done
	}()
	for args := range ready {
		if err := exec(args); err != nil {
			return fmt.Errorf("%s: %w", head, err)
		}
		clear(args)
		free <- args
	}
	return nil
}

// ordIdx pairs an ordinal with a profile's index in the plan.
type ordIdx struct {
	ord int64
	i   int32
}

// writeProfiles writes the rows of the profiles whose state or
// memberships the batch changed, each kind of write in ordinal order
// (sequential in the table): rows whose memberships, state or both
// change (inserted when new) and rows deleted because they hold neither a
// state nor a membership any more.
func (p *audPlan) writeProfiles(ctx context.Context, tx *sql.Tx) error {
	var both, states, members, deletes []ordIdx
	for _, i := range p.order {
		pr := &p.profiles[i]
		changed, stateSet := pr.flags&dirty != 0, pr.state > 0
		if !changed && !stateSet {
			continue
		}
		empty := !p.hasState(int(i)) && len(pr.members) == 0
		oi := ordIdx{pr.ord, i}
		switch {
		case empty && pr.flags&hasRow != 0:
			deletes = append(deletes, oi)
		case empty:
		case pr.flags&hasRow == 0 || changed && stateSet:
			both = append(both, oi)
		case stateSet:
			states = append(states, oi)
		default:
			members = append(members, oi)
		}
	}
	byOrd := func(a, b ordIdx) int { return cmp.Compare(a.ord, b.ord) }
	var buf []byte
	blob := func(i int32) []byte {
		ms := p.profiles[i].members
		if len(ms) == 0 {
			return nil
		}
		buf = buf[:0]
		var prev int64
		for _, m := range ms {
			buf = membership.AppendMember(buf, p.auds[m.aud], m.since, prev)
			prev = m.since
		}
		return slices.Clone(buf)
	}
	state := func(i int32) []byte {
		st, _ := p.state(int(i))
		return st
	}
	// A new profile goes with both columns, its row inserted; an
	// existing one has its row updated in place.
	writes := []struct {
		rows []ordIdx
		cols string
		set  string
		args func(dst []any, i int32) []any
	}{
		{both, `members, state`, `members = excluded.members, state = excluded.state`, func(dst []any, i int32) []any { return append(dst, blob(i), state(i)) }},
		{states, `state`, `state = excluded.state`, func(dst []any, i int32) []any { return append(dst, state(i)) }},
		{members, `members`, `members = excluded.members`, func(dst []any, i int32) []any { return append(dst, blob(i)) }},
	}
	for _, w := range writes {
		if !slices.IsSortedFunc(w.rows, byOrd) {
			slices.SortFunc(w.rows, byOrd)
		}
		ncols := 3 + strings.Count(w.cols, ",")
		if err := writeRows(ctx, tx, `INSERT INTO profiles (id, profile_id, `+w.cols+`)`, ncols, `ON CONFLICT (id) DO UPDATE SET `+w.set, len(w.rows), func(dst []any, k int) []any {
			i := w.rows[k].i
			return w.args(append(dst, p.profiles[i].ord, p.ids[i]), i)
		}); err != nil {
			return err
		}
	}
	slices.SortFunc(deletes, byOrd)
	for rest := deletes; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		args := make([]any, n)
		for i, oi := range rest[:n] {
			args[i] = oi.ord
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profiles WHERE id IN (`+placeholders(n, 1)+`)`, args...); err != nil {
			return fmt.Errorf("delete profiles: %w", err)
		}
		rest = rest[n:]
	}
	return nil
}

// writeChunks applies the batch's chunk ops: each touched chunk is read
// once, changed and written back (or deleted when it is left empty).
func (p *audPlan) writeChunks(ctx context.Context, tx *sql.Tx) error {
	type chunkRow struct {
		audience string
		chunk    int64
		bits     []byte
	}
	var puts []chunkRow
	var dels []any
	for aud, ops := range p.chunks {
		if len(ops) == 0 {
			continue
		}
		a := p.auds[aud]
		keys := slices.Sorted(maps.Keys(ops))
		old := make(map[int64][]byte, len(keys))
		for rest := keys; len(rest) > 0; {
			n := min(len(rest), lookupBatch)
			args := make([]any, 0, n+1)
			args = append(args, a)
			for _, k := range rest[:n] {
				args = append(args, k)
			}
			rows, err := tx.QueryContext(ctx, `SELECT chunk, bits FROM member_chunks WHERE audience = ? AND chunk IN (?`+strings.Repeat(`,?`, n-1)+`)`, args...)
			if err != nil {
				return fmt.Errorf("read member chunks: %w", err)
			}
			for rows.Next() {
				var k int64
				var b []byte
				if err := rows.Scan(&k, &b); err != nil {
					rows.Close()
					return fmt.Errorf("read member chunks: %w", err)
				}
				old[k] = b
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read member chunks: %w", err)
			}
			rest = rest[n:]
		}
		var m membership.Chunk
		for _, k := range keys {
			prev, ok := old[k]
			if err := membership.DecodeChunk(prev, &m); err != nil {
				return fmt.Errorf("audience %q chunk %d: %w", a, k, err)
			}
			op := ops[k]
			for w := range m {
				m[w] = m[w]&^op.remove[w] | op.add[w]
			}
			switch b := m.Encode(); {
			case b == nil && ok:
				dels = append(dels, a, k)
			case b != nil && !bytes.Equal(b, prev):
				puts = append(puts, chunkRow{a, k, b})
			}
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO member_chunks (audience, chunk, bits)`, 3,
		`ON CONFLICT (audience, chunk) DO UPDATE SET bits = excluded.bits`, len(puts), func(i int) []any {
			return []any{puts[i].audience, puts[i].chunk, puts[i].bits}
		}); err != nil {
		return err
	}
	for i := 0; i < len(dels); i += 2 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM member_chunks WHERE audience = $1 AND chunk = $2`, dels[i], dels[i+1]); err != nil {
			return fmt.Errorf("delete member chunk: %w", err)
		}
	}
	return nil
}

// ApplyAudienceBatch applies b in one audiences.db transaction: the states
// (the last one per profile), every membership change in order and then
// every bulk change (each moving the profile's memberships, the
// audience's member chunk and size and appending to the history), and the
// cursors that are > 0. An entry for a profile that is already a member,
// or an exit for one that is not, rolls the whole batch back with
// ECONFLICT: it means the engine's view of the memberships and the
// store's have drifted apart, and applying the rest would make the
// history contradict the member lists.
//
// The batch is planned in memory before anything is written: the rows of
// the profiles it names are read once (a profile named for the first time
// gets the next ordinals), each profile's changes are replayed over its
// memberships, and then each touched row is written once, in ordinal
// order: a profile's state and memberships in one row, each member chunk
// once, each size once, and a bulk change as one history row. How the
// rows are read depends on the batch: one that names a large part of all
// profiles (a whole backfill at once) reads the profiles table in one
// pass, on another goroutine while the batch is indexed; a page of a
// backfill reads its run of ordinals (see lookup); others look their
// profiles up by id.
func (db *DB) ApplyAudienceBatch(ctx context.Context, b kith.AudienceBatch) error {
	tx, err := db.audW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply audience batch: begin: %w", err)
	}
	defer tx.Rollback()
	if err := applyAudienceBatch(ctx, tx, &b); err != nil {
		return fmt.Errorf("sqlite: apply audience batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply audience batch: commit: %w", err)
	}
	return nil
}

// scanMin is the fewest profiles for which a batch may read the whole
// profiles table; it does when it names at least a third of them.
const scanMin = 10000

func applyAudienceBatch(ctx context.Context, tx *sql.Tx, b *kith.AudienceBatch) error {
	var lastOrd int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'profiles'), 0)`).Scan(&lastOrd); err != nil {
		return fmt.Errorf("read ordinals: %w", err)
	}
	// The scan starts while the batch is indexed if it may be needed
	// (counting repeats), and stops if it is not.
	var scan *tableScan
	if names := batchNames(b); lastOrd > 0 && names >= scanMin && int64(names)*3 >= lastOrd {
		scan = startScan(ctx, tx)
	}
	p := newAudPlan(b)
	if scan != nil && (len(p.ids) < scanMin || int64(len(p.ids))*3 < lastOrd) {
		if err := scan.cancel(); err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
		scan = nil
	}
	var err error
	switch {
	case scan != nil:
		err = scan.each(p.foundPage)
	case lastOrd > 0:
		err = p.lookup(ctx, tx)
	}
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	if err := p.planNew(lastOrd + 1); err != nil {
		return err
	}
	// The history's bulk rows are encoded while the profiles are written.
	idBlobs := make([][]byte, len(b.Bulk))
	encoded := make(chan struct{})
	go func() {
		defer close(encoded)
		for k, bc := range b.Bulk {
			if len(bc.ProfileIDs) > 1 {
				idBlobs[k] = membership.EncodeIDs(bc.ProfileIDs)
			}
		}
	}()
	defer func() { <-encoded }()
	if err := p.writeProfiles(ctx, tx); err != nil {
		return fmt.Errorf("write profiles: %w", err)
	}
	if err := p.writeChunks(ctx, tx); err != nil {
		return err
	}
	for aud, n := range p.sizes {
		if n == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sizes (audience, n) VALUES ($1,$2)
			ON CONFLICT (audience) DO UPDATE SET n = n + excluded.n`, p.auds[aud], n); err != nil {
			return fmt.Errorf("size of %q: %w", p.auds[aud], err)
		}
	}
	<-encoded
	if err := writeHistory(ctx, tx, b, idBlobs); err != nil {
		return err
	}
	for _, c := range []struct {
		key string
		v   int64
	}{{"cursor", b.Cursor}, {"states_cursor", b.StatesCursor}} {
		if c.v <= 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, c.key, c.v); err != nil {
			return fmt.Errorf("%s: %w", c.key, err)
		}
	}
	return nil
}

// writeHistory appends b's changes and then its bulk changes to the
// history, with the next seqs: a change is a row of its own, a bulk change
// one row covering as many seqs as it has profiles, its ids front-coded
// in idBlobs (a bulk change of one profile is stored as a change; one of
// none has no seq).
func writeHistory(ctx context.Context, tx *sql.Tx, b *kith.AudienceBatch, idBlobs [][]byte) error {
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq + n FROM changes ORDER BY seq DESC LIMIT 1), 1)`).Scan(&next); err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	type single struct {
		seq int64
		c   kith.MembershipChange
	}
	singles := make([]single, 0, len(b.Changes))
	for _, c := range b.Changes {
		singles = append(singles, single{next, c})
		next++
	}
	type bulkRow struct {
		seq int64
		k   int
	}
	var bulk []bulkRow
	for k, bc := range b.Bulk {
		switch len(bc.ProfileIDs) {
		case 0:
		case 1:
			singles = append(singles, single{next, kith.MembershipChange{Audience: bc.Audience, ProfileID: bc.ProfileIDs[0], Entered: bc.Entered, At: bc.At, Cause: bc.Cause}})
		default:
			bulk = append(bulk, bulkRow{next, k})
		}
		next += int64(len(bc.ProfileIDs))
	}
	if err := insertRows(ctx, tx, `INSERT INTO changes (seq, n, audience, profile_id, entered, at, cause, cause_seq)`, 8, ``,
		len(singles), func(i int) []any {
			s := singles[i]
			return []any{s.seq, 1, s.c.Audience, s.c.ProfileID, s.c.Entered, micros(s.c.At), s.c.Cause, s.c.CauseSeq}
		}); err != nil {
		return err
	}
	for _, r := range bulk {
		bc := b.Bulk[r.k]
		if _, err := tx.ExecContext(ctx, `INSERT INTO changes (seq, n, audience, profile_ids, entered, at, cause, cause_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0)`, r.seq, len(bc.ProfileIDs), bc.Audience, idBlobs[r.k], bc.Entered, micros(bc.At), bc.Cause); err != nil {
			return fmt.Errorf("history of bulk change %d: %w", r.k, err)
		}
	}
	return nil
}

// LoadStates returns the stored states of those of ids that have one,
// looking them up 500 at a time.
func (db *DB) LoadStates(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	err := lookupProfiles(ctx, db.audR, `SELECT profile_id, state FROM profiles WHERE state IS NOT NULL AND profile_id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var st []byte
		if err := rows.Scan(&id, &st); err != nil {
			return err
		}
		out[id] = nonNil(st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load states: %w", err)
	}
	return out, nil
}

// LoadMemberships returns the memberships of those of ids that have any,
// sorted by audience, looking them up 500 at a time.
func (db *DB) LoadMemberships(ctx context.Context, ids []string) (map[string][]kith.Member, error) {
	out := make(map[string][]kith.Member)
	err := lookupProfiles(ctx, db.audR, `SELECT profile_id, members FROM profiles WHERE members IS NOT NULL AND profile_id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var blob []byte
		if err := rows.Scan(&id, &blob); err != nil {
			return err
		}
		ms, err := membership.Members(id, blob)
		if err != nil {
			return fmt.Errorf("profile %s: %w", id, err)
		}
		if len(ms) > 0 {
			out[id] = ms
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load memberships: %w", err)
	}
	return out, nil
}

// lookupProfiles runs query, which ends in "IN ", with ids in lists of up
// to lookupBatch, calling fn for every row.
func lookupProfiles(ctx context.Context, db *sql.DB, query string, ids []string, fn func(*sql.Rows) error) error {
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		args := make([]any, n)
		for i, id := range rest[:n] {
			args[i] = id
		}
		rows, err := db.QueryContext(ctx, query+`(`+placeholders(n, 1)+`)`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := fn(rows); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// nonNil keeps a stored empty state distinguishable from none.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// scanPage is how many profiles ScanStates reads per query.
const scanPage = 2000

// ScanStates calls fn for every profile with a state or a membership, in
// ordinal order (the order in which profiles were first stored), with its
// state (nil if it has none) and its memberships. It reads in pages, each
// a short read of its own, so a scan over millions of profiles pins no
// snapshot (and no WAL growth) for its whole duration and fn may write to
// the store meanwhile; a profile stored during the scan is visited, as it
// comes after the current page.
func (db *DB) ScanStates(ctx context.Context, fn func(id string, state []byte, members []kith.Member) error) error {
	type profile struct {
		id       string
		state    []byte
		hasState bool
		members  []byte
	}
	page := make([]profile, 0, scanPage)
	var after int64
	for {
		page = page[:0]
		rows, err := db.audR.QueryContext(ctx, `SELECT id, profile_id, state, state IS NOT NULL, members FROM profiles
			WHERE id > $1 AND (state IS NOT NULL OR members IS NOT NULL) ORDER BY id LIMIT $2`, after, scanPage)
		if err != nil {
			return fmt.Errorf("sqlite: scan states: %w", err)
		}
		for rows.Next() {
			var p profile
			if err := rows.Scan(&after, &p.id, &p.state, &p.hasState, &p.members); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: scan states: %w", err)
			}
			page = append(page, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: scan states: %w", err)
		}
		for _, p := range page {
			var st []byte
			if p.hasState {
				st = nonNil(p.state)
			}
			var ms []kith.Member
			if len(p.members) > 0 {
				if ms, err = membership.Members(p.id, p.members); err != nil {
					return fmt.Errorf("sqlite: scan states: profile %s: %w", p.id, err)
				}
			}
			if err := fn(p.id, st, ms); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
	}
}

// Members lists up to limit members of audience in ordinal order, starting
// after the profile after ("" for the first page), which must be a known
// profile (EINVALID otherwise; it need not be a member any more). It walks
// the audience's member chunks from the one holding after's ordinal and
// then looks the ordinals' profile ids up, in one read transaction so that
// both agree. Since is not filled in.
func (db *DB) Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := db.audR.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	defer tx.Rollback()
	var from int64
	if after != "" {
		err := tx.QueryRowContext(ctx, `SELECT id FROM profiles WHERE profile_id = $1`, after).Scan(&from)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, kith.Errorf(kith.EINVALID, "members of %q after %q: no such profile", audience, after)
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		from++
	}
	ords, err := func() ([]int64, error) {
		rows, err := tx.QueryContext(ctx, `SELECT chunk, bits FROM member_chunks WHERE audience = $1 AND chunk >= $2 ORDER BY chunk`, audience, from>>membership.ChunkShift)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var ords []int64
		var m membership.Chunk
		for len(ords) < limit && rows.Next() {
			var chunk int64
			var b sql.RawBytes
			if err := rows.Scan(&chunk, &b); err != nil {
				return nil, err
			}
			if err := membership.DecodeChunk(b, &m); err != nil {
				return nil, fmt.Errorf("chunk %d: %w", chunk, err)
			}
			base := chunk << membership.ChunkShift
			m.Each(max(from-base, 0), func(i int64) bool {
				ords = append(ords, base+i)
				return len(ords) < limit
			})
		}
		return ords, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	ids := make(map[int64]string, len(ords))
	for rest := ords; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		rows, err := tx.QueryContext(ctx, `SELECT id, profile_id FROM profiles WHERE id IN (`+placeholders(n, 1)+`)`, int64Args(rest[:n])...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		for rows.Next() {
			var ord int64
			var id string
			if err := rows.Scan(&ord, &id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: members: %w", err)
			}
			ids[ord] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		rest = rest[n:]
	}
	out := make([]kith.Member, 0, len(ords))
	for _, ord := range ords {
		if id, ok := ids[ord]; ok {
			out = append(out, kith.Member{Audience: audience, ProfileID: id})
		}
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

// historyRow is one row of the history: a change (n = 1, profileID set)
// or a bulk change (n > 1, ids front-coded) covering seqs seq to
// seq+n-1.
type historyRow struct {
	seq, n    int64
	audience  string
	profileID sql.NullString
	ids       []byte
	entered   bool
	at        int64
	cause     string
	causeSeq  int64
}

// historyCols are the columns a historyRow scans.
const historyCols = `seq, n, audience, profile_id, profile_ids, entered, at, cause, cause_seq`

func (r *historyRow) scan(rows *sql.Rows) error {
	return rows.Scan(&r.seq, &r.n, &r.audience, &r.profileID, &r.ids, &r.entered, &r.at, &r.cause, &r.causeSeq)
}

// change returns the change with the given seq and profile of r.
func (r *historyRow) change(seq int64, profile string) kith.MembershipChange {
	return kith.MembershipChange{Seq: seq, Audience: r.audience, ProfileID: profile, Entered: r.entered, At: fromMicros(r.at), Cause: r.cause, CauseSeq: r.causeSeq}
}

// expand appends r's changes with seq > after to out until out holds
// limit.
func (r *historyRow) expand(out []kith.MembershipChange, after int64, limit int) ([]kith.MembershipChange, error) {
	if r.profileID.Valid {
		if r.seq > after && len(out) < limit {
			out = append(out, r.change(r.seq, r.profileID.String))
		}
		return out, nil
	}
	return membership.ExpandBulk(out, r.change(r.seq, ""), r.ids, after, limit)
}

// find returns the seq of profile in bulk row r, or 0.
func (r *historyRow) find(profile string) (int64, error) {
	return membership.FindInBulk(r.ids, r.seq, profile)
}

// MembershipChanges returns up to limit changes with Seq > after in Seq
// order, only of audience and of profileID where those are not "", a bulk
// change expanded into one change per profile. The query names only the
// filters given, so that SQLite walks the (audience, seq) or (profile_id,
// seq) index instead of the whole history; for one profile, the bulk rows
// after the position are searched as well (there are few of them, a
// handful per backfill).
func (db *DB) MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := db.audR.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: held changes: %w", err)
	}
	defer tx.Rollback()
	out, err := membershipChanges(ctx, tx, after, audience, profileID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: held changes: %w", err)
	}
	return out, nil
}

func membershipChanges(ctx context.Context, tx *sql.Tx, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	// The first row to read: the one holding seq after+1, which is a bulk
	// row that began at or before after if one straddles it.
	from := after + 1
	var seq, n int64
	err := tx.QueryRowContext(ctx, `SELECT seq, n FROM changes WHERE seq <= $1 ORDER BY seq DESC LIMIT 1`, after).Scan(&seq, &n)
	if err == nil && seq+n-1 > after {
		from = seq
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	// each runs q and calls fn with every row until fn returns false.
	each := func(q string, args []any, fn func(r *historyRow) (bool, error)) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var r historyRow
		for rows.Next() {
			if err := r.scan(rows); err != nil {
				return err
			}
			if more, err := fn(&r); err != nil || !more {
				return err
			}
		}
		return rows.Err()
	}
	var out []kith.MembershipChange
	if profileID == "" {
		q := `SELECT ` + historyCols + ` FROM changes WHERE seq >= $1`
		args := []any{from}
		if audience != "" {
			q += ` AND audience = $2`
			args = append(args, audience)
		}
		// Every row holds at least one change after the position.
		q += fmt.Sprintf(` ORDER BY seq LIMIT $%d`, len(args)+1)
		args = append(args, limit)
		err := each(q, args, func(r *historyRow) (bool, error) {
			var err error
			out, err = r.expand(out, after, limit)
			return len(out) < limit, err
		})
		return out, err
	}

	q := `SELECT ` + historyCols + ` FROM changes WHERE profile_id = $1 AND seq > $2`
	args := []any{profileID, after}
	if audience != "" {
		q += ` AND audience = $3`
		args = append(args, audience)
	}
	q += fmt.Sprintf(` ORDER BY seq LIMIT $%d`, len(args)+1)
	args = append(args, limit)
	if err := each(q, args, func(r *historyRow) (bool, error) {
		out = append(out, r.change(r.seq, r.profileID.String))
		return true, nil
	}); err != nil {
		return nil, err
	}
	// Bulk rows name the profile at most once each.
	var bulk []kith.MembershipChange
	q = `SELECT ` + historyCols + ` FROM changes WHERE n > 1 AND seq >= $1`
	args = []any{from}
	if audience != "" {
		q += ` AND audience = $2`
		args = append(args, audience)
	}
	q += ` ORDER BY seq`
	if err := each(q, args, func(r *historyRow) (bool, error) {
		seq, err := r.find(profileID)
		if err != nil {
			return false, err
		}
		if seq > after {
			bulk = append(bulk, r.change(seq, profileID))
		}
		return len(bulk) < limit, nil
	}); err != nil {
		return nil, err
	}
	out = append(out, bulk...)
	slices.SortFunc(out, func(a, b kith.MembershipChange) int { return cmp.Compare(a.Seq, b.Seq) })
	return out[:min(len(out), limit)], nil
}

// AudienceNetChanges implements kith.AudienceStore.
func (db *DB) AudienceNetChanges(ctx context.Context, audience string, since time.Time) (map[string]int64, error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT date(at / 1000000, 'unixepoch'), sum(CASE WHEN entered THEN n ELSE -n END)
		FROM changes WHERE audience = $1 AND at >= $2 GROUP BY 1`, audience, micros(since))
	if err != nil {
		return nil, fmt.Errorf("sqlite: audience net changes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var day string
		var n int64
		if err := rows.Scan(&day, &n); err != nil {
			return nil, fmt.Errorf("sqlite: audience net changes: %w", err)
		}
		out[day] = n
	}
	return out, rows.Err()
}
