package membership

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kithcdp/kith"
)

// Plan is one kith.AudienceBatch checked against the stored memberships
// of the profiles it names and turned into the rows a store writes. Both
// stores plan with it, so that they accept and reject the same batches and
// write the same rows; it does no I/O, so each store reads and writes in
// its own way:
//
//  1. NewPlan indexes the batch; IDs lists the profiles it names.
//  2. The store reads the rows of those profiles (or more: a run of
//     ordinals, the whole table) and hands them to Found, in any order and
//     in as many calls as suits it; NotFound lists those still unread.
//  3. NewProfiles says how many profiles the batch stores for the first
//     time, so that a store can reserve their ordinals, and Finish gives
//     them the ordinals from the first one on and reports a conflict.
//  4. Rows, Chunks, Sizes and History are what the store writes.
//
// A profile is planned as soon as its row is found: its entries and exits,
// in batch order, are replayed over its stored memberships. Changes to
// different profiles are independent, so this finds a conflict exactly
// when replaying the whole batch in order would, and Finish reports the
// one that replay meets first whatever order the rows came in.
//
// The plan keeps b, which must not change until the plan is done with.
type Plan struct {
	b        *kith.AudienceBatch
	ids      []string // the profiles the batch names, first named first
	index    *idTable
	profiles []profile // parallel to ids
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

	conflicts []conflict
	// Scratch space of Found, reused from call to call.
	foundIDs []string
	foundIdx []int32
}

// held is one of a profile's memberships while a batch is planned: the
// audience (an index in Plan.auds) and when the profile entered it (unix
// microseconds). It holds no pointer, so that a million profiles'
// memberships cost the garbage collector nothing to scan.
type held struct {
	aud   int32
	since int64
}

// Flags of a profile.
const (
	hasRow   = 1 << iota // it had a row before the batch
	hadState             // that row's state was not NULL
	dirty                // the batch changed its memberships
)

// profile is one profile a batch names, as the batch is planned.
type profile struct {
	ord     int64 // 0 until the profile has an ordinal
	members []held
	state   int32 // 1 + the index in b.States of its last state; 0 for none
	flags   uint8
}

// chunkOps is what a batch does to one member chunk: the offsets it ends
// up adding and removing (a later change to an offset overrides an
// earlier one).
type chunkOps struct{ add, remove Chunk }

// conflict is a change that contradicts a profile's memberships: the
// kind of change (as in Plan.ops), the profile, and which of the
// profile's changes of that kind it is (a bulk change may name a profile
// twice). Planning stops at a profile's first.
type conflict struct {
	kind, profile, nth int32
}

// NewPlan lists the profiles b names, in the order it first names them
// (States, then Changes, then Bulk), and groups the changes by profile.
// The index starts with room for the longest list, the fewest profiles the
// batch can name, and grows.
func NewPlan(b *kith.AudienceBatch) *Plan {
	most := max(len(b.States), len(b.Changes))
	for _, bc := range b.Bulk {
		most = max(most, len(bc.ProfileIDs))
	}
	p := &Plan{b: b, index: newIDTable(most), audIdx: map[string]int32{}}
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
		p.kindAud, p.kindAt = append(p.kindAud, p.aud(c.Audience)), append(p.kindAt, c.At.UnixMicro())
	}
	for _, bc := range b.Bulk {
		p.kindAud, p.kindAt = append(p.kindAud, p.aud(bc.Audience)), append(p.kindAt, bc.At.UnixMicro())
	}

	p.profiles = make([]profile, len(p.ids))
	for i, j := range stateIdx {
		p.profiles[j].state = int32(i + 1)
	}
	p.order = make([]int32, 0, len(p.ids))
	return p
}

// IDs returns the profiles the batch names, each once, in the order it
// first names them. The slice is the plan's: do not change it.
func (p *Plan) IDs() []string { return p.ids }

// NotFound returns the profiles the batch names whose rows Found has not
// been given, in the order the batch first names them.
func (p *Plan) NotFound() []string {
	var out []string
	for i, id := range p.ids {
		if p.profiles[i].flags&hasRow == 0 {
			out = append(out, id)
		}
	}
	return out
}

// aud returns the index of audience, adding it.
func (p *Plan) aud(audience string) int32 {
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
func (p *Plan) state(i int) ([]byte, bool) {
	if s := p.profiles[i].state; s > 0 {
		return p.b.States[s-1].State, true
	}
	return nil, false
}

// hasState reports whether profile i has a state after the batch.
func (p *Plan) hasState(i int) bool {
	if st, ok := p.state(i); ok {
		return st != nil
	}
	return p.profiles[i].flags&hadState != 0
}

// StoredRow is a profile's row as a store read it, for Found.
type StoredRow struct {
	Ord      int64  // the profile's ordinal
	ID       string // the profile id
	Members  []byte // its memberships as stored (see AppendMember); nil for none
	HasState bool   // its state is not NULL
}

// Found takes stored rows and plans the profiles among them that the
// batch names. Rows of other profiles, and a profile's row after the
// first, are passed over, so that a store may read more than the batch
// needs (a run of ordinals, the whole table). Members is read during the
// call only. Found fails only on stored memberships it cannot decode; a
// conflict is reported by Finish, before which every row must be found.
func (p *Plan) Found(rows []StoredRow) error {
	ids := p.foundIDs[:0]
	for k := range rows {
		ids = append(ids, rows[k].ID)
	}
	idx := slices.Grow(p.foundIdx[:0], len(rows))[:len(rows)]
	p.index.lookup(ids, idx, false, false)
	clear(ids)
	p.foundIDs, p.foundIdx = ids, idx
	for k := range rows {
		if idx[k] >= 0 {
			if err := p.found(idx[k], &rows[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// found takes the stored row of profile i and plans the profile.
func (p *Plan) found(i int32, r *StoredRow) error {
	pr := &p.profiles[i]
	if pr.flags&hasRow != 0 {
		return nil // read already: planned once
	}
	pr.ord = r.Ord
	pr.flags |= hasRow
	if r.HasState {
		pr.flags |= hadState
	}
	if n := p.opStart[i+1] - p.opStart[i]; n > 0 {
		// Room for the stored memberships (three bytes at least each)
		// and the entries.
		pr.members = make([]held, 0, len(r.Members)/3+n)
	}
	if err := EachMember(r.Members, func(audience []byte, since int64) {
		aud, ok := p.audIdx[string(audience)]
		if !ok {
			aud = p.aud(string(audience))
		}
		pr.members = append(pr.members, held{aud, since})
	}); err != nil {
		return fmt.Errorf("profile %s: %w", p.ids[i], err)
	}
	p.planProfile(i)
	return nil
}

// isNew reports whether profile i is stored for the first time: it has
// no row and the batch gives it a membership change or a state (deleting
// a state that was never stored stores nothing).
func (p *Plan) isNew(i int) bool {
	if p.profiles[i].flags&hasRow != 0 {
		return false
	}
	st, _ := p.state(i)
	return p.opStart[i+1] > p.opStart[i] || st != nil
}

// NewProfiles returns how many profiles whose rows were not found the
// batch stores for the first time: Finish gives them consecutive
// ordinals.
func (p *Plan) NewProfiles() int {
	n := 0
	for i := range p.profiles {
		if p.isNew(i) {
			n++
		}
	}
	return n
}

// Finish gives the profiles stored for the first time the ordinals from
// next on, in the order the batch first names them, and plans them; call
// it once, after every row has been found. A change that contradicts the
// memberships (an entry for a member, an exit for a non-member) is
// ECONFLICT, naming the first that replaying the batch in order meets:
// the engine's view of the memberships and the store's have drifted
// apart, and the store must write nothing.
func (p *Plan) Finish(next int64) error {
	for i := range p.profiles {
		if p.isNew(i) {
			p.profiles[i].ord = next
			next++
			p.planProfile(int32(i))
		}
	}
	if len(p.conflicts) > 0 {
		return p.firstConflict()
	}
	return nil
}

// planProfile replays profile i's changes over its memberships, recording
// what they do to the member chunks and sizes; at an entry for a member or
// an exit for a non-member it records the conflict and stops.
func (p *Plan) planProfile(i int32) {
	p.order = append(p.order, i)
	pr := &p.profiles[i]
	off := pr.ord & (ChunkSize - 1)
	ops := p.ops[p.opStart[i]:p.opStart[i+1]]
	for j, kind := range ops {
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
			nth := 0
			for _, earlier := range ops[:j] {
				if earlier == kind {
					nth++
				}
			}
			p.conflicts = append(p.conflicts, conflict{kind, i, int32(nth)})
			return
		}
		c := p.lastOps[aud]
		if p.lastChunk[aud] != pr.ord>>ChunkShift {
			m := p.chunks[aud]
			if c = m[pr.ord>>ChunkShift]; c == nil {
				c = &chunkOps{}
				m[pr.ord>>ChunkShift] = c
			}
			p.lastChunk[aud], p.lastOps[aud] = pr.ord>>ChunkShift, c
		}
		if entered {
			pr.members = slices.Insert(pr.members, k, held{aud, p.kindAt[kind]})
			c.add.Add(off)
			c.remove.Remove(off)
			p.sizes[aud]++
		} else {
			pr.members = slices.Delete(pr.members, k, k+1)
			c.remove.Add(off)
			c.add.Remove(off)
			p.sizes[aud]--
		}
		pr.flags |= dirty
	}
}

// firstConflict returns the ECONFLICT error of the recorded conflict that
// comes first in the batch. Each profile's first conflict is recorded, so
// the batch's first is the earliest of them: the one of the earliest kind,
// and within a bulk change the one whose profile it names first.
func (p *Plan) firstConflict() error {
	first := slices.MinFunc(p.conflicts, func(a, b conflict) int { return cmp.Compare(a.kind, b.kind) })
	if int(first.kind) < len(p.b.Changes) {
		c := p.b.Changes[first.kind]
		return conflictError(fmt.Sprintf("change %d", first.kind), c.ProfileID, c.Audience, c.Entered)
	}
	k := int(first.kind) - len(p.b.Changes)
	bc := p.b.Bulk[k]
	nth := map[int32]int32{} // the conflicts in this bulk change, by profile
	for _, c := range p.conflicts {
		if c.kind == first.kind {
			nth[c.profile] = c.nth
		}
	}
	idx := make([]int32, len(bc.ProfileIDs))
	p.index.lookup(bc.ProfileIDs, idx, false, false)
	seen := map[int32]int32{}
	for j, i := range idx {
		if n, ok := nth[i]; ok && seen[i] == n {
			return conflictError(fmt.Sprintf("bulk change %d", k), bc.ProfileIDs[j], bc.Audience, bc.Entered)
		}
		seen[i]++
	}
	// Not reached: the bulk change names every profile recorded.
	return conflictError(fmt.Sprintf("bulk change %d", k), p.ids[first.profile], bc.Audience, bc.Entered)
}

// conflictError describes a change that contradicts the member list.
func conflictError(what, profile, audience string, entered bool) error {
	if entered {
		return kith.Errorf(kith.ECONFLICT, "%s: profile %s entered audience %q but is already a member", what, profile, audience)
	}
	return kith.Errorf(kith.ECONFLICT, "%s: profile %s exited audience %q but is not a member", what, profile, audience)
}

// Row is a profile row a plan writes. The plan's ID, State and
// AppendMembers give its columns; a Row holds no pointer, so that the
// rows of a million profiles cost the garbage collector nothing to scan.
type Row struct {
	Ord int64 // the profile's ordinal, the row's key
	i   int32 // the profile's index in the plan
}

// RowWrites are the profile rows a batch writes, by kind of write, each
// in ordinal order (sequential in the table). A profile whose state and
// memberships the batch leaves as they were has none.
type RowWrites struct {
	// Both are rows to insert (a profile stored for the first time) or to
	// replace both columns of (the batch changes both).
	Both []Row
	// States are existing rows whose state alone changes.
	States []Row
	// Members are existing rows whose memberships alone change.
	Members []Row
	// Deletes are existing rows to delete: they hold neither a state nor
	// a membership any more.
	Deletes []Row
}

// Rows returns the profile rows the batch writes, once Finish succeeded.
func (p *Plan) Rows() RowWrites {
	var w RowWrites
	for _, i := range p.order {
		pr := &p.profiles[i]
		changed, stateSet := pr.flags&dirty != 0, pr.state > 0
		if !changed && !stateSet {
			continue
		}
		empty := !p.hasState(int(i)) && len(pr.members) == 0
		r := Row{pr.ord, i}
		switch {
		case empty && pr.flags&hasRow != 0:
			w.Deletes = append(w.Deletes, r)
		case empty:
		case pr.flags&hasRow == 0 || changed && stateSet:
			w.Both = append(w.Both, r)
		case stateSet:
			w.States = append(w.States, r)
		default:
			w.Members = append(w.Members, r)
		}
	}
	byOrd := func(a, b Row) int { return cmp.Compare(a.Ord, b.Ord) }
	for _, rows := range [...][]Row{w.Both, w.States, w.Members, w.Deletes} {
		if !slices.IsSortedFunc(rows, byOrd) {
			slices.SortFunc(rows, byOrd)
		}
	}
	return w
}

// ID returns the profile id of r.
func (p *Plan) ID(r Row) string { return p.ids[r.i] }

// State returns the state of r after the batch, nil for NULL, when the
// batch replaces it (a row of RowWrites.Both or States).
func (p *Plan) State(r Row) []byte {
	st, _ := p.state(int(r.i))
	return st
}

// AppendMembers appends the memberships of r after the batch, as stored,
// to dst. A profile without memberships appends nothing; its column is
// NULL. It only reads the plan, so rows may be encoded on another
// goroutine while the store writes others.
func (p *Plan) AppendMembers(dst []byte, r Row) []byte {
	var prev int64
	for _, m := range p.profiles[r.i].members {
		dst = AppendMember(dst, p.auds[m.aud], m.since, prev)
		prev = m.since
	}
	return dst
}

// ChunkChange is what a batch does to one member chunk of an audience:
// the members it adds there and those it removes.
type ChunkChange struct {
	Audience string
	Chunk    int64 // the chunk: ordinals Chunk<<ChunkShift on
	ops      *chunkOps
}

// Chunks returns the member chunks the batch changes, by audience and
// then chunk, once Finish succeeded.
func (p *Plan) Chunks() []ChunkChange {
	var out []ChunkChange
	for _, aud := range p.sortedAuds() {
		for _, k := range slices.Sorted(maps.Keys(p.chunks[aud])) {
			out = append(out, ChunkChange{p.auds[aud], k, p.chunks[aud][k]})
		}
	}
	return out
}

// Apply works out the chunk's row after the change from its row before
// (stored, nil when it has none). write says whether the row changes:
// then bits is what it holds, or nil when the chunk is left empty and the
// row is deleted.
func (c ChunkChange) Apply(stored []byte) (bits []byte, write bool, err error) {
	var m Chunk
	if err := DecodeChunk(stored, &m); err != nil {
		return nil, false, fmt.Errorf("audience %q chunk %d: %w", c.Audience, c.Chunk, err)
	}
	for w := range m {
		m[w] = m[w]&^c.ops.remove[w] | c.ops.add[w]
	}
	bits = m.Encode()
	return bits, bits == nil && stored != nil || bits != nil && !bytes.Equal(bits, stored), nil
}

// SizeChange is how much a batch changes the size of an audience.
type SizeChange struct {
	Audience string
	N        int64 // members gained, less members lost; never 0
}

// Sizes returns the audiences whose sizes the batch changes, by audience,
// once Finish succeeded.
func (p *Plan) Sizes() []SizeChange {
	var out []SizeChange
	for _, aud := range p.sortedAuds() {
		if n := p.sizes[aud]; n != 0 {
			out = append(out, SizeChange{p.auds[aud], n})
		}
	}
	return out
}

// sortedAuds returns the plan's audiences by name.
func (p *Plan) sortedAuds() []int32 {
	out := make([]int32, len(p.auds))
	for i := range out {
		out[i] = int32(i)
	}
	slices.SortFunc(out, func(a, b int32) int { return strings.Compare(p.auds[a], p.auds[b]) })
	return out
}

// History returns the rows the batch appends to the history, with the
// seqs from next on: its changes, then its bulk changes. A change is a row
// of its own; a bulk change is one row covering as many seqs as it names
// profiles, with ProfileIDs set (the store keeps them front-coded, see
// EncodeIDs); a bulk change of one profile is stored as a change, and one
// of none has no seq.
func (p *Plan) History(next int64) []HistoryRow {
	out := make([]HistoryRow, 0, len(p.b.Changes)+len(p.b.Bulk))
	for _, c := range p.b.Changes {
		out = append(out, HistoryRow{Seq: next, N: 1, Audience: c.Audience, ProfileID: c.ProfileID, Entered: c.Entered, At: c.At, Cause: c.Cause, CauseSeq: c.CauseSeq})
		next++
	}
	for _, bc := range p.b.Bulk {
		r := HistoryRow{Seq: next, N: int64(len(bc.ProfileIDs)), Audience: bc.Audience, Entered: bc.Entered, At: bc.At, Cause: bc.Cause}
		switch len(bc.ProfileIDs) {
		case 0:
			continue
		case 1:
			r.ProfileID = bc.ProfileIDs[0]
		default:
			r.ProfileIDs = bc.ProfileIDs
		}
		out = append(out, r)
		next += r.N
	}
	return out
}
