package imports

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/kithcdp/kith"
)

// A server takes a client's counts of rejected rows only as far as it can
// check them: reasons an import gives, written as storable text, counts
// no batch could exceed.
func TestCheckRejected(t *testing.T) {
	cases := []struct {
		name   string
		counts map[string]int64
		want   string // in the error; "" for none
	}{
		{"none", nil, ""},
		{"ordinary", map[string]int64{ReasonMalformedRow: 3, ReasonDuplicateKey: 1}, ""},
		{"the most", map[string]int64{ReasonMalformedRow: MaxRejectedPerSend - 1, ReasonMissingKey: 1}, ""},
		{"zero", map[string]int64{ReasonMalformedRow: 0}, ""},
		{"negative", map[string]int64{ReasonMalformedRow: -1}, `rejected["malformed_row"]: -1 is not a count`},
		{"overflowing", map[string]int64{ReasonMalformedRow: math.MaxInt64}, `rejected["malformed_row"]: 9223372036854775807 is not a count`},
		{"too many together", map[string]int64{ReasonMalformedRow: MaxRejectedPerSend, ReasonMissingKey: 1}, "more than the 100000 one batch may report"},
		{"overflowing together", map[string]int64{ReasonMalformedRow: math.MaxInt64, ReasonMissingKey: math.MaxInt64}, "is not a count"},
		{"unknown reason", map[string]int64{"ovf": 1}, `rejected["ovf"]: not a reason an import rejects rows for`},
		{"the suppression counter", map[string]int64{"suppressed": 1}, `rejected["suppressed"]: not a reason`},
		{"NUL", map[string]int64{"x\x00": 1}, `rejected["x\x00"] contains a NUL character`},
		{"invalid UTF-8", map[string]int64{"x\xff": 1}, `rejected["x\xff"] is not valid UTF-8`},
		{"long", map[string]int64{strings.Repeat("a", 10000): 1}, `rejected["` + strings.Repeat("a", 64) + `"…]: not a reason`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRejected(tc.counts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || kith.ErrorCode(err) != kith.EINVALID {
				t.Fatalf("error %v, want an invalid error saying %q", err, tc.want)
			}
		})
	}
}

// checkingSink checks every Send's counts as the server does.
type checkingSink struct {
	logSink
	mu    sync.Mutex
	sends int
	total map[string]int64
	err   error
}

func (c *checkingSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error) {
	c.mu.Lock()
	c.sends++
	if err := CheckRejected(rejected); err != nil && c.err == nil {
		c.err = err
	}
	for k, v := range rejected {
		c.total[k] += v
	}
	c.mu.Unlock()
	return c.logSink.Send(ctx, msgs, rejected)
}

// A batch that rejected more rows than one Send may report (large
// batches, or one big group) reports them over several Sends, every one
// of which the server takes, and the counts add up.
func TestRejectedCountsSplitAcrossSends(t *testing.T) {
	var b strings.Builder
	b.WriteString("id\n")
	const bad = 250_001
	for range bad {
		b.WriteString("a,b\n") // one field too many
	}
	b.WriteString("u1\n")
	m, _ := ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
	sink := &checkingSink{logSink: logSink{log: &memLog{}}, total: map[string]int64{}}
	sum, err := (&Runner{Source: "s", Mapping: m, Sink: sink, BatchSize: 1 << 20}).Run(context.Background(), []Input{memInput("in.csv", []byte(b.String()))})
	if err != nil {
		t.Fatal(err)
	}
	if sink.err != nil {
		t.Fatalf("a Send the server would refuse: %v", sink.err)
	}
	if sink.sends != 3 || sink.total[ReasonMalformedRow] != bad || sink.log.rejected[ReasonMalformedRow] != bad {
		t.Fatalf("%d sends reporting %v, stored %v", sink.sends, sink.total, sink.log.rejected)
	}
	if sum.Read != bad+1 || sum.Accepted != 1 || sum.Rejected != bad {
		t.Fatalf("summary %+v", sum)
	}
}
