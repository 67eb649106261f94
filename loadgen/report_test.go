package loadgen

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ms makes durations of 1..n milliseconds.
func ms(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{7}, 50, 7},
		{"single p99", []time.Duration{7}, 99, 7},
		{"two p50", []time.Duration{1, 2}, 50, 1},
		{"two p51", []time.Duration{1, 2}, 51, 2},
		{"hundred p50", ms(100), 50, 50 * time.Millisecond},
		{"hundred p90", ms(100), 90, 90 * time.Millisecond},
		{"hundred p99", ms(100), 99, 99 * time.Millisecond},
		{"hundred p100", ms(100), 100, 100 * time.Millisecond},
		{"ten p99 is the max", ms(10), 99, 10 * time.Millisecond},
		{"thousand p99", ms(1000), 99, 990 * time.Millisecond},
		{"tiny p rounds up to the first", ms(1000), 0.01, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			equal(t, "percentile", percentile(tt.sorted, tt.p), tt.want)
		})
	}
}

func TestSummarize(t *testing.T) {
	samples := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	got := summarize(samples)
	equal(t, "summary", got, Latency{Count: 10, P50: 5, P90: 9, P99: 10, Max: 10})
	equal(t, "empty", summarize(nil), Latency{})
}

func sampleReport() Report {
	return Report{
		Target: "http://127.0.0.1:8080", Seed: 3, Events: 2000, BatchSize: 100, Concurrency: 8,
		Users: 20000, ReadRate: 50, Sent: 2000, Acked: 2000, Batches: 20, MeanEventBytes: 402,
		WireBytes: 812345, Wall: 2 * time.Second, AckedPerSec: 1000,
		Ack:       Latency{Count: 20, P50: 3 * time.Millisecond, P90: 5 * time.Millisecond, P99: 9 * time.Millisecond, Max: 12 * time.Millisecond},
		Status2xx: 20, Reads: Latency{Count: 90, P50: 400 * time.Microsecond, P99: 2 * time.Millisecond},
		WaitProcessed: true, Processed: true, EndToEnd: 3 * time.Second, EndToEndPerSec: 666.7, ServerAccepted: 2000,
	}
}

func TestReportJSON(t *testing.T) {
	r := sampleReport()
	b, err := json.Marshal(r)
	noError(t, err)
	for _, key := range []string{`"acked_per_sec":1000`, `"wall_ns":2000000000`, `"p99_ns":9000000`, `"status_429":0`, `"end_to_end_per_sec":666.7`} {
		if !strings.Contains(string(b), key) {
			t.Fatalf("JSON lacks %s: %s", key, b)
		}
	}
	var back Report
	noError(t, json.Unmarshal(b, &back))
	equal(t, "round trip", back, r)
}

func TestReportString(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Report)
		want   []string
	}{
		{"processed", func(*Report) {}, []string{
			"1,000 acked events/s over 2.00s", "p50 3.00ms", "p99 9.00ms", "2xx 20, 429 0",
			"90 profile reads: p50 400µs", "processed  all in 3.00s end to end → 667 events/s",
		}},
		{"null server", func(r *Report) { r.Null = true }, []string{"(null server)", "processed  n/a (null server)"}},
		{"not processed", func(r *Report) { r.Processed, r.ServerAccepted, r.Error = false, 1500, "boom" }, []string{
			"processed  not reached", "accepted 1,500 of 2,000 acked", "error      boom",
		}},
		{"memory", func(r *Report) { r.RSS, r.PeakRSS, r.RSSNote = 300<<20, 1<<30, "shared" }, []string{
			"memory     resident 300.0 MiB at the end, peak 1.00 GiB (shared)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleReport()
			tt.modify(&r)
			s := r.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Fatalf("String() lacks %q:\n%s", w, s)
				}
			}
		})
	}
}

func TestCompare(t *testing.T) {
	ceiling := sampleReport()
	ceiling.Null, ceiling.AckedPerSec = true, 4000
	ceiling.Ack.P50, ceiling.Ack.P99 = time.Millisecond, 3*time.Millisecond
	kith := sampleReport()
	s := Compare(ceiling, kith)
	for _, w := range []string{"kith 1,000  null server 4,000  → 25.0% of the ceiling", "ack p50", "3.00× the ceiling", "end to end"} {
		if !strings.Contains(s, w) {
			t.Fatalf("Compare lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, "warning") {
		t.Fatalf("Compare warned about equal loads:\n%s", s)
	}
	kith.BatchSize = 50
	if !strings.Contains(Compare(ceiling, kith), "different loads") {
		t.Fatal("Compare did not warn about different loads")
	}
	if !strings.Contains(Compare(Report{}, kith), "n/a") {
		t.Fatal("Compare with an empty ceiling should say n/a")
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(-1234567), "-1,234,567"},
		{dur(0), "0"}, {dur(1500 * time.Nanosecond), "1.50µs"}, {dur(999 * time.Microsecond), "999µs"},
		{dur(12345 * time.Microsecond), "12.3ms"}, {dur(1500 * time.Millisecond), "1.50s"},
		{bytesText(512), "512 B"}, {bytesText(3 << 20), "3.0 MiB"},
	}
	for _, tt := range tests {
		equal(t, "formatted", tt.got, tt.want)
	}
}

func TestParseStats(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want statCounts
	}{
		{"total object wins", `{"sources":{"web":{"accepted":5,"processed":4}},"total":{"received":9,"accepted":7,"duplicate":1,"processed":6}}`,
			statCounts{received: 9, accepted: 7, duplicate: 1, processed: 6, hasReceived: true}},
		{"per-source map", `{"sources":{"web":{"received":5,"accepted":5,"processed":4,"rejected":{"missing_event":3}},"app":{"accepted":2,"processed":2}}}`,
			statCounts{received: 5, accepted: 7, processed: 6, hasReceived: true}},
		{"list of sources", `[{"accepted":1,"processed":1},{"accepted":2,"processed":0}]`,
			statCounts{accepted: 3, processed: 1}},
		{"bare counts", `{"received":3,"accepted":3,"duplicate":0,"rejected":{},"processed":3}`,
			statCounts{received: 3, accepted: 3, processed: 3, hasReceived: true}},
		{"null server", `{"null":true,"total":{"received":2,"accepted":2,"processed":2}}`,
			statCounts{received: 2, accepted: 2, processed: 2, hasReceived: true, null: true}},
		{"nothing", `{}`, statCounts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			noError(t, json.Unmarshal([]byte(tt.doc), &v))
			equal(t, "counts", parseStats(v), tt.want)
		})
	}
}

func TestCaughtUp(t *testing.T) {
	base := statCounts{received: 100, accepted: 90, processed: 80, hasReceived: true}
	tests := []struct {
		name string
		cur  statCounts
		want bool
	}{
		{"backlog and new events processed", statCounts{received: 200, accepted: 190, processed: 190, hasReceived: true}, true},
		{"still processing", statCounts{received: 200, accepted: 190, processed: 189, hasReceived: true}, false},
		{"duplicates kept accepted low", statCounts{received: 200, accepted: 150, duplicate: 40, processed: 150, hasReceived: true}, true},
		{"not all received yet", statCounts{received: 150, accepted: 140, processed: 140, hasReceived: true}, false},
		{"no received counter", statCounts{accepted: 150, processed: 150}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			equal(t, "caughtUp", caughtUp(base, tt.cur, 100), tt.want)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		header  string
		attempt int
		want    time.Duration
	}{
		{"zero seconds", "0", 0, 0},
		{"seconds", "2", 0, 2 * time.Second},
		{"capped", "86400", 0, maxRetryAfter},
		{"http date", now.Add(3 * time.Second).Format(http.TimeFormat), 0, 3 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0, 0},
		{"missing, first", "", 0, 50 * time.Millisecond},
		{"missing, third", "", 2, 200 * time.Millisecond},
		{"missing, capped", "", 40, 1600 * time.Millisecond},
		{"garbage", "soon", 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			equal(t, "wait", retryAfter(tt.header, tt.attempt, now), tt.want)
		})
	}
}
