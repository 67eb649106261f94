package insights

import (
	"encoding/json"
	"math"
	"testing"
)

// TestTraitEncoderMatchesJSON checks that the hand-written encoder writes
// every number exactly as encoding/json does, so stored predictions read
// back the same as before it existed.
func TestTraitEncoderMatchesJSON(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 0.069308, 632.017, 123456789, 1e-6, 9.99999e-7, 1e-7, -3.5e-9,
		1e20, 1e21, 1.5e21, -2e25, math.MaxFloat64, math.SmallestNonzeroFloat64, 1 << 53} {
		e := traitEncoder{out: map[string]json.RawMessage{}}
		e.number("v", v)
		want, _ := json.Marshal(v)
		if e.err != nil || string(e.out["v"]) != string(want) {
			t.Errorf("%v encodes as %s (err %v), encoding/json writes %s", v, e.out["v"], e.err, want)
		}
	}
	for _, n := range []int{0, 5, -3, math.MaxInt64} {
		e := traitEncoder{out: map[string]json.RawMessage{}}
		e.integer("n", n)
		if want, _ := json.Marshal(n); string(e.out["n"]) != string(want) {
			t.Errorf("%d encodes as %s, want %s", n, e.out["n"], want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		e := traitEncoder{out: map[string]json.RawMessage{}}
		e.number("churn_risk", v)
		if e.err == nil || e.out["churn_risk"] != nil {
			t.Errorf("%v encoded as %s without an error", v, e.out["churn_risk"])
		}
	}
}

// TestTraitEncoderValuesStayApart checks that values written into the one
// buffer keep their own bytes as the buffer grows and moves.
func TestTraitEncoderValuesStayApart(t *testing.T) {
	e := traitEncoder{out: map[string]json.RawMessage{}, buf: make([]byte, 0, 4)}
	e.number("a", 0.5)
	e.list("b", 3, func(j int) []byte { return []byte(`"product-with-a-long-name"`) })
	e.integer("c", 42)
	e.value("d", "Champions")
	want := map[string]string{"a": `0.5`, "b": `["product-with-a-long-name","product-with-a-long-name","product-with-a-long-name"]`, "c": `42`, "d": `"Champions"`}
	for k, w := range want {
		if got := string(e.out[k]); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	e.list("empty", 0, nil)
	if got := string(e.out["empty"]); got != `[]` {
		t.Errorf("an empty list encodes as %s, want []", got)
	}
}
