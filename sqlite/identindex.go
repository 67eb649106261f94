package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/kithcdp/kith"
)

// identIndex finds the row of an identifier key in state.db's identifiers
// table, in memory, so that the table needs no index on the key: rows are
// appended in rowid order and no B-tree is updated at a random place for a
// new identifier. A unique index on the (random, keyed-hash) key was where
// most of the indexer's time went once a store held a million people:
// every new identifier rewrote a page of it, and every lookup of an
// identifier not seen before descended it only to find nothing. It is
// rebuilt from the table when the store opens (loadIdentIndex).
//
// It is one open-addressing table (linear probing) of uint64 slots:
//
//	bits 63..36  fingerprint: 28 bits of the key, never 0
//	bits 35..0   the rowid of the identifier's row (at most identMaxRow)
//
// A slot of 0 is empty and identTombstone (fingerprint 0) a removed
// entry. The home slot is the fingerprint's low bits, so the table can be
// grown (rehashed) from the slots alone; that caps it at 2^28 slots
// (identMaxSlots). A slot is 8 bytes and the table is kept at most 3/4
// full, so an identifier costs 11 to 21 bytes: ~32 MiB for three million.
// The slots hold no pointer, so the collector never scans them.
//
// Slots hold fingerprints, not keys: a lookup returns every rowid whose
// fingerprint matches, and the caller reads those rows and keeps the one
// whose key is the key looked up (a wrong candidate, about one lookup in
// 2^28 per probed slot, costs a row read). So an entry whose row was
// deleted, or whose rowid a later row reuses, is harmless; entries are
// still removed when their rows are, to keep the table small.
type identIndex struct {
	mu    sync.Mutex
	slots []uint64 // len is a power of two
	used  int      // slots not empty: live entries and tombstones
	live  int
	// closed is set when the store closes: a lookup then fails, as it
	// would if it read the table, rather than find nothing.
	closed bool
}

const (
	identRowBits = 36
	// identMaxRow is the highest rowid the index can hold (~6.9e10).
	identMaxRow    = 1<<identRowBits - 1
	identTombstone = uint64(1) // fingerprint 0, rowid 1
	identMinSlots  = 1 << 10
	identMaxSlots  = 1 << 28
)

func newIdentIndex() *identIndex {
	return &identIndex{slots: make([]uint64, identMinSlots)}
}

// identFingerprint is 28 bits of k (a keyed hash, so uniformly spread),
// never 0.
func identFingerprint(k kith.IdentKey) uint64 {
	if fp := uint64(binary.LittleEndian.Uint32(k[:4]) >> 4); fp != 0 {
		return fp
	}
	return 1
}

func (x *identIndex) addLocked(fp uint64, row int64) error {
	if row <= 0 || row > identMaxRow {
		return fmt.Errorf("sqlite: identifier index: rowid %d does not fit in %d bits", row, identRowBits)
	}
	if 4*(x.used+1) > 3*len(x.slots) {
		if err := x.grow(); err != nil {
			return err
		}
	}
	x.insert(fp<<identRowBits | uint64(row))
	return nil
}

// insert puts slot value v at the first free slot of its probe sequence.
func (x *identIndex) insert(v uint64) {
	mask := uint64(len(x.slots) - 1)
	for i := (v >> identRowBits) & mask; ; i = (i + 1) & mask {
		switch x.slots[i] {
		case 0:
			x.used++
			fallthrough
		case identTombstone:
			x.slots[i] = v
			x.live++
			return
		}
	}
}

// grow rehashes into a table twice as large, or as large when removals
// left it mostly tombstones.
func (x *identIndex) grow() error {
	n := len(x.slots)
	if 2*(x.live+1) > n && n < identMaxSlots {
		n *= 2
	}
	if 4*(x.live+1) > 3*n {
		return fmt.Errorf("sqlite: identifier index: more than %d identifiers", 3*identMaxSlots/4)
	}
	old := x.slots
	x.slots, x.used, x.live = make([]uint64, n), 0, 0
	for _, v := range old {
		if v>>identRowBits != 0 {
			x.insert(v)
		}
	}
	return nil
}

// candidates appends to dst the rowids whose fingerprint matches k's. The
// row of k, if the table has one, is among them.
func (x *identIndex) candidates(k kith.IdentKey, dst []int64) []int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	fp := identFingerprint(k)
	mask := uint64(len(x.slots) - 1)
	for i := fp & mask; ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return dst
		}
		if v>>identRowBits == fp {
			dst = append(dst, int64(v&identMaxRow))
		}
	}
}

// remove forgets the entry of key k at row, if there is one.
func (x *identIndex) remove(k kith.IdentKey, row int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	want := identFingerprint(k)<<identRowBits | uint64(row)
	mask := uint64(len(x.slots) - 1)
	for i := (want >> identRowBits) & mask; ; i = (i + 1) & mask {
		switch x.slots[i] {
		case 0:
			return
		case want:
			x.slots[i] = identTombstone
			x.live--
			return
		}
	}
}

// close marks the index closed, with its store.
func (x *identIndex) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
}

// usable returns an error once the store is closed.
func (x *identIndex) usable() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return fmt.Errorf("sqlite: the store is closed: %w", sql.ErrConnDone)
	}
	return nil
}

// room returns an error unless n more entries, the highest at rowid last,
// fit: checked before a transaction commits rows that publish will add,
// so that publish cannot fail for want of room once they are committed.
func (x *identIndex) room(n int, last int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if last > identMaxRow {
		return fmt.Errorf("sqlite: identifier index: rowid %d does not fit in %d bits", last, identRowBits)
	}
	if 4*(x.live+n) > 3*identMaxSlots {
		return fmt.Errorf("sqlite: identifier index: more than %d identifiers", 3*identMaxSlots/4)
	}
	return nil
}

// identRow is an identifier row as the index knows it.
type identRow struct {
	key kith.IdentKey
	id  int64
}

// publish enters rows a committed transaction inserted.
func (x *identIndex) publish(rows []identRow) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range rows {
		if err := x.addLocked(identFingerprint(r.key), r.id); err != nil {
			return err
		}
	}
	return nil
}

// forget removes rows a committed transaction deleted.
func (x *identIndex) forget(rows []identRow) {
	for _, r := range rows {
		x.remove(r.key, r.id)
	}
}

// loadIdentIndex builds the index from every row of the identifiers table,
// reading rowid ranges on up to loadParts connections at once: at five
// million people the table holds ~6 million rows, and one reader took
// 7.5 s of the store's start.
func loadIdentIndex(ctx context.Context, db *sql.DB) (*identIndex, error) {
	x := newIdentIndex()
	var last int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM identifiers`).Scan(&last); err != nil {
		return nil, fmt.Errorf("sqlite: load identifier index: %w", err)
	}
	// Rowids are given in order, so the highest bounds the row count.
	for len(x.slots) < identMaxSlots && int64(3*len(x.slots)) < 4*(last+1) {
		x.slots = make([]uint64, 2*len(x.slots))
	}
	parts := 1
	if last > loadSplitAbove {
		parts = min(runtime.GOMAXPROCS(0), loadParts)
	}
	slots := make([][]uint64, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for i := range parts {
		lo, hi := last*int64(i)/int64(parts), last*int64(i+1)/int64(parts)
		wg.Go(func() { slots[i], errs[i] = readIdentSlots(ctx, db, lo, hi) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sqlite: load identifier index: %w", err)
	}
	for _, part := range slots {
		for _, v := range part {
			if err := x.addLocked(v>>identRowBits, int64(v&identMaxRow)); err != nil {
				return nil, err
			}
		}
	}
	return x, nil
}

// loadParts bounds the connections loadIdentIndex reads on.
const loadParts = 4

// loadSplitAbove is the row count above which loadIdentIndex reads in
// parts; a variable so that tests can split a small table.
var loadSplitAbove int64 = 100_000

// readIdentSlots returns the slot values of the identifier rows with a
// rowid in (lo, hi].
func readIdentSlots(ctx context.Context, db *sql.DB, lo, hi int64) ([]uint64, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, key FROM identifiers WHERE id > $1 AND id <= $2`, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]uint64, 0, hi-lo)
	var kb sql.RawBytes
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id, &kb); err != nil {
			return nil, err
		}
		var k kith.IdentKey
		if len(kb) != len(k) {
			return nil, fmt.Errorf("row %d has a key of %d bytes, want %d", id, len(kb), len(k))
		}
		if id <= 0 || id > identMaxRow {
			return nil, fmt.Errorf("rowid %d does not fit in %d bits", id, identRowBits)
		}
		copy(k[:], kb)
		out = append(out, identFingerprint(k)<<identRowBits|uint64(id))
	}
	return out, rows.Err()
}

// deleteIdentifiers runs a DELETE on the identifiers table that returns
// the id and key of each row it deletes, for the identifier index to
// forget once the transaction commits.
func deleteIdentifiers(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]identRow, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var gone []identRow
	for rows.Next() {
		var r identRow
		var kb []byte
		if err := rows.Scan(&r.id, &kb); err != nil {
			return nil, err
		}
		copy(r.key[:], kb)
		gone = append(gone, r)
	}
	return gone, rows.Err()
}
