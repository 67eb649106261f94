package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/loadgen"
)

func TestBenchDestinationsFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		want  string   // an error containing this, or "" for none
		cases []string // the cases' names
	}{
		{args: nil, cases: []string{"10 destinations, all healthy"}},
		{args: []string{"--baseline"}, cases: []string{"baseline: no destinations", "10 destinations, all healthy"}},
		{args: []string{"--destinations", "3", "--failing", "503,hang", "--baseline"}, cases: []string{
			"baseline: 3 destinations, all healthy", "3 destinations, the last answers 503",
			"3 destinations, the last hangs (never answers; each attempt times out after 2s)"}},
		{args: []string{"--destinations", "1", "--backlog", "--events", "1000000", "--webhook-batch", "500"}, cases: []string{"1 destination, all healthy"}},
		{args: []string{"--audience", "--subscribe-events=false", "--rate", "5000"}, cases: []string{"10 destinations, all healthy"}},
		{args: []string{"--failing", "500"}, want: "want 503 or hang"},
		{args: []string{"--failing", "ok"}, want: "want 503 or hang"},
		{args: []string{"--failing", "503", "--destinations", "1"}, want: "at least 2 destinations"},
		{args: []string{"--subscribe-events=false"}, want: "needs --audience"},
		{args: []string{"--backlog", "--baseline"}, want: "takes neither"},
		{args: []string{"--webhook-batch", "0"}, want: "1 to 1000"},
		{args: []string{"--webhook-timeout", "2m"}, want: "at most 1m"},
		{args: []string{"--events", "0"}, want: "must be positive"},
		{args: []string{"--rate", "-1"}, want: "0 or positive"},
		{args: []string{"extra"}, want: `unexpected argument "extra"`},
		{args: []string{"--rounds", "0"}, want: "1 to 100"},
	} {
		b, err := parseDestinationsBench(tc.args, io.Discard)
		name := "kith bench destinations " + strings.Join(tc.args, " ")
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var got []string
		for _, c := range b.cases() {
			got = append(got, c.name)
		}
		if strings.Join(got, "|") != strings.Join(tc.cases, "|") {
			t.Errorf("%s: cases %q, want %q", name, got, tc.cases)
		}
	}
}

// TestBenchDestinations runs two tiny benchmarks against real servers
// (this test binary as kith serve): 2,000 events to two destinations, one
// answering 503, after a baseline with both healthy, with audience probes;
// and a backlog drained by one destination.
func TestBenchDestinations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four servers")
	}
	t.Setenv(runAsKithEnv, "1") // for the server processes
	for _, tc := range []struct {
		args  []string
		check func(t *testing.T, reps []loadgen.DeliveryReport)
	}{
		{[]string{"--destinations", "2", "--events", "2000", "--rate", "4000", "--failing", "503", "--baseline", "--audience"}, func(t *testing.T, reps []loadgen.DeliveryReport) {
			if len(reps) != 2 {
				t.Fatalf("%d reports, want 2", len(reps))
			}
			for i, r := range reps {
				healthy := 2 - i
				if r.Incomplete != "" || r.Healthy.Receivers != healthy || !r.Healthy.Complete || r.Ingest.Acked != 2020 || r.PeakRSS <= 0 {
					t.Errorf("%s: %+v", r.Case, r)
				}
				if r.Healthy.Latency.Count != healthy*2020 || r.Healthy.EntryLatency.Count != healthy*20 {
					t.Errorf("%s: latencies of %d messages and %d entries", r.Case, r.Healthy.Latency.Count, r.Healthy.EntryLatency.Count)
				}
				for _, rr := range r.Receivers {
					if rr.SignatureError != "" || rr.Mode == loadgen.Receiver503 && (rr.Requests == 0 || rr.Received != 0) {
						t.Errorf("%s: %+v", r.Case, rr)
					}
				}
			}
		}},
		{[]string{"--destinations", "1", "--events", "3000", "--backlog", "--webhook-batch", "500"}, func(t *testing.T, reps []loadgen.DeliveryReport) {
			if len(reps) != 1 {
				t.Fatalf("%d reports, want 1", len(reps))
			}
			r := reps[0]
			if r.Incomplete != "" || !r.Backlog || r.Receivers[0].Received != 3000 || r.DeliveryPeakRSS <= 0 || r.DrainStartRSS <= 0 || r.Receivers[0].PerSec <= 0 {
				t.Errorf("%+v", r)
			}
			// Paused during the load: nothing arrived before the drain.
			if r.Receivers[0].Requests > 3000/500+1 {
				t.Errorf("%d requests for 3,000 messages in batches of 500", r.Receivers[0].Requests)
			}
		}},
	} {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := run(ctx, append([]string{"bench", "destinations", "--kith", os.Args[0], "--json"}, tc.args...), &out, &errOut)
		cancel()
		if err != nil {
			t.Fatalf("kith bench destinations %s: %v\n%s", strings.Join(tc.args, " "), err, errOut.String())
		}
		var reps []loadgen.DeliveryReport
		if err := json.Unmarshal(out.Bytes(), &reps); err != nil {
			t.Fatalf("report: %v\n%s", err, out.String())
		}
		tc.check(t, reps)
	}
}

func TestMedianDeliveries(t *testing.T) {
	rep := func(acked float64, receivers int, p99 time.Duration) loadgen.DeliveryReport {
		r := loadgen.DeliveryReport{Ingest: loadgen.Report{AckedPerSec: acked, EndToEndPerSec: acked}}
		r.Healthy.Receivers, r.Healthy.MinPerSec, r.Healthy.Latency.P99 = receivers, acked, p99
		return r
	}
	none := []loadgen.DeliveryReport{rep(100, 0, 0), rep(300, 0, 0), rep(200, 0, 0)}
	ten := []loadgen.DeliveryReport{rep(10, 10, 3*time.Millisecond), rep(60, 10, time.Millisecond), rep(40, 10, 2*time.Millisecond)}
	got := medianDeliveries(none, none, false)
	if want := "  acked 200 events/s, processed 200 events/s; peak RSS 0 MiB\n"; got != want {
		t.Errorf("baseline without receivers:\n%q, want\n%q", got, want)
	}
	got = medianDeliveries(none, ten, true)
	for _, want := range []string{"acked 40 events/s", "delivered min 40/s", "p99 2.0 ms", "ratios: acked 0.200, processed 0.200\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("against a baseline without receivers: %q lacks %q", got, want)
		}
	}
	got = medianDeliveries(ten, ten, true)
	if !strings.Contains(got, "ratios: acked 1.000, processed 1.000, healthy delivery rate min 1.000, latency p50 0.000, p99 1.000\n") {
		t.Errorf("against itself: %q", got)
	}
}
