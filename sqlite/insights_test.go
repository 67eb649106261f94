package sqlite

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestKeyCuts(t *testing.T) {
	tests := []struct {
		lo, hi string
		k      int
		want   []string
	}{
		{"p_00", "p_ff", 2, []string{"p_KK"}},
		{"a", "c", 2, []string{"b"}},
		{"a", "b", 4, []string{"a@", "a\x80", "a\xc0"}}, // byte order, not UTF-8
		{"p_1", "p_1", 2, nil},                          // one profile: one part
		{"b", "a", 2, nil},
		{"", "", 3, nil}, // no orders
		{"", "z", 2, []string{"="}},
	}
	for _, tt := range tests {
		got := keyCuts(tt.lo, tt.hi, tt.k)
		if !slices.Equal(got, tt.want) {
			t.Errorf("keyCuts(%q, %q, %d) = %q, want %q", tt.lo, tt.hi, tt.k, got, tt.want)
		}
		for i, c := range got {
			if c <= tt.lo || c > tt.hi || (i > 0 && c <= got[i-1]) {
				t.Errorf("keyCuts(%q, %q, %d): cut %q is not in (lo, hi] and ascending", tt.lo, tt.hi, tt.k, c)
			}
		}
	}
}

// TestScanOrdersInParts reads a table large enough for several readers
// with several batches each, with merged profiles whose members sit in
// other parts: every customer is handed over once with all its orders in
// time order, and two scans hand them over in the same order.
func TestScanOrdersInParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ctx := t.Context()
	db, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const people = 20000 // over 8,192 orders a part: two batches or more each
	var b kith.IndexBatch
	seq := int64(0)
	for i := range people {
		id := fmt.Sprintf("p_%05x", i*11) // spread over the key range
		b.Profiles = append(b.Profiles, kith.NewProfile{ID: id, CreatedAt: start})
		for k := range 2 {
			seq++
			b.Orders = append(b.Orders, kith.Order{ProfileID: id, Seq: seq, Timestamp: start.Add(time.Duration(people*k-i) * time.Minute),
				SourceID: "shop", OrderID: fmt.Sprint(seq), Revenue: 1, Currency: "EUR", Items: []kith.OrderItem{{ProductID: "mug", Price: 1}}})
		}
	}
	// p_00000 (the first part) absorbs a member from the last part and one
	// from the middle.
	survivor, members := "p_00000", []string{fmt.Sprintf("p_%05x", (people-1)*11), fmt.Sprintf("p_%05x", people/2*11)}
	for _, m := range members {
		b.Merges = append(b.Merges, kith.Merge{Survivor: survivor, Absorbed: m, SourceID: "src", MessageID: "merge-" + m, IdentType: kith.IdentEmail, Ident: m + "@example.com", At: start})
	}
	b.Cursor = seq
	if err := db.ApplyIndexBatch(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	if cuts, err := db.orderParts(ctx, 4); err != nil || len(cuts) != 3 {
		t.Fatalf("orderParts = %q, %v; want 3 cuts", cuts, err)
	}
	scan := func() ([]string, map[string][]kith.Order) {
		var visited []string
		got := map[string][]kith.Order{}
		if err := db.ScanOrders(ctx, func(co kith.CustomerOrders) error {
			visited = append(visited, co.ProfileID)
			got[co.ProfileID] = co.Orders
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return visited, got
	}
	first, got := scan()
	if len(first) != people-len(members) || len(got) != len(first) {
		t.Fatalf("%d customers handed over (%d distinct), want %d once each", len(first), len(got), people-len(members))
	}
	for id, os := range got {
		want := 2
		if id == survivor {
			want = 2 * (1 + len(members))
		}
		if len(os) != want || !slices.IsSortedFunc(os, kith.CompareOrders) {
			t.Errorf("%s: %d orders (in time order: %v), want %d in time order", id, len(os), slices.IsSortedFunc(os, kith.CompareOrders), want)
		}
	}
	for _, m := range members {
		if _, ok := got[m]; ok {
			t.Errorf("merged member %s handed over on its own", m)
		}
	}
	if second, _ := scan(); !slices.Equal(first, second) {
		t.Error("two scans handed the customers over in different orders")
	}
	stop := errors.New("stop")
	n := 0
	if err := db.ScanOrders(ctx, func(kith.CustomerOrders) error {
		if n++; n == 5000 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || n != 5000 {
		t.Errorf("a scan stopped by its caller after 5,000 customers: %v after %d, want %v after 5000", err, n, stop)
	}
}
