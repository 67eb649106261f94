package loadgen

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Latency summarises recorded latency samples. Percentiles are exact
// (nearest rank over the sorted samples), not estimates, so small runs and
// tails are reported truthfully. Durations marshal to JSON as integer
// nanoseconds.
type Latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// summarize sorts samples in place and returns their summary.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	return Latency{
		Count: len(samples),
		P50:   percentile(samples, 50),
		P90:   percentile(samples, 90),
		P99:   percentile(samples, 99),
		Max:   samples[len(samples)-1],
	}
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are less than or equal to it. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Report is the outcome of one Run. Every field is plain data so a Report
// marshals to JSON directly (durations as integer nanoseconds, suffixed
// _ns) and can be stored and later passed to Compare.
type Report struct {
	// The configuration the run used, after defaults.
	Target      string  `json:"target"`
	Null        bool    `json:"null_server"`
	Seed        int64   `json:"seed"`
	Events      int     `json:"events"`
	BatchSize   int     `json:"batch_size"`
	Concurrency int     `json:"concurrency"`
	Users       int     `json:"users"`
	Rate        float64 `json:"rate"`
	ReadRate    float64 `json:"read_rate"`
	Gzip        bool    `json:"gzip"`

	// Sent counts events in batches that were posted at least once; Acked
	// counts those whose batch got a 2xx answer.
	Sent           int64   `json:"sent"`
	Acked          int64   `json:"acked"`
	Batches        int64   `json:"batches"`
	MeanEventBytes float64 `json:"mean_event_bytes"`
	// WireBytes is the request body bytes posted (compressed when Gzip),
	// retries included.
	WireBytes int64 `json:"wire_bytes"`
	// Wall is the time from the first request to the last answer.
	Wall        time.Duration `json:"wall_ns"`
	AckedPerSec float64       `json:"acked_per_sec"`
	// Ack is the latency of each acknowledged batch, from its intended send
	// time (its first attempt, or its slot in the schedule when Rate is set)
	// to the 2xx answer, 429 waits included.
	Ack Latency `json:"ack_latency"`

	// HTTP outcomes of batch requests, one count per attempt.
	Status2xx       int64 `json:"status_2xx"`
	Status429       int64 `json:"status_429"`
	StatusOther     int64 `json:"status_other"`
	TransportErrors int64 `json:"transport_errors"`
	Retries         int64 `json:"retries"`

	// Profile reads made while ingesting. Reads holds the latency of every
	// answered read (found or not found); ReadsSkipped counts scheduled
	// reads dropped because every reader was still busy.
	Reads        Latency `json:"reads"`
	ReadNotFound int64   `json:"read_not_found"`
	ReadErrors   int64   `json:"read_errors"`
	ReadsSkipped int64   `json:"reads_skipped"`
	// ReadError is the first failed read, if any.
	ReadError string `json:"read_error,omitempty"`

	// End-to-end results, filled when WaitProcessed was set and the target
	// is not a null server. EndToEnd runs from the first request until the
	// server reported every event processed.
	WaitProcessed   bool          `json:"wait_processed"`
	Processed       bool          `json:"processed"`
	EndToEnd        time.Duration `json:"end_to_end_ns"`
	EndToEndPerSec  float64       `json:"end_to_end_per_sec"`
	ServerAccepted  int64         `json:"server_accepted"`
	ServerDuplicate int64         `json:"server_duplicate"`

	// Error is the first failure seen, if any: a non-2xx answer, a transport
	// error, or the reason the run stopped early.
	Error string `json:"error,omitempty"`

	// RSS and PeakRSS are the resident memory of the process that served
	// the run, at its end and at its highest (VmRSS, VmHWM), when the
	// caller measured them (0: not measured). RSSNote says what that
	// process held beside the server.
	RSS     int64  `json:"rss_bytes,omitempty"`
	PeakRSS int64  `json:"peak_rss_bytes,omitempty"`
	RSSNote string `json:"rss_note,omitempty"`
	// GoMemory is the memory the Go runtime held from the OS at the end
	// (heap, stacks and its own structures, less what it returned): at
	// most that much of RSS is Go's, and the rest of RSS was allocated
	// outside it, such as the embedded store's page caches. 0: not
	// measured.
	GoMemory int64 `json:"go_memory_bytes,omitempty"`
}

// String renders the report as a short, aligned, human-readable summary.
func (r Report) String() string {
	var b strings.Builder
	target := r.Target
	if r.Null {
		target += " (null server)"
	}
	rate := "unlimited"
	if r.Rate > 0 {
		rate = count(int64(r.Rate)) + " events/s"
	}
	gz := "off"
	if r.Gzip {
		gz = "on"
	}
	fmt.Fprintf(&b, "target     %s\n", target)
	fmt.Fprintf(&b, "load       %s events, %s users, batch %d, %d senders, rate %s, gzip %s, seed %d\n",
		count(int64(r.Events)), count(int64(r.Users)), r.BatchSize, r.Concurrency, rate, gz, r.Seed)
	fmt.Fprintf(&b, "events     sent %s, acked %s in %s batches; mean event %.0f B, %s on the wire\n",
		count(r.Sent), count(r.Acked), count(r.Batches), r.MeanEventBytes, bytesText(r.WireBytes))
	fmt.Fprintf(&b, "throughput %s acked events/s over %s\n", count(int64(math.Round(r.AckedPerSec))), dur(r.Wall))
	fmt.Fprintf(&b, "ack        p50 %s  p90 %s  p99 %s  max %s  (%s batches)\n",
		dur(r.Ack.P50), dur(r.Ack.P90), dur(r.Ack.P99), dur(r.Ack.Max), count(int64(r.Ack.Count)))
	fmt.Fprintf(&b, "status     2xx %s, 429 %s (retries %s), other %s, transport errors %s\n",
		count(r.Status2xx), count(r.Status429), count(r.Retries), count(r.StatusOther), count(r.TransportErrors))
	if r.ReadRate > 0 {
		note := ""
		if r.Null {
			note = " (null server: meaningless)"
		}
		fmt.Fprintf(&b, "reads      %s profile reads: p50 %s  p99 %s  max %s; not found %s, errors %s, skipped %s%s\n",
			count(int64(r.Reads.Count)), dur(r.Reads.P50), dur(r.Reads.P99), dur(r.Reads.Max),
			count(r.ReadNotFound), count(r.ReadErrors), count(r.ReadsSkipped), note)
		if r.ReadError != "" {
			fmt.Fprintf(&b, "read error %s\n", r.ReadError)
		}
	}
	switch {
	case !r.WaitProcessed:
	case r.Null:
		fmt.Fprintf(&b, "processed  n/a (null server)\n")
	case r.Processed:
		fmt.Fprintf(&b, "processed  all in %s end to end → %s events/s (server accepted %s, duplicates %s)\n",
			dur(r.EndToEnd), count(int64(math.Round(r.EndToEndPerSec))), count(r.ServerAccepted), count(r.ServerDuplicate))
	default:
		fmt.Fprintf(&b, "processed  not reached (server accepted %s, duplicates %s)\n",
			count(r.ServerAccepted), count(r.ServerDuplicate))
	}
	if r.WaitProcessed && !r.Null && r.ServerAccepted < r.Acked {
		fmt.Fprintf(&b, "warning    the server accepted %s of %s acked events; reusing a seed against the same server makes messageIds repeat\n",
			count(r.ServerAccepted), count(r.Acked))
	}
	if r.PeakRSS > 0 {
		note := ""
		if r.RSSNote != "" {
			note = " (" + r.RSSNote + ")"
		}
		goMem := ""
		if r.GoMemory > 0 {
			goMem = fmt.Sprintf(" (held by the Go runtime: %s)", bytesText(r.GoMemory))
		}
		fmt.Fprintf(&b, "memory     resident %s at the end%s, peak %s%s\n", bytesText(r.RSS), goMem, bytesText(r.PeakRSS), note)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "error      %s\n", r.Error)
	}
	return b.String()
}

// Compare renders how a run against Kith (kith) measures up to a run of the
// same load against the null server (ceiling): the ceiling is what the load
// generator and HTTP stack manage when the server does nothing but decode,
// so the ratio says how much of the machine's headroom Kith's work costs.
func Compare(ceiling, kith Report) string {
	var b strings.Builder
	ratio := "n/a"
	if ceiling.AckedPerSec > 0 {
		ratio = fmt.Sprintf("%.1f%% of the ceiling", 100*kith.AckedPerSec/ceiling.AckedPerSec)
	}
	fmt.Fprintf(&b, "acked events/s  kith %s  null server %s  → %s\n",
		count(int64(math.Round(kith.AckedPerSec))), count(int64(math.Round(ceiling.AckedPerSec))), ratio)
	for _, row := range []struct {
		name string
		k, c time.Duration
	}{
		{"ack p50", kith.Ack.P50, ceiling.Ack.P50},
		{"ack p99", kith.Ack.P99, ceiling.Ack.P99},
	} {
		times := "n/a"
		if row.c > 0 {
			times = fmt.Sprintf("%.2f× the ceiling", float64(row.k)/float64(row.c))
		}
		fmt.Fprintf(&b, "%-15s kith %s  null server %s  → %s\n", row.name, dur(row.k), dur(row.c), times)
	}
	if kith.WaitProcessed && kith.Processed && ceiling.AckedPerSec > 0 {
		fmt.Fprintf(&b, "end to end      kith %s processed events/s  → %.1f%% of the ceiling\n",
			count(int64(math.Round(kith.EndToEndPerSec))), 100*kith.EndToEndPerSec/ceiling.AckedPerSec)
	}
	if ceiling.Events != kith.Events || ceiling.BatchSize != kith.BatchSize ||
		ceiling.Concurrency != kith.Concurrency || ceiling.Gzip != kith.Gzip || ceiling.Rate != kith.Rate {
		fmt.Fprintf(&b, "warning         the two runs used different loads; the ratio compares unlike things\n")
	}
	return b.String()
}

// count formats n with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// dur formats a duration with about three significant digits in a unit
// that suits its size.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
}

// sig3 formats v (below 1000) with about three significant digits and
// never in exponent notation.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// bytesText formats a byte count in binary units.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
