package insights

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// traitKeys are the names of the predicted traits that depend on the
// configuration, formatted once per run rather than once per customer.
type traitKeys struct {
	expected, clv string
}

func newTraitKeys(cfg Config) traitKeys {
	return traitKeys{
		expected: fmt.Sprintf("expected_purchases_%dd", cfg.HorizonDays),
		clv:      fmt.Sprintf("clv_%dd", cfg.CLVDays),
	}
}

// encodeProducts encodes every product's id as a JSON string, once per
// run: each customer's next-best and up-sell lists are made of them.
func (a *analysis) encodeProducts() {
	a.productJSON = make([][]byte, a.products.Len())
	for id := range a.productJSON {
		a.productJSON[id], _ = json.Marshal(a.products.Name(int32(id))) // a string always encodes
	}
}

// traitEncoder writes one customer's predicted traits as JSON values into
// one buffer, each trait's value a slice of it: a million customers' twelve
// traits are then a million allocations, not twelve million reflective
// encodings. The first value that cannot be encoded (a number that is not
// finite) is kept in err.
type traitEncoder struct {
	out map[string]json.RawMessage
	buf []byte
	err error
}

// put records the value appended to buf since start under key.
func (e *traitEncoder) put(key string, start int) {
	e.out[key] = json.RawMessage(e.buf[start:len(e.buf):len(e.buf)])
}

// number encodes v as encoding/json does: plain decimal notation from
// 1e-6 up to 1e21, exponent notation outside it; NaN and ±Inf have no JSON
// form and are an error.
func (e *traitEncoder) number(key string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		if e.err == nil {
			e.err = fmt.Errorf("%s is %v, which JSON cannot hold", key, v)
		}
		return
	}
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		e.value(key, v)
		return
	}
	start := len(e.buf)
	e.buf = strconv.AppendFloat(e.buf, v, 'f', -1, 64)
	e.put(key, start)
}

// integer encodes n.
func (e *traitEncoder) integer(key string, n int) {
	start := len(e.buf)
	e.buf = strconv.AppendInt(e.buf, int64(n), 10)
	e.put(key, start)
}

// value encodes v with encoding/json, for the rare values the fast paths
// do not cover.
func (e *traitEncoder) value(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("%s: %w", key, err)
		}
		return
	}
	start := len(e.buf)
	e.buf = append(e.buf, b...)
	e.put(key, start)
}

// list encodes a JSON array of n already-encoded elements.
func (e *traitEncoder) list(key string, n int, elem func(int) []byte) {
	start := len(e.buf)
	e.buf = append(e.buf, '[')
	for j := range n {
		if j > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = append(e.buf, elem(j)...)
	}
	e.buf = append(e.buf, ']')
	e.put(key, start)
}
