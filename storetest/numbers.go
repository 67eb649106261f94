package storetest

import (
	"math"
	"testing"

	"github.com/kithcdp/kith"
)

// testOrderNumbers: every finite number an order can carry — the largest
// and smallest floats, negatives, fractions without an exact decimal form —
// comes back from ScanOrders bit for bit, in the revenue column and in the
// product lines alike, so the two stores hand the insights the same
// values. (Non-finite order values never reach a store: commerce.ParseOrder
// refuses them, and issue 14 found the stores disagreeing on them.)
func testOrderNumbers(t *testing.T, s kith.Store) {
	values := []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 1.7e308, 1.0 / 3, 0.1, -2.5e-300, 9007199254740993, 123456789.125}
	var orders []kith.Order
	for i, v := range values {
		it := kith.OrderItem{ProductID: "p", Price: v, Quantity: values[len(values)-1-i]}
		orders = append(orders, order("p1", i, int64(i+1), v, it))
	}
	mustApply(t, s, 0, kith.IndexBatch{Cursor: int64(len(values)), Profiles: profiles("p1"), Orders: orders})
	got := scanAll(t, s)["p1"]
	if len(got) != len(values) {
		t.Fatalf("%d orders, want %d", len(got), len(values))
	}
	bits := math.Float64bits
	for i, v := range values {
		o := got[i]
		if bits(o.Revenue) != bits(v) {
			t.Errorf("order %d revenue %v, want %v", i, o.Revenue, v)
		}
		if len(o.Items) != 1 || bits(o.Items[0].Price) != bits(v) || bits(o.Items[0].Quantity) != bits(values[len(values)-1-i]) {
			t.Errorf("order %d items %+v, want price %v quantity %v", i, o.Items, v, values[len(values)-1-i])
		}
	}
}
