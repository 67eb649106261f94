// Package membership owns what both stores keep for the audience engine,
// and how a batch of the engine's changes becomes rows: the stored form of
// audience memberships (per-audience member lists as chunks of a bitmap
// over profile ordinals, a profile's own memberships as one compact blob,
// the history's rows with the profile ids of a bulk change front-coded)
// and of definitions, and Plan, which checks a kith.AudienceBatch against
// the stored memberships and works out every row it writes. Keeping it in
// one place keeps the embedded store and PostgreSQL byte-compatible,
// accepting and refusing the same batches, and tested once; each store
// keeps only its SQL and its way of reading and writing the rows.
package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/kithcdp/kith"
)

// Member chunks: an audience's member list is a set of ordinals (stable
// per profile, assigned by the store), kept as one row per run of
// ChunkSize ordinals. A chunk with fewer than sparseLimit members is
// stored as its members' offsets in the chunk, ascending, two bytes each
// (little endian); a fuller one as a bitmap of bitmapBytes bytes, offset i
// in bit i%8 of byte i/8. The two are told apart by length: a sparse chunk
// is always shorter than a bitmap. An empty chunk has no row.
const (
	ChunkShift  = 12
	ChunkSize   = 1 << ChunkShift
	bitmapBytes = ChunkSize / 8
	sparseLimit = bitmapBytes / 2
)

// Chunk is one chunk's members in memory, offset i in bit i%64 of word
// i/64.
type Chunk [ChunkSize / 64]uint64

func (m *Chunk) Add(i int64)    { m[i>>6] |= 1 << (i & 63) }
func (m *Chunk) Remove(i int64) { m[i>>6] &^= 1 << (i & 63) }

// Count returns the number of members.
func (m *Chunk) Count() int {
	n := 0
	for _, w := range m {
		n += bits.OnesCount64(w)
	}
	return n
}

// DecodeChunk reads a stored chunk into m.
func DecodeChunk(b []byte, m *Chunk) error {
	*m = Chunk{}
	switch {
	case len(b) == bitmapBytes:
		for i := range m {
			m[i] = binary.LittleEndian.Uint64(b[i*8:])
		}
	case len(b)%2 == 0 && len(b) < bitmapBytes:
		for i := 0; i < len(b); i += 2 {
			m.Add(int64(binary.LittleEndian.Uint16(b[i:]) & (ChunkSize - 1)))
		}
	default:
		return fmt.Errorf("member chunk of %d bytes", len(b))
	}
	return nil
}

// Encode returns m as stored: nil when it is empty.
func (m *Chunk) Encode() []byte {
	n := m.Count()
	switch {
	case n == 0:
		return nil
	case n < sparseLimit:
		out := make([]byte, 0, 2*n)
		m.Each(0, func(i int64) bool {
			out = binary.LittleEndian.AppendUint16(out, uint16(i))
			return true
		})
		return out
	default:
		out := make([]byte, bitmapBytes)
		for i, w := range m {
			binary.LittleEndian.PutUint64(out[i*8:], w)
		}
		return out
	}
}

// Each calls fn with every member offset >= from, ascending, until fn
// returns false; it reports whether fn always returned true.
func (m *Chunk) Each(from int64, fn func(i int64) bool) bool {
	for w := from >> 6; w < int64(len(m)); w++ {
		word := m[w]
		if w == from>>6 {
			word &^= 1<<(from&63) - 1
		}
		for word != 0 {
			if !fn(w<<6 + int64(bits.TrailingZeros64(word))) {
				return false
			}
			word &= word - 1
		}
	}
	return true
}

// Memberships of a profile, as stored in its row: per membership, sorted
// by audience key, the key's length (uvarint), the key and the time of
// entry in unix microseconds, as a varint difference from the previous
// membership's (from 0 for the first): the memberships a backfill gives
// share one time, so each takes a byte. No memberships are stored as
// NULL.

// AppendMember appends one membership to a profile's stored memberships,
// prev being the entry time of the one before (0 for the first).
func AppendMember(dst []byte, audience string, since, prev int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(audience)))
	dst = append(dst, audience...)
	return binary.AppendVarint(dst, since-prev)
}

// EachMember calls fn with every membership of a profile's stored
// memberships, in order. The audience bytes are valid during the call.
func EachMember(b []byte, fn func(audience []byte, since int64)) error {
	var since int64
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return errors.New("corrupt memberships")
		}
		key := b[n : n+int(l)]
		b = b[n+int(l):]
		d, n := binary.Varint(b)
		if n <= 0 {
			return errors.New("corrupt memberships")
		}
		b = b[n:]
		since += d
		fn(key, since)
	}
	return nil
}

// Members converts a profile's stored memberships for the API.
func Members(id string, blob []byte) ([]kith.Member, error) {
	var out []kith.Member
	err := EachMember(blob, func(audience []byte, since int64) {
		out = append(out, kith.Member{Audience: string(audience), ProfileID: id, Since: time.UnixMicro(since).UTC()})
	})
	return out, err
}

// CollectMembers adds the memberships of profile id, stored as blob, to
// out when it has any, as kith.AudienceStore's LoadMemberships returns
// them.
func CollectMembers(out map[string][]kith.Member, id string, blob []byte) error {
	ms, err := Members(id, blob)
	if err != nil {
		return fmt.Errorf("profile %s: %w", id, err)
	}
	if len(ms) > 0 {
		out[id] = ms
	}
	return nil
}

// EncodeIDs front-codes the profile ids of a bulk change, in order: per id
// the length of the prefix it shares with the previous id (uvarint), the
// length of the rest (uvarint) and the rest. Profile ids of one
// installation share long prefixes, so a million of them take a few MB.
func EncodeIDs(ids []string) []byte {
	out := make([]byte, 0, 4*len(ids))
	prev := ""
	for _, id := range ids {
		shared := 0
		for shared < len(prev) && shared < len(id) && prev[shared] == id[shared] {
			shared++
		}
		out = binary.AppendUvarint(out, uint64(shared))
		out = binary.AppendUvarint(out, uint64(len(id)-shared))
		out = append(out, id[shared:]...)
		prev = id
	}
	return out
}

// IDReader decodes EncodeIDs' output one id at a time without allocating.
type IDReader struct {
	b   []byte
	cur []byte // the current id, valid until the next call to Next
	err error
}

// NewIDReader reads b, as EncodeIDs wrote it.
func NewIDReader(b []byte) *IDReader { return &IDReader{b: b} }

// ID is the current id, valid until the next call to Next.
func (r *IDReader) ID() []byte { return r.cur }

// Err is what made Next stop early, if anything.
func (r *IDReader) Err() error { return r.err }

// Next moves to the next id, reporting false at the end or on corrupt
// input (then err is set).
func (r *IDReader) Next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	shared, n := binary.Uvarint(r.b)
	if n <= 0 || shared > uint64(len(r.cur)) {
		r.err = errors.New("corrupt bulk change")
		return false
	}
	r.b = r.b[n:]
	l, n := binary.Uvarint(r.b)
	if n <= 0 || l > uint64(len(r.b)-n) {
		r.err = errors.New("corrupt bulk change")
		return false
	}
	r.cur = append(r.cur[:shared], r.b[n:n+int(l)]...)
	r.b = r.b[n+int(l):]
	return true
}

// ExpandBulk appends to out the changes of a bulk history row — one per
// id in ids (front-coded, as EncodeIDs writes them), at consecutive seqs
// from first.Seq, each otherwise like first — whose seq is after after,
// until out holds limit.
func ExpandBulk(out []kith.MembershipChange, first kith.MembershipChange, ids []byte, after int64, limit int) ([]kith.MembershipChange, error) {
	r := NewIDReader(ids)
	for seq := first.Seq; len(out) < limit && r.Next(); seq++ {
		if seq > after && len(r.ID()) > 0 { // an erased profile's seq names no one
			c := first
			c.Seq, c.ProfileID = seq, string(r.ID())
			out = append(out, c)
		}
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("bulk change at seq %d: %w", first.Seq, r.Err())
	}
	return out, nil
}

// FindInBulk returns the seq of profile in a bulk history row whose ids
// start at seq first, or 0 when it is not there.
func FindInBulk(ids []byte, first int64, profile string) (int64, error) {
	r := NewIDReader(ids)
	for seq := first; r.Next(); seq++ {
		if string(r.ID()) == profile {
			return seq, nil
		}
	}
	if r.Err() != nil {
		return 0, fmt.Errorf("bulk change at seq %d: %w", first, r.Err())
	}
	return 0, nil
}

// BulkEraser rewrites the bulk history rows that name erased profiles: a
// store hands it each bulk row it reads (Row), then writes Rewrites back.
type BulkEraser struct {
	erased map[string]bool
	// Rewrites are the rows that named an erased profile, with their new
	// ids.
	Rewrites []BulkRewrite
	// Erased counts the ids replaced.
	Erased int64
}

// BulkRewrite is one bulk history row to write back.
type BulkRewrite struct {
	Seq int64
	IDs []byte
}

// NewBulkEraser returns a BulkEraser for the profiles ids.
func NewBulkEraser(ids []string) *BulkEraser {
	e := &BulkEraser{erased: make(map[string]bool, len(ids))}
	for _, id := range ids {
		e.erased[id] = true
	}
	return e
}

// Row takes one bulk row read from the store.
func (e *BulkEraser) Row(seq int64, ids []byte) error {
	out, k, err := EraseFromBulk(ids, e.erased)
	if err != nil {
		return fmt.Errorf("bulk change at seq %d: %w", seq, err)
	}
	if k > 0 {
		e.Rewrites = append(e.Rewrites, BulkRewrite{Seq: seq, IDs: out})
		e.Erased += int64(k)
	}
	return nil
}

// EraseFromBulk rewrites a bulk history row's ids with the erased profiles
// replaced by empty ids, so the other profiles keep their seqs, and says
// how many it replaced.
func EraseFromBulk(ids []byte, erased map[string]bool) ([]byte, int, error) {
	var all []string
	n := 0
	r := NewIDReader(ids)
	for r.Next() {
		id := string(r.ID())
		if erased[id] {
			id, n = "", n+1
		}
		all = append(all, id)
	}
	if r.Err() != nil {
		return nil, 0, r.Err()
	}
	if n == 0 {
		return ids, 0, nil
	}
	return EncodeIDs(all), n, nil
}

// StateRow is a profile's row as a scan over every profile's state reads
// it: its ordinal, id, state (and whether that is NULL, since a driver may
// read an empty state as nil) and memberships as stored.
type StateRow struct {
	Ord      int64
	ID       string
	State    []byte
	HasState bool
	Members  []byte
}

// ScanStates is the paging of kith.AudienceStore's ScanStates, which both
// stores share: page reads up to size rows of profiles with a state or a
// membership after the ordinal after, in ordinal order (a shorter page is
// the last), and fn is called with each row once its page has been read,
// so that fn may use the store meanwhile: with the state (nil when it has
// none, empty rather than nil when it is empty) and the memberships. An
// error of page, or of decoding a row, is returned wrapped with what (the
// store and operation); fn's is returned as it is.
func ScanStates(what string, size int, page func(after int64) ([]StateRow, error), fn func(id string, state []byte, members []kith.Member) error) error {
	var after int64
	for {
		rows, err := page(after)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, r := range rows {
			state := r.State
			if !r.HasState {
				state = nil
			} else if state == nil {
				state = []byte{}
			}
			var members []kith.Member
			if len(r.Members) > 0 {
				if members, err = Members(r.ID, r.Members); err != nil {
					return fmt.Errorf("%s: profile %s: %w", what, r.ID, err)
				}
			}
			if err := fn(r.ID, state, members); err != nil {
				return err
			}
		}
		if len(rows) < size {
			return nil
		}
		after = rows[len(rows)-1].Ord
	}
}
