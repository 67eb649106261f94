package audience

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/kithcdp/kith"
)

// TestSumOverflowSaturates: sums of finite values that overflow float64
// (issue 14: two revenues of 1.7e308 made +Inf, and the profile's traits,
// 360 page and export failed to encode) saturate to ±MaxFloat64, an
// average over such a sum has no value, and every result encodes as JSON —
// whether the values arrive in one profile or in two profiles merged, with
// or without a window.
func TestSumOverflowSaturates(t *testing.T) {
	big := func(seq int64, v string) kith.Message {
		return msg(seq, "Order Completed", day(float64(seq)), `{"revenue":`+v+`}`)
	}
	tests := []struct {
		name   string
		text   string
		values []string
		merged bool // the values arrive in two profiles that merge
		want   any
	}{
		{"sum", `sum(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308"}, false, math.MaxFloat64},
		{"sum merged", `sum(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308"}, true, math.MaxFloat64},
		{"sum windowed", `sum(properties.revenue of event "Order Completed" within 30d)`, []string{"1.7e308", "1.7e308"}, false, math.MaxFloat64},
		{"negative sum", `sum(properties.revenue of event "Order Completed")`, []string{"-1.7e308", "-1.7e308"}, false, -math.MaxFloat64},
		{"sum stays saturated", `sum(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308", "-1e308"}, false, math.MaxFloat64},
		{"sum overflowed both ways", `sum(properties.revenue of event "Order Completed")`, []string{"1.7e308", "-1.7e308", "1.7e308", "-1.7e308"}, true, nil},
		{"avg", `avg(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308"}, false, nil},
		{"avg merged", `avg(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308"}, true, nil},
		{"avg windowed", `avg(properties.revenue of event "Order Completed" within 30d)`, []string{"1.7e308", "1.7e308"}, false, nil},
		{"max", `max(properties.revenue of event "Order Completed")`, []string{"1.7e308", "1.7e308"}, false, 1.7e308},
		{"sum in range", `sum(properties.revenue of event "Order Completed")`, []string{"1e308", "-1e308", "5"}, false, 5.0},
		{"out of range values are not numbers", `sum(properties.revenue of event "Order Completed")`, []string{"1e999", `"NaN"`, `"Inf"`, "2"}, false, 2.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := Compile([]kith.Definition{computed("x", tt.text)})
			if err != nil {
				t.Fatal(err)
			}
			now := day(float64(len(tt.values) + 1))
			a, b := &State{}, &State{}
			for i, v := range tt.values {
				st := a
				if tt.merged && i%2 == 1 {
					st = b
				}
				prog.Apply(st, EventOf(big(int64(i+1), v)), now)
			}
			if tt.merged {
				// Through the stored form, as the engine does.
				dec, err := DecodeState(b.Encode())
				if err != nil {
					t.Fatal(err)
				}
				a.Merge(dec)
			}
			got := prog.ComputedValues(a, now)["x"]
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("value = %#v, want %#v", got, tt.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("value does not encode: %v", err)
			}
		})
	}
}
