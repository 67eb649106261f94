package commerce

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestParseOrder(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		raw  string
		want kith.Order
	}{
		{"spec example", `{"properties":{"order_id":"50314b8e","total":27.5,"revenue":25,"currency":"usd",
			"products":[{"product_id":"507f1f77","sku":"45790-32","name":"Monopoly","category":"Games","price":19,"quantity":1},
			{"product_id":"505bd76785","sku":"46493-32","name":"Uno","category":"Games","price":3,"quantity":2}]}}`,
			kith.Order{OrderID: "50314b8e", Revenue: 25, Currency: "USD", Items: []kith.OrderItem{
				{ProductID: "507f1f77", SKU: "45790-32", Name: "Monopoly", Category: "Games", Price: 19, Quantity: 1},
				{ProductID: "505bd76785", SKU: "46493-32", Name: "Uno", Category: "Games", Price: 3, Quantity: 2}}}},
		{"total when no revenue", `{"properties":{"total":"12.50"}}`, kith.Order{Revenue: 12.5}},
		{"lines when neither", `{"properties":{"products":[{"id":7,"price":2.5,"quantity":4},{"sku":"S1","price":1}]}}`,
			kith.Order{Revenue: 11, Items: []kith.OrderItem{{ProductID: "7", Price: 2.5, Quantity: 4}, {ProductID: "S1", SKU: "S1", Price: 1, Quantity: 1}}}},
		{"wrong types are absent", `{"properties":{"revenue":"lots","order_id":{"x":1},"products":[{"price":"x"},{"name":"Pen","price":true}]}}`,
			kith.Order{Items: []kith.OrderItem{{Name: "Pen", Quantity: 1}}}},
		{"no properties", `{"type":"track"}`, kith.Order{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := kith.Message{Seq: 9, SourceID: "src", MessageID: "m", Type: "track", Event: OrderCompleted, Timestamp: at, Raw: []byte(tc.raw)}
			got, err := ParseOrder(m)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.Seq, want.Timestamp, want.SourceID = 9, at, "src"
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	if _, err := ParseOrder(kith.Message{Raw: []byte(`{`)}); err == nil {
		t.Error("malformed JSON: want an error")
	}
}

// TestParseOrderValueOverflow: an order whose value, taken from its
// products, overflows float64 (issue 14: a price of 1e308 bought 10 times
// made every later insight run fail) is refused with ErrValueNotFinite; a
// stated revenue or total is used as before, and numbers beyond float64's
// range are absent.
func TestParseOrderValueOverflow(t *testing.T) {
	tests := []struct {
		name    string
		props   string
		revenue float64 // when accepted
		refused bool
	}{
		{"line overflows", `{"products":[{"product_id":"p1","price":1e308,"quantity":10}]}`, 0, true},
		{"a line naming no product counts nothing", `{"products":[{"price":1e308,"quantity":10}]}`, 0, false},
		{"lines add up beyond range", `{"products":[{"id":"a","price":1.7e308},{"id":"b","price":1.7e308}]}`, 0, true},
		{"lines overflow both ways", `{"products":[{"id":"a","price":1e308,"quantity":10},{"id":"b","price":-1e308,"quantity":10}]}`, 0, true},
		{"stated revenue wins", `{"revenue":25,"products":[{"id":"a","price":1e308,"quantity":10}]}`, 25, false},
		{"stated total wins", `{"total":"30","products":[{"id":"a","price":1e308,"quantity":10}]}`, 30, false},
		{"huge but finite", `{"products":[{"id":"a","price":1e308,"quantity":1}]}`, 1e308, false},
		{"out of range revenue is absent", `{"revenue":1e999,"products":[{"id":"a","price":2,"quantity":3}]}`, 6, false},
		{"out of range price is absent", `{"products":[{"id":"a","price":"1e999","quantity":3}]}`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := kith.Message{Seq: 1, MessageID: "m1", Type: "track", Event: OrderCompleted, Raw: []byte(`{"properties":` + tc.props + `}`)}
			o, err := ParseOrder(m)
			if tc.refused {
				if !errors.Is(err, ErrValueNotFinite) {
					t.Fatalf("ParseOrder = %+v, %v; want ErrValueNotFinite", o, err)
				}
				return
			}
			if err != nil || o.Revenue != tc.revenue {
				t.Fatalf("ParseOrder = revenue %v, %v; want %v", o.Revenue, err, tc.revenue)
			}
		})
	}
}
