package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// testIndex returns an empty index with the given segment sizes and the
// default block length.
func testIndex(minSlots, maxSlots int) *dedupIndex {
	return &dedupIndex{next: minSlots, minSlots: minSlots, maxSlots: maxSlots, blockLen: dedupBlockLen}
}

// testHashes returns n distinct pseudo-random hashes, the same for a seed,
// none of them in skip.
func testHashes(seed uint64, n int, skip map[uint64]bool) []uint64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	seen := make(map[uint64]bool, n)
	out := make([]uint64, 0, n)
	for len(out) < n {
		h := r.Uint64()
		if seen[h] || skip[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

func mustAdd(t *testing.T, d *dedupIndex, h uint64, seq, at int64) {
	t.Helper()
	if err := d.add(h, seq, at); err != nil {
		t.Fatal(err)
	}
}

// checkSegments checks the invariants of every segment: a power of two
// within the size bounds, below the load limit, and counts that match the
// slots.
func checkSegments(t *testing.T, d *dedupIndex) {
	t.Helper()
	for i, s := range d.segs {
		n := len(s.slots)
		if n&(n-1) != 0 || n < d.minSlots || n > d.maxSlots {
			t.Errorf("segment %d has %d slots, want a power of two in [%d, %d]", i, n, d.minSlots, d.maxSlots)
		}
		used, live := 0, 0
		for _, v := range s.slots {
			if v != 0 {
				used++
			}
			if v>>dedupSeqBits != 0 {
				live++
			}
		}
		if used != s.used || live != s.live || used > loadLimit(n) {
			t.Errorf("segment %d: %d used, %d live slots of %d (limit %d), counted %d and %d", i, used, live, n, loadLimit(n), s.used, s.live)
		}
	}
}

// TestDedupIndexFindsEveryID fills indexes of several segment sizes and
// checks that every id entered is a candidate, and that ids never entered
// rarely are.
func TestDedupIndexFindsEveryID(t *testing.T) {
	cases := []struct {
		name               string
		minSlots, maxSlots int
		n                  int
		minSegs            int
	}{
		{"one segment", 1 << 10, 1 << 10, 800, 1},
		{"doubling", 8, 1 << 12, 3000, 8},
		{"many segments", 1 << 6, 1 << 12, 100_000, 25},
		{"default sizes", dedupMinSlots, dedupMaxSlots, 1_000_000, 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.n > 100_000 {
				t.Skip("large")
			}
			d := testIndex(c.minSlots, c.maxSlots)
			hs := testHashes(1, c.n, nil)
			in := make(map[uint64]bool, c.n)
			for i, h := range hs {
				mustAdd(t, d, h, int64(i+1), int64(i))
				in[h] = true
			}
			if len(d.segs) < c.minSegs {
				t.Errorf("%d ids in %d segments, want at least %d", c.n, len(d.segs), c.minSegs)
			}
			if d.len() != c.n {
				t.Errorf("len = %d, want %d", d.len(), c.n)
			}
			checkSegments(t, d)
			var cands []int64
			for i, h := range hs {
				cands = d.candidates(h, cands[:0])
				if !slices.Contains(cands, int64(i+1)) {
					t.Fatalf("id %d (hash %#x, seq %d) not found: candidates %v", i, h, i+1, cands)
				}
			}
			absent := testHashes(2, c.n, in)
			falses := 0
			for _, h := range absent {
				falses += len(d.candidates(h, cands[:0]))
			}
			t.Logf("%d segments, %d false candidates for %d absent ids", len(d.segs), falses, len(absent))
			if falses*10_000 >= len(absent) {
				t.Errorf("%d false candidates for %d absent ids, want < 1 in 10,000", falses, len(absent))
			}
		})
	}
}

// TestDedupIndexCollisions checks that ids whose hashes collide, wholly
// or in the fingerprint, all come back as candidates.
func TestDedupIndexCollisions(t *testing.T) {
	fp := uint64(0xabcdef) << dedupSeqBits
	cases := []struct {
		name   string
		slots  int      // min = max segment size
		hashes []uint64 // entered with seqs 1, 2, …
		probe  uint64
		want   []int64 // candidates, in the order returned
	}{
		{"same hash", 16, []uint64{fp | 5, fp | 5}, fp | 5, []int64{1, 2}},
		{"same fingerprint, next slot", 16, []uint64{fp | 5, fp | 6}, fp | 5, []int64{1, 2}},
		{"same fingerprint, probe starts after it", 16, []uint64{fp | 5, fp | 6}, fp | 6, []int64{2}},
		{"same fingerprint, slot taken", 16, []uint64{fp | 5, 7<<dedupSeqBits | 5, fp | 5}, fp | 5, []int64{1, 3}},
		{"same fingerprint, wrapping", 16, []uint64{fp | 15, fp | 15, fp | 0}, fp | 15, []int64{1, 2, 3}},
		{"other fingerprint", 16, []uint64{fp | 5, 7<<dedupSeqBits | 5}, 8<<dedupSeqBits | 5, nil},
		// fingerprint 0 is taken as 1: no empty slot, no tombstone.
		{"zero fingerprint", 16, []uint64{5, 1<<dedupSeqBits | 5}, 5, []int64{1, 2}},
		// A load limit of 6 per segment: the same hash in three segments,
		// newest first.
		{"across segments", 8, []uint64{fp | 1, 2, 3, 4, 5, 6, fp | 1, 8, 9, 10, 11, 12, fp | 1}, fp | 1, []int64{13, 7, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := testIndex(c.slots, c.slots)
			for i, h := range c.hashes {
				mustAdd(t, d, h, int64(i+1), 0)
			}
			checkSegments(t, d)
			if got := d.candidates(c.probe, nil); !slices.Equal(got, c.want) {
				t.Errorf("candidates(%#x) = %v, want %v", c.probe, got, c.want)
			}
		})
	}
}

// TestDedupIndexTombstones checks that forgotten entries are no longer
// candidates, that the entries probed past them still are, and that new
// entries reuse their slots.
func TestDedupIndexTombstones(t *testing.T) {
	d := testIndex(64, 64)
	hs := testHashes(3, 51, nil) // the load limit of 64 slots
	for i, h := range hs {
		mustAdd(t, d, h, int64(i+1), 0)
	}
	s := d.segs[0]
	if n := s.forget(func(seq int64) bool { return seq%3 == 0 }); n != 51/3 {
		t.Fatalf("forgot %d entries, want 17", n)
	}
	checkSegments(t, d)
	for i, h := range hs {
		seq := int64(i + 1)
		if got := slices.Contains(d.candidates(h, nil), seq); got != (seq%3 != 0) {
			t.Errorf("seq %d: found = %v after forgetting the multiples of 3", seq, got)
		}
	}
	if !s.full() {
		t.Fatal("tombstones should count against the load limit")
	}
	// The segment is full: new entries go to a new one.
	more := testHashes(4, 10, nil)
	for i, h := range more {
		mustAdd(t, d, h, int64(100+i), 0)
	}
	if len(d.segs) != 2 {
		t.Fatalf("%d segments, want 2", len(d.segs))
	}
	// In a segment that is not full, an entry may take a tombstone's slot.
	d = testIndex(64, 64)
	mustAdd(t, d, 9, 1, 0)
	mustAdd(t, d, 9, 2, 0)
	d.segs[0].forget(func(seq int64) bool { return seq == 1 })
	mustAdd(t, d, 9, 3, 0)
	if s := d.segs[0]; s.used != 2 || s.live != 2 {
		t.Errorf("used %d, live %d after reusing a tombstone, want 2 and 2", s.used, s.live)
	}
	if got := d.candidates(9, nil); !slices.Equal(got, []int64{3, 2}) {
		t.Errorf("candidates = %v, want [3 2]", got)
	}
	checkSegments(t, d)
}

// fakeLog is what prune reads, seq → received_at, and the ranges it read.
type fakeLog struct {
	at      map[int64]int64
	queries [][2]int64
	during  func() // called inside each query, with mu released
}

// appendDuring makes the next query, while prune has mu released, append
// the entry of hash h at seq, received at, as a concurrent Append would.
func (l *fakeLog) appendDuring(t *testing.T, d *dedupIndex, h uint64, seq, at int64) {
	l.during = func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		l.at[seq] = at
		mustAdd(t, d, h, seq, at)
		l.during = nil
	}
}

func (l *fakeLog) receivedBefore(_ context.Context, lo, hi, cutoff int64, mark func(int64)) error {
	l.queries = append(l.queries, [2]int64{lo, hi})
	if l.during != nil {
		l.during()
	}
	for seq, at := range l.at {
		if seq >= lo && seq <= hi && at < cutoff {
			mark(seq)
		}
	}
	return nil
}

// TestDedupIndexPrune checks that prune forgets exactly the entries
// received before the cutoff, forgetting and keeping whole blocks and
// dropping whole segments without reading the log.
func TestDedupIndexPrune(t *testing.T) {
	const n = 48 // 4 segments of 16 slots, 12 entries each
	inOrder := func(i int64) int64 { return i }
	outOfOrder := func(i int64) int64 {
		if i%2 == 0 {
			return i
		}
		return 1000 - i
	}
	cases := []struct {
		name     string
		blockLen int
		at       func(i int64) int64 // received_at of entry i (seq i+1)
		cutoff   int64
		logAt    map[int64]int64 // seq → received_at where the log disagrees
		segs     int             // left after the prune
		queries  [][2]int64      // seq ranges read from the log
		segsLeft int             // after pruning again
	}{
		{"before all", 4096, inOrder, -1, nil, 4, nil, 4},
		{"whole segments", 4096, inOrder, 24, nil, 2, nil, 2},
		{"straddling segment", 4096, inOrder, 30, nil, 2, [][2]int64{{25, 36}}, 2},
		{"straddling block", 4, inOrder, 30, nil, 2, [][2]int64{{29, 32}}, 2},
		{"block boundary", 4, inOrder, 28, nil, 2, nil, 2},
		{"out of order", 4096, outOfOrder, 500, nil, 4, [][2]int64{{1, 12}, {13, 24}, {25, 36}, {37, 48}}, 4},
		{"out of order, blocks", 4, outOfOrder, 500, nil, 4, [][2]int64{{1, 12}, {13, 24}, {25, 36}, {37, 48}}, 4},
		{"out of order in one block", 4, func(i int64) int64 {
			if i == 30 {
				return 0
			}
			return i
		}, 20, nil, 3, [][2]int64{{29, 32}}, 3},
		{"all", 4, inOrder, 1000, nil, 0, nil, 0},
		// Whole blocks out of order: the blocks before the cutoff are
		// forgotten without the log, the ones between them kept whole.
		{"out of order, whole blocks", 4, func(i int64) int64 { return (i / 4 % 2) * 1000 }, 500, nil, 4, nil, 4},
		// A straddling segment whose every entry the log says is older
		// is dropped.
		{"straddling segment emptied", 4096, func(i int64) int64 {
			if i == 0 {
				return 1000
			}
			return i
		}, 48, map[int64]int64{1: 0}, 0, [][2]int64{{1, 12}}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := testIndex(16, 16)
			d.blockLen = c.blockLen
			log := &fakeLog{at: map[int64]int64{}}
			hs := testHashes(5, n, nil)
			for i, h := range hs {
				at := c.at(int64(i))
				log.at[int64(i+1)] = at
				mustAdd(t, d, h, int64(i+1), at)
			}
			for seq, at := range c.logAt {
				log.at[seq] = at
			}
			if err := d.prune(t.Context(), c.cutoff, log.receivedBefore); err != nil {
				t.Fatal(err)
			}
			if len(d.segs) != c.segs || !slices.Equal(log.queries, c.queries) {
				t.Errorf("%d segments left after reading %v, want %d after %v", len(d.segs), log.queries, c.segs, c.queries)
			}
			checkSegments(t, d)
			for i, h := range hs {
				seq := int64(i + 1)
				want := log.at[seq] >= c.cutoff
				if got := slices.Contains(d.candidates(h, nil), seq); got != want {
					t.Errorf("seq %d received at %d: found = %v after prune(%d)", seq, log.at[seq], got, c.cutoff)
				}
			}
			// Pruning again at the same cutoff reads nothing more.
			log.queries = nil
			if err := d.prune(t.Context(), c.cutoff, log.receivedBefore); err != nil {
				t.Fatal(err)
			}
			if len(log.queries) != 0 || len(d.segs) != c.segsLeft {
				t.Errorf("pruning again: read %v, %d segments left, want nothing read and %d", log.queries, len(d.segs), c.segsLeft)
			}
			if len(d.segs) == 0 && d.next != d.minSlots {
				t.Errorf("an empty index opens a segment of %d slots next, want %d", d.next, d.minSlots)
			}
		})
	}
}

// TestDedupIndexPruneRacesAppend checks prune with appends and another
// prune running while it reads the log.
func TestDedupIndexPruneRacesAppend(t *testing.T) {
	d := testIndex(16, 16)
	log := &fakeLog{at: map[int64]int64{}}
	hs := testHashes(6, 20, nil)
	for i, h := range hs[:10] {
		at := int64(100)
		if i%2 == 0 {
			at = 0
		}
		log.at[int64(i+1)] = at
		mustAdd(t, d, h, int64(i+1), at)
	}
	// While the prune reads, an append adds an entry received before the
	// cutoff: it came after the prune, which keeps it.
	log.appendDuring(t, d, hs[10], 11, 0)
	if err := d.prune(t.Context(), 50, log.receivedBefore); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs[:11] {
		seq := int64(i + 1)
		want := log.at[seq] >= 50 || seq == 11
		if got := slices.Contains(d.candidates(h, nil), seq); got != want {
			t.Errorf("seq %d: found = %v, want %v", seq, got, want)
		}
	}
	// The next prune is not told that all is received after the cutoff.
	if err := d.prune(t.Context(), 50, log.receivedBefore); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(d.candidates(hs[10], nil), 11) {
		t.Error("the entry added during a prune is kept by the next one")
	}

	// A prune that drops the segment while another reads it.
	log.during = func() {
		log.during = nil
		if err := d.prune(t.Context(), 1000, log.receivedBefore); err != nil {
			t.Error(err)
		}
	}
	if err := d.prune(t.Context(), 80, log.receivedBefore); err != nil {
		t.Fatal(err)
	}
	if len(d.segs) != 0 {
		t.Errorf("%d segments left, want 0", len(d.segs))
	}

	// A block forgotten whole and a straddling one, to which an entry
	// received before the cutoff is added while the prune reads.
	d = testIndex(16, 16)
	d.blockLen = 4
	log = &fakeLog{at: map[int64]int64{1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 100}}
	for seq := int64(1); seq <= 6; seq++ {
		mustAdd(t, d, hs[seq], seq, log.at[seq])
	}
	log.appendDuring(t, d, hs[7], 7, 0)
	found := func() []int64 {
		var out []int64
		for seq := int64(1); seq <= 7; seq++ {
			if slices.Contains(d.candidates(hs[seq], nil), seq) {
				out = append(out, seq)
			}
		}
		return out
	}
	if err := d.prune(t.Context(), 50, log.receivedBefore); err != nil {
		t.Fatal(err)
	}
	if got := found(); !slices.Equal(got, []int64{6, 7}) || !slices.Equal(log.queries, [][2]int64{{5, 6}}) {
		t.Errorf("found %v after reading %v, want [6 7] after [[5 6]]", got, log.queries)
	}
	log.queries = nil
	if err := d.prune(t.Context(), 50, log.receivedBefore); err != nil {
		t.Fatal(err)
	}
	if got := found(); !slices.Equal(got, []int64{6}) || !slices.Equal(log.queries, [][2]int64{{5, 7}}) {
		t.Errorf("pruning again: found %v after reading %v, want [6] after [[5 7]]", got, log.queries)
	}
	checkSegments(t, d)
}

func TestDedupIndexSeqLimit(t *testing.T) {
	d := testIndex(8, 8)
	mustAdd(t, d, 1, dedupMaxSeq, 0)
	if got := d.candidates(1, nil); !slices.Equal(got, []int64{dedupMaxSeq}) {
		t.Errorf("candidates = %v, want [%d]", got, int64(dedupMaxSeq))
	}
	for _, seq := range []int64{dedupMaxSeq + 1, -1} {
		if err := d.add(2, seq, 0); err == nil {
			t.Errorf("add(seq %d) succeeded", seq)
		}
	}
	d = testIndex(8, 8)
	mustAdd(t, d, 1, 5, 0)
	for _, seq := range []int64{5, 4} {
		if err := d.add(2, seq, 0); err == nil {
			t.Errorf("add(seq %d) after seq 5 succeeded", seq)
		}
	}
	checkSegments(t, d)
}

// smallSegments makes the store's dedup segments and blocks small for the
// test.
func smallSegments(t *testing.T, minSlots, maxSlots, blockLen int) {
	oldMin, oldMax, oldBlock := dedupMinSlots, dedupMaxSlots, dedupBlockLen
	dedupMinSlots, dedupMaxSlots, dedupBlockLen = minSlots, maxSlots, blockLen
	t.Cleanup(func() { dedupMinSlots, dedupMaxSlots, dedupBlockLen = oldMin, oldMax, oldBlock })
}

func testOpen(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testEvent(mid string, at time.Time) kith.Message {
	return kith.Message{SourceID: "s1", MessageID: mid, Type: "track", Event: "e", Timestamp: at, ReceivedAt: at, Raw: []byte(`{}`)}
}

// appendDup appends evs and returns which were duplicates.
func appendDup(t *testing.T, db *DB, evs []kith.Message) []bool {
	t.Helper()
	res, err := db.Append(t.Context(), kith.AppendBatch{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return res.Duplicate
}

// TestDedupStoreSegmentsSurviveRestart appends several segments' worth
// of events, restarts the store, and checks that every messageId is still
// a duplicate and a new one is not.
func TestDedupStoreSegmentsSurviveRestart(t *testing.T) {
	smallSegments(t, 8, 64, 16) // 51 ids per full segment
	dir := t.TempDir()
	db := testOpen(t, dir)
	now := time.Now()
	var evs []kith.Message
	for i := range 600 {
		evs = append(evs, testEvent(fmt.Sprintf("m%d", i), now))
	}
	for i := 0; i < len(evs); i += 100 {
		if dup := appendDup(t, db, evs[i:i+100]); slices.Contains(dup, true) {
			t.Fatalf("batch %d: new ids taken as duplicates: %v", i/100, dup)
		}
	}
	if n := len(db.dedup.segs); n < 10 {
		t.Errorf("%d ids in %d segments, want at least 10", len(evs), n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = testOpen(t, dir)
	d := db.dedup
	if d.len() != len(evs) || len(d.segs) < 10 {
		t.Errorf("after restart: %d ids in %d segments, want %d in at least 10", d.len(), len(d.segs), len(evs))
	}
	checkSegments(t, d)
	dup := appendDup(t, db, append(slices.Clone(evs), testEvent("new", now)))
	for i, e := range evs {
		if !dup[i] {
			t.Errorf("%s is not a duplicate after restart", e.MessageID)
		}
	}
	if dup[len(evs)] {
		t.Error("a new messageId is a duplicate after restart")
	}
}

// TestDedupStorePruneAcrossSegments prunes a store whose segments hold
// ids received on both sides of the cutoff, checks that exactly those
// received before it are forgotten, and that a restart agrees.
func TestDedupStorePruneAcrossSegments(t *testing.T) {
	smallSegments(t, 16, 16, 4) // 12 ids per segment, in 3 blocks
	now := time.Now()
	cases := []struct {
		name string
		at   func(i int) time.Time
		// The rebuild at start assumes a log nearly in receive order
		// (loadDedup): a backdated event before the last one it finds
		// received before the cutoff is not looked at.
		inOrder bool
	}{
		{"in receive order", func(i int) time.Time { return now.Add(-48*time.Hour + time.Duration(i)*25*time.Minute) }, true}, // the cutoff falls in the 15th block
		{"out of order", func(i int) time.Time {
			if i%3 == 0 {
				return now.Add(-48 * time.Hour)
			}
			return now.Add(-time.Hour)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := testOpen(t, dir)
			cutoff := now.Add(-24 * time.Hour)
			var evs []kith.Message
			for i := range 90 {
				evs = append(evs, testEvent(fmt.Sprintf("m%d", i), c.at(i)))
			}
			appendDup(t, db, evs)
			if n := len(db.dedup.segs); n < 7 {
				t.Fatalf("%d ids in %d segments, want at least 7", len(evs), n)
			}
			if err := db.PruneDedup(t.Context(), cutoff); err != nil {
				t.Fatal(err)
			}
			checkSegments(t, db.dedup)
			again := make([]kith.Message, len(evs))
			for i, e := range evs {
				again[i] = testEvent(e.MessageID, now)
			}
			dup := appendDup(t, db, again)
			for i, e := range evs {
				if dup[i] != !e.ReceivedAt.Before(cutoff) {
					t.Errorf("%s received %s ago: Duplicate = %v after PruneDedup(now-24h)", e.MessageID, now.Sub(e.ReceivedAt), dup[i])
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = testOpen(t, dir)
			checkSegments(t, db.dedup)
			dup = appendDup(t, db, again)
			for i, e := range evs {
				reaccepted := e.ReceivedAt.Before(cutoff)
				if !dup[i] && (reaccepted || c.inOrder) {
					t.Errorf("after restart: %s is not a duplicate", e.MessageID)
				}
			}
		})
	}
}

// TestDedupStoreSeqLimit checks that an append whose seqs the index cannot
// hold fails and stores nothing.
func TestDedupStoreSeqLimit(t *testing.T) {
	db := testOpen(t, t.TempDir())
	if _, err := db.logW.ExecContext(t.Context(), `INSERT INTO events (seq, source_id, message_id, type, event, user_id, anonymous_id, ts, received_at, raw)
		VALUES ($1, 's1', 'last', 'track', 'e', '', '', 0, 0, x'')`, int64(dedupMaxSeq)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(t.Context(), kith.AppendBatch{Events: []kith.Message{testEvent("next", time.Now())}}); err == nil {
		t.Fatal("an append past the dedup index's seq limit succeeded")
	}
	if head, err := db.LogHead(t.Context()); err != nil || head != dedupMaxSeq {
		t.Errorf("LogHead = %d, %v, want %d", head, err, int64(dedupMaxSeq))
	}
}

// BenchmarkDedupIndex measures the index's heap per id at a million ids,
// and a lookup (hash and probe) of an id not in it.
func BenchmarkDedupIndex(b *testing.B) {
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := newDedupIndex()
	for i := range n {
		if err := d.add(d.hash("src", "msg-"+strconv.Itoa(i)), int64(i+1), int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	absent := make([]string, 1<<16)
	for i := range absent {
		absent[i] = "absent-" + strconv.Itoa(i)
	}
	var cands []int64
	hits, i := 0, 0
	for b.Loop() {
		cands = d.candidates(d.hash("src", absent[i&(len(absent)-1)]), cands[:0])
		hits += len(cands)
		i++
	}
	runtime.KeepAlive(d)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
	b.ReportMetric(float64(len(d.segs)), "segments")
	b.ReportMetric(float64(hits)/float64(b.N), "false-candidates/op")
}
