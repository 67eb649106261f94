package sqlite

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// identKey returns a key whose fingerprint bits are fp and whose other
// bytes come from rest.
func identKey(fp uint32, rest uint64) kith.IdentKey {
	var k kith.IdentKey
	binary.LittleEndian.PutUint32(k[:4], fp<<4)
	binary.LittleEndian.PutUint64(k[4:12], rest)
	return k
}

func TestIdentIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newIdentIndex()
	const n = 100_000 // grows the table from 1,024 slots to 2^18
	keys := make([]kith.IdentKey, n)
	for i := range keys {
		keys[i] = identKey(rng.Uint32(), rng.Uint64())
		if err := x.publish([]identRow{{key: keys[i], id: int64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	if x.live != n || 4*x.used > 3*len(x.slots) {
		t.Fatalf("len %d, used %d of %d slots", x.live, x.used, len(x.slots))
	}
	var cand []int64
	for i, k := range keys {
		cand = x.candidates(k, cand[:0])
		if !slices.Contains(cand, int64(i+1)) {
			t.Fatalf("key %d: candidates %v lack row %d", i, cand, i+1)
		}
	}
	// Remove every other entry: the rest are still found, the removed
	// ones not, and the table does not grow while adding as many again.
	for i := 0; i < n; i += 2 {
		x.remove(keys[i], int64(i+1))
	}
	for i, k := range keys {
		cand = x.candidates(k, cand[:0])
		if got, want := slices.Contains(cand, int64(i+1)), i%2 == 1; got != want {
			t.Fatalf("key %d after removals: found %v, want %v", i, got, want)
		}
	}
	slots := len(x.slots)
	for i := 0; i < n; i += 2 {
		if err := x.publish([]identRow{{key: keys[i], id: int64(n + i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(x.slots) != slots || x.live != n {
		t.Errorf("after re-adding the removed half: %d slots (was %d), len %d", len(x.slots), slots, x.live)
	}
}

func TestIdentIndexCases(t *testing.T) {
	a, b := identKey(77, 1), identKey(77, 2) // same fingerprint
	zero := identKey(0, 3)                   // fingerprint 0 is taken as 1
	for _, tc := range []struct {
		name string
		add  map[kith.IdentKey][]int64
		drop map[kith.IdentKey]int64
		key  kith.IdentKey
		want []int64
	}{
		{name: "absent", key: a},
		{name: "one", add: map[kith.IdentKey][]int64{a: {5}}, key: a, want: []int64{5}},
		{name: "shared fingerprint gives both candidates", add: map[kith.IdentKey][]int64{a: {5}, b: {9}}, key: b, want: []int64{5, 9}},
		{name: "removed", add: map[kith.IdentKey][]int64{a: {5}, b: {9}}, drop: map[kith.IdentKey]int64{a: 5}, key: b, want: []int64{9}},
		{name: "removing a row it does not hold", add: map[kith.IdentKey][]int64{a: {5}}, drop: map[kith.IdentKey]int64{a: 6}, key: a, want: []int64{5}},
		{name: "fingerprint zero", add: map[kith.IdentKey][]int64{zero: {3}}, key: zero, want: []int64{3}},
		{name: "largest rowid", add: map[kith.IdentKey][]int64{a: {identMaxRow}}, key: a, want: []int64{identMaxRow}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIdentIndex()
			for k, rows := range tc.add {
				for _, r := range rows {
					if err := x.publish([]identRow{{key: k, id: r}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for k, r := range tc.drop {
				x.remove(k, r)
			}
			got := x.candidates(tc.key, nil)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
	x := newIdentIndex()
	for _, row := range []int64{0, -1, identMaxRow + 1} {
		if err := x.publish([]identRow{{key: a, id: row}}); err == nil {
			t.Errorf("add rowid %d: no error", row)
		}
	}
}

// TestIdentIndexLoadsInParts checks that the index rebuilt at open, read
// in rowid ranges on several connections, finds every identifier row,
// including the first and the last, and none that was erased.
func TestIdentIndexLoadsInParts(t *testing.T) {
	defer func(v int64) { loadSplitAbove = v }(loadSplitAbove)
	loadSplitAbove = 0
	ctx := t.Context()
	dir := t.TempDir()
	db, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n = 1001
	b := kith.IndexBatch{Cursor: 1, Profiles: []kith.NewProfile{{ID: "p1", CreatedAt: at}, {ID: "p2", CreatedAt: at}}}
	keys := make([]kith.IdentKey, n)
	for i := range keys {
		keys[i] = identKey(uint32(i*7919), uint64(i))
		owner := "p1"
		if i%2 == 1 {
			owner = "p2"
		}
		b.Identifiers = append(b.Identifiers, kith.IdentifierUpsert{Key: keys[i], Type: "user_id", Value: fmt.Sprint(i), ProfileID: owner, SourceID: "s", MessageID: "m", FirstSeen: at, LastSeen: at})
	}
	if err := db.ApplyIndexBatch(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ErasePeople(ctx, kith.Cluster{Members: []string{"p2"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, want := db.idents.live, (n+1)/2; got != want {
		t.Errorf("index holds %d rows after the restart, want %d", got, want)
	}
	found, err := db.LookupIdentifiers(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if _, ok := found[k]; ok != (i%2 == 0) {
			t.Errorf("identifier %d: found %v, want %v", i, ok, i%2 == 0)
		}
	}
}

// TestLookupSharedFingerprint checks that keys sharing a fingerprint, and
// so the same candidate rows, are each found by the row that holds them,
// in whatever order they are asked for.
func TestLookupSharedFingerprint(t *testing.T) {
	ctx := t.Context()
	db, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	known, other, third := identKey(77, 1), identKey(77, 2), identKey(77, 3)
	if err := db.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 1,
		Profiles: []kith.NewProfile{{ID: "p1", CreatedAt: at}, {ID: "p3", CreatedAt: at}},
		Identifiers: []kith.IdentifierUpsert{
			{Key: known, Type: "user_id", Value: "1", ProfileID: "p1", SourceID: "s", MessageID: "m", FirstSeen: at, LastSeen: at},
			{Key: third, Type: "user_id", Value: "3", ProfileID: "p3", SourceID: "s", MessageID: "m", FirstSeen: at, LastSeen: at},
		}}); err != nil {
		t.Fatal(err)
	}
	want := map[kith.IdentKey]kith.IdentOwner{known: {ProfileID: "p1", Canonical: "p1"}, third: {ProfileID: "p3", Canonical: "p3"}}
	for _, keys := range [][]kith.IdentKey{{known, other, third}, {other, third, known}, {third, known, other}} {
		got, err := db.LookupIdentifiers(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("lookup %v = %v, want %v", keys, got, want)
		}
	}
}
