package sqlite

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
)

// dedupIndex remembers the messageIds of the dedup window in memory, so
// that the ack path finds duplicates without a random-key B-tree: the log
// stays a pure append. It is rebuilt from the log's tail at start
// (loadDedup), so it survives restarts.
//
// An id (source + "\x00" + messageId) is known by its 64-bit maphash h. The
// index is a list of segments, each a fixed-capacity open-addressing table
// (linear probing) of uint64 slots:
//
//	bits 63..40  fingerprint: h>>40, 24 bits, never 0 (0 is taken as 1)
//	bits 39..0   the log seq of the event (at most dedupMaxSeq)
//
// A slot of 0 is empty, dedupTombstone (fingerprint 0) a forgotten entry.
// The home slot is h's low bits, which the fingerprint does not use. A slot
// is 8 bytes and a segment is filled to at most 4/5 of its slots, so a full
// segment costs 10 bytes per id. Segments are filled in append order: when
// the open one reaches its load limit a new one opens, and the old one is
// never written again except to tombstone, so nothing is ever rehashed
// (nor could be: the slots do not hold the hash's low bits). The first
// segment has dedupMinSlots slots (8 KiB) and each next one twice as many
// up to dedupMaxSlots (32 MiB), so a small store stays small; a rebuild at
// start sizes its first segment for the rows it will read. On top of the
// 10 bytes per id comes the open segment's free part, at most one segment:
// BenchmarkDedupIndex measures 16.8 bytes per id at a million ids, 13.4 at
// 5 million and 10.1 at 20 million (200 MB), where the map this replaced
// took 56, 45 and 45.
//
// Slots hold no key, only fingerprints: a lookup probes every segment,
// newest first, and returns each seq whose fingerprint matches as a
// candidate, which the caller verifies against the log row (eventKeys).
// A wrong candidate costs a row read, never an event; an absent id yields
// one with probability about probes/2^24 per segment (~13 slots probed at
// the 4/5 load limit). A lookup costs a cache (and TLB) miss per segment,
// ~0.1 µs, which is why segments are large: 20M ids are 6 segments of
// 2^22 slots after a restart (~0.8 µs per absent id), 17 when they grew
// from an empty store (~1.2 µs, until the small segments are pruned),
// where the map took ~0.6.
//
// Each segment keeps, per block of 4096 entries, their seq range and
// receive times, which lets PruneDedup forget or keep a block whole (and
// drop a segment whole); only blocks straddling the cutoff need the log.
//
// The index itself is not safe for concurrent use: append and loadDedup
// hold mu around it, and prune takes mu itself.
type dedupIndex struct {
	mu                 sync.Mutex
	seed               maphash.Seed
	segs               []*dedupSeg // oldest first; the last one is open until full
	next               int         // slots of the next segment to open
	minSlots, maxSlots int
	blockLen           int      // entries per dedupBlock
	last               int64    // the last seq added
	home               []uint64 // scratch for candidates
}

// dedupSeg is one table of the index.
type dedupSeg struct {
	slots []uint64 // len is a power of two
	used  int      // slots not empty: live entries and tombstones
	live  int
	// blocks summarize the entries in add order, blockLen per block.
	blocks []dedupBlock
}

// dedupBlock bounds consecutive entries of a segment. Entries are added in
// seq order, so every entry with a seq in [lo, hi] is in the block.
type dedupBlock struct {
	lo, hi int64 // seqs of the first and last entry added
	// Every live entry of the block was received in [minAt, maxAt], unix
	// µs (or its log row was erased since). minAt is math.MaxInt64 once
	// the block has none.
	minAt, maxAt int64
	n            int // entries added
}

const (
	dedupSeqBits = 40
	// dedupMaxSeq is the highest log seq the index can hold (~1.1e12);
	// append fails before committing a seq above it.
	dedupMaxSeq = 1<<dedupSeqBits - 1
	// dedupTombstone marks a forgotten entry: fingerprint 0, which no live
	// entry has, so it neither matches nor ends a probe.
	dedupTombstone uint64 = dedupMaxSeq
)

// Segment sizes, in slots, powers of two, and the entries per block;
// variables so that tests can make them small.
var (
	dedupMinSlots = 1 << 10 // 8 KiB
	dedupMaxSlots = 1 << 22 // 32 MiB, 3.3M ids
	dedupBlockLen = 4096    // 40 bytes per 4096 ids
)

func newDedupIndex() *dedupIndex {
	lo := max(8, dedupMinSlots)
	hi := max(lo, dedupMaxSlots)
	return &dedupIndex{seed: maphash.MakeSeed(), next: lo, minSlots: lo, maxSlots: hi, blockLen: max(1, dedupBlockLen)}
}

func (d *dedupIndex) hash(source, mid string) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(source)
	h.WriteByte(0)
	h.WriteString(mid)
	return h.Sum64()
}

// sizeFor makes the next segment large enough for n ids (within the size
// bounds), so that a rebuild at start does not go through the small sizes.
func (d *dedupIndex) sizeFor(n int64) {
	s := d.minSlots
	for s < d.maxSlots && int64(loadLimit(s)) < n {
		s *= 2
	}
	d.next = s
}

func loadLimit(slots int) int { return slots * 4 / 5 }

func fingerprint(h uint64) uint64 {
	if fp := h >> dedupSeqBits; fp != 0 {
		return fp
	}
	return 1
}

// add enters the id of hash h, stored at seq and received at (unix µs).
// The caller has checked that the id is not in the index already. Seqs
// must come in increasing order, as the log assigns them.
func (d *dedupIndex) add(h uint64, seq, at int64) error {
	if seq < 0 || seq > dedupMaxSeq {
		return fmt.Errorf("sqlite: dedup index: log seq %d does not fit in %d bits", seq, dedupSeqBits)
	}
	if seq <= d.last && len(d.segs) > 0 {
		return fmt.Errorf("sqlite: dedup index: log seq %d added after %d", seq, d.last)
	}
	if len(d.segs) == 0 || d.segs[len(d.segs)-1].full() {
		d.segs = append(d.segs, newDedupSeg(d.next))
		d.next = min(2*d.next, d.maxSlots)
	}
	d.segs[len(d.segs)-1].insert(h, seq, at, d.blockLen)
	d.last = seq
	return nil
}

// candidates appends to dst the seqs of the entries whose fingerprint
// matches h's, newest segment first. The id of hash h is in the index only
// if one of them holds it.
func (d *dedupIndex) candidates(h uint64, dst []int64) []int64 {
	// Read every segment's home slot first: these loads do not depend on
	// each other, so their cache misses overlap instead of coming one
	// segment after another (half the time of probing in turn at 5M ids).
	// A segment whose home slot is empty does not hold the id.
	home := d.home[:0]
	for _, s := range d.segs {
		home = append(home, s.slots[h&uint64(len(s.slots)-1)])
	}
	d.home = home
	for i := len(d.segs) - 1; i >= 0; i-- {
		if home[i] != 0 {
			dst = d.segs[i].lookup(h, dst)
		}
	}
	return dst
}

// len returns the number of live entries.
func (d *dedupIndex) len() int {
	n := 0
	for _, s := range d.segs {
		n += s.live
	}
	return n
}

func newDedupSeg(slots int) *dedupSeg {
	return &dedupSeg{slots: make([]uint64, slots)}
}

// full reports whether the segment is at its load limit. Below it there is
// always an empty slot, which ends every probe.
func (s *dedupSeg) full() bool { return s.used >= loadLimit(len(s.slots)) }

func (s *dedupSeg) insert(h uint64, seq, at int64, blockLen int) {
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v != 0 && v != dedupTombstone {
			continue
		}
		if v == 0 {
			s.used++
		}
		s.slots[i] = fingerprint(h)<<dedupSeqBits | uint64(seq)
		s.live++
		if n := len(s.blocks); n == 0 || s.blocks[n-1].n >= blockLen {
			s.blocks = append(s.blocks, dedupBlock{lo: seq, minAt: math.MaxInt64, maxAt: math.MinInt64})
		}
		b := &s.blocks[len(s.blocks)-1]
		b.hi, b.n = seq, b.n+1
		b.minAt, b.maxAt = min(b.minAt, at), max(b.maxAt, at)
		return
	}
}

func (s *dedupSeg) lookup(h uint64, dst []int64) []int64 {
	mask := uint64(len(s.slots) - 1)
	fp := fingerprint(h)
	for i := h & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return dst
		}
		if v>>dedupSeqBits == fp {
			dst = append(dst, int64(v&dedupMaxSeq))
		}
	}
}

// forget tombstones the live entries whose seq drop reports, and returns
// how many.
func (s *dedupSeg) forget(drop func(seq int64) bool) int {
	n := 0
	for i, v := range s.slots {
		if v>>dedupSeqBits != 0 && drop(int64(v&dedupMaxSeq)) {
			s.slots[i] = dedupTombstone
			n++
		}
	}
	s.live -= n
	return n
}

// receivedBefore calls mark with the seq of each log row in [lo, hi]
// received before cutoff (unix µs).
type receivedBefore func(ctx context.Context, lo, hi, cutoff int64, mark func(seq int64)) error

// prune forgets the entries received before cutoff (unix µs), exactly. A
// block of entries (dedupBlock) received entirely before it is forgotten
// by its seq range, one received entirely after it is kept, and in one
// that straddles it the entries whose rows below finds are tombstoned. A
// segment whose blocks are all before the cutoff is dropped whole.
//
// below reads the log: every row in the straddling blocks' seq ranges,
// since received_at has no index. In a log nearly in receive order (see
// loadDedup) that is a block or two, a few thousand rows; in one received
// far out of order it can be every segment's range. So prune takes mu to
// decide what to drop and what to query, releases it for the queries, and
// takes it again to tombstone. Appends in between only add entries with
// seqs above the ranges looked at, which a prune that ran before them
// would not have forgotten either.
func (d *dedupIndex) prune(ctx context.Context, cutoff int64, below receivedBefore) error {
	type span struct {
		lo, hi int64
		query  bool // else every entry in the span is forgotten
	}
	type straddling struct {
		s       *dedupSeg
		blocks  []dedupBlock // as they were when the spans were chosen
		spans   []span
		lo, hi  int64    // of the spans
		forgets []uint64 // bit i: seq lo+i is to be forgotten
	}
	var todo []straddling
	d.mu.Lock()
	keep := d.segs[:0]
	for _, s := range d.segs {
		t := straddling{s: s}
		gone := true // every live entry received before the cutoff
		// extend: the previous block is in the last span, so this one,
		// next in seq order, may join it. A block kept whole in between
		// must not be covered by a span: every seq in a span that is not
		// queried is forgotten.
		extend := false
		for _, b := range s.blocks {
			var sp span
			switch {
			case b.minAt >= cutoff: // all after, or none left
				if b.minAt != math.MaxInt64 {
					gone = false
				}
				extend = false
				continue
			case b.maxAt < cutoff:
				sp = span{lo: b.lo, hi: b.hi}
			default:
				gone = false
				sp = span{lo: b.lo, hi: b.hi, query: true}
			}
			if n := len(t.spans); extend && t.spans[n-1].query == sp.query {
				t.spans[n-1].hi = sp.hi
			} else {
				t.spans = append(t.spans, sp)
			}
			extend = true
		}
		if gone {
			continue // drop
		}
		if len(t.spans) > 0 {
			t.blocks = slices.Clone(s.blocks)
			t.lo, t.hi = t.spans[0].lo, t.spans[len(t.spans)-1].hi
			todo = append(todo, t)
		}
		keep = append(keep, s)
	}
	clear(d.segs[len(keep):])
	d.segs = keep
	if len(d.segs) == 0 {
		d.next = d.minSlots
	}
	d.mu.Unlock()

	for i := range todo {
		t := &todo[i]
		t.forgets = make([]uint64, (t.hi-t.lo)/64+1)
		mark := func(seq int64) {
			if seq >= t.lo && seq <= t.hi {
				t.forgets[(seq-t.lo)/64] |= 1 << ((seq - t.lo) % 64)
			}
		}
		for _, sp := range t.spans {
			if !sp.query {
				for seq := sp.lo; seq <= sp.hi; seq++ {
					mark(seq)
				}
			} else if err := below(ctx, sp.lo, sp.hi, cutoff, mark); err != nil {
				return err
			}
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range todo {
		if !slices.Contains(d.segs, t.s) {
			continue // dropped by a concurrent prune
		}
		t.s.forget(func(seq int64) bool {
			return seq >= t.lo && seq <= t.hi && t.forgets[(seq-t.lo)/64]&(1<<((seq-t.lo)%64)) != 0
		})
		for i, was := range t.blocks {
			b := &t.s.blocks[i]
			if b.n != was.n || was.minAt >= cutoff {
				// Entries added since may have been received before
				// the cutoff: the old bounds stay.
				continue
			}
			if was.maxAt < cutoff {
				b.minAt = math.MaxInt64 // none left
			} else {
				// What is left was received at or after the cutoff
				// (or its row was erased, and it can never be
				// verified).
				b.minAt = max(b.minAt, cutoff)
			}
		}
	}
	d.segs = slices.DeleteFunc(d.segs, func(s *dedupSeg) bool { return s.live == 0 })
	if len(d.segs) == 0 {
		d.next = d.minSlots
	}
	return nil
}
