// Package loadgen is Kith's ingest benchmark, exposed as `kith bench ingest`.
//
// Run posts a deterministic stream of realistic Segment events (identify,
// track and page calls of simulated shoppers, ~420 bytes each) to a server's
// POST /v1/batch, as fast as possible or at a fixed rate, while reading
// profiles at a steady rate, and reports acknowledged events per second,
// exact ack-latency percentiles, profile-read latency and, optionally, the
// end-to-end time until the server has processed every event.
//
// A number from one machine means little on its own, so the package also
// provides a null server (NullServer, StartNull) that does only what every
// server must — decode each event — and answers at once. Running the same
// load against it gives the ceiling of the client and HTTP stack on this
// machine, and Compare states Kith's throughput as a share of that ceiling.
package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by Run to zero-valued Config fields. They are exported so
// a command line can show them as flag defaults.
const (
	DefaultEvents      = 200_000
	DefaultBatchSize   = 100
	DefaultConcurrency = 8
	DefaultUsers       = 20_000
	DefaultReadRate    = 50
	DefaultTimeout     = 10 * time.Minute
)

const (
	// maxRetries bounds how often one batch is retried after 429s.
	maxRetries = 100
	// maxRetryAfter caps an honoured Retry-After so a confused server cannot
	// park the benchmark for hours; the run's Timeout bounds it anyway.
	maxRetryAfter = time.Minute
	// readWorkers is how many profile reads may be in flight at once.
	readWorkers = 4
	// recentUsers is how many recently identified users profile reads
	// choose from.
	recentUsers = 4096
	// statsPoll is the interval between GET /v1/stats while waiting for
	// processing; it bounds the end-to-end time's resolution.
	statsPoll = 25 * time.Millisecond
)

// Config describes one benchmark run. Zero values take the Default
// constants; Target is required.
type Config struct {
	// Target is the server's base URL, such as http://127.0.0.1:8080.
	Target string
	// WriteKey authenticates ingest requests (Basic auth, the key as the
	// username and an empty password). Empty sends no credentials.
	WriteKey string
	// AdminToken is the bearer token for profile reads and GET /v1/stats.
	AdminToken string
	// Events is the total number of events to send.
	Events int
	// BatchSize is the number of events per POST /v1/batch.
	BatchSize int
	// Concurrency is the number of parallel senders, each with at most one
	// request in flight.
	Concurrency int
	// Users is the number of distinct simulated people.
	Users int
	// Rate is the target send rate in events per second; 0 sends as fast as
	// the server acknowledges. When set, batches are scheduled open-loop
	// (batch i is due at i×BatchSize/Rate after the start) and ack latency
	// is measured from the due time, so a slow server cannot hide its
	// queueing delay by slowing the client down.
	Rate float64
	// ReadRate is the number of profile reads per second made while
	// ingesting; 0 means DefaultReadRate and a negative value disables them.
	ReadRate float64
	// Seed makes the payloads reproducible; 0 picks a random seed, which
	// the Report records. Reusing a seed against the same server repeats
	// messageIds, which the server then deduplicates.
	Seed int64
	// Gzip compresses each request body (Content-Encoding: gzip), as the
	// RudderStack SDKs do.
	Gzip bool
	// WaitProcessed makes Run, after the last ack, poll GET /v1/stats until
	// the server has processed every event, and report the end-to-end rate.
	WaitProcessed bool
	// Null says the target is a null server, for which WaitProcessed is
	// meaningless and skipped. Run also detects a NullServer by its stats.
	Null bool
	// Timeout bounds the whole run, waiting for processing included.
	Timeout time.Duration
	// Duration, when set, ends the sending after this long (with Rate:
	// no batch due later is sent); Events is then a cap, and the report
	// counts the events sent.
	Duration time.Duration
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.Target == "" {
		return c, errors.New("loadgen: config: target URL is required")
	}
	u, err := url.Parse(c.Target)
	if err != nil {
		return c, fmt.Errorf("loadgen: config: target: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("loadgen: config: target %q is not an http(s) base URL", c.Target)
	}
	c.Target = strings.TrimRight(c.Target, "/")
	if c.Events == 0 {
		c.Events = DefaultEvents
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.ReadRate == 0 {
		c.ReadRate = DefaultReadRate
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"events", c.Events}, {"batch size", c.BatchSize}, {"concurrency", c.Concurrency}, {"users", c.Users}} {
		if f.v < 0 {
			return c, fmt.Errorf("loadgen: config: %s must be positive, got %d", f.name, f.v)
		}
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return c, fmt.Errorf("loadgen: config: rate must be 0 or positive, got %v", c.Rate)
	}
	if math.IsNaN(c.ReadRate) || math.IsInf(c.ReadRate, 0) {
		return c, fmt.Errorf("loadgen: config: read rate must be finite, got %v", c.ReadRate)
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("loadgen: config: timeout must be positive, got %v", c.Timeout)
	}
	if c.Seed == 0 {
		c.Seed = rand.Int64N(math.MaxInt64-1) + 1
	}
	return c, nil
}

// Run sends cfg.Events events to cfg.Target and measures how the server
// copes. It stops by itself once every batch has been answered (and, with
// WaitProcessed, processed), or when ctx ends or cfg.Timeout passes.
//
// The Report is filled as far as the run got even when Run returns an
// error: an error means the run stopped early, some events were not
// acknowledged, or processing did not complete.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := newRunner(cfg)
	defer r.client.CloseIdleConnections()
	rep, err := r.run(ctx)
	if err != nil && rep.Error == "" {
		rep.Error = err.Error()
	}
	return rep, err
}

// runner holds what one Run shares between its goroutines.
type runner struct {
	cfg        Config
	client     *http.Client
	batchURL   string
	statsURL   string
	profileURL string
	recent     recent
}

func newRunner(cfg Config) *runner {
	conns := cfg.Concurrency + readWorkers + 2
	tr := &http.Transport{
		// No proxy: the benchmark measures the server, not a proxy between.
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &runner{
		cfg:        cfg,
		client:     &http.Client{Transport: tr},
		batchURL:   cfg.Target + "/v1/batch",
		statsURL:   cfg.Target + "/v1/stats",
		profileURL: cfg.Target + "/v1/profiles/",
		recent:     recent{ids: make([]int, 0, recentUsers)},
	}
}

// batch is one request's worth of generated events.
type batch struct {
	idx        int
	n          int
	body       []byte
	identified []int
}

// senderStats is one sender's private tally, merged after the run so that
// recording never contends.
type senderStats struct {
	lat                                    []time.Duration
	sent, acked, batches, wire             int64
	ok, tooMany, other, transport, retries int64
	last                                   time.Time
	err                                    error
	errAt                                  time.Time
}

// fail records err if it is the sender's first.
func (s *senderStats) fail(err error) {
	if s.err == nil {
		s.err, s.errAt = err, time.Now()
	}
}

// readStats is one profile reader's private tally.
type readStats struct {
	lat                []time.Duration
	notFound, failures int64
	err                error
}

func (r *runner) run(ctx context.Context) (Report, error) {
	cfg := r.cfg
	rep := Report{
		Target: cfg.Target, Null: cfg.Null, Seed: cfg.Seed, Events: cfg.Events,
		BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency, Users: cfg.Users,
		Rate: cfg.Rate, ReadRate: max(cfg.ReadRate, 0), Gzip: cfg.Gzip,
		WaitProcessed: cfg.WaitProcessed,
	}
	wait := cfg.WaitProcessed && !cfg.Null
	var base statCounts
	if wait {
		s, err := r.stats(ctx)
		if err != nil {
			return rep, fmt.Errorf("loadgen: read baseline stats: %w", err)
		}
		if s.null {
			rep.Null, wait = true, false
		}
		base = s
	}

	start := time.Now()
	nb := (cfg.Events + cfg.BatchSize - 1) / cfg.BatchSize
	gen := NewGenerator(cfg.Seed, cfg.Users, start)
	batches := make(chan batch, 2*cfg.Concurrency)
	produced := make(chan struct{})
	events := cfg.Events // sent in all: fewer when Duration ends the run
	go func() {
		defer close(produced)
		defer close(batches)
		for i := range nb {
			if d := cfg.Duration; d > 0 {
				due := time.Since(start)
				if cfg.Rate > 0 {
					due = time.Duration(float64(i*cfg.BatchSize) / cfg.Rate * float64(time.Second))
				}
				if due >= d {
					events = i * cfg.BatchSize
					return
				}
			}
			n := min(cfg.BatchSize, cfg.Events-i*cfg.BatchSize)
			body, ids := gen.appendBatch(make([]byte, 0, n*450+16), n, nil)
			select {
			case batches <- batch{idx: i, n: n, body: body, identified: ids}:
			case <-ctx.Done():
				return
			}
		}
	}()

	readCtx, stopReads := context.WithCancel(ctx)
	defer stopReads()
	reads := make([]readStats, readWorkers)
	var skipped atomic.Int64
	var readWG sync.WaitGroup
	if cfg.ReadRate > 0 {
		r.startReads(readCtx, &readWG, start, reads, &skipped)
	}

	senders := make([]senderStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range senders {
		senders[i].lat = make([]time.Duration, 0, nb/cfg.Concurrency+1)
		wg.Go(func() { r.send(ctx, batches, start, &senders[i]) })
	}
	wg.Wait()
	<-produced
	rep.Events = events
	stopReads()
	readWG.Wait()

	firstErr := mergeSenders(&rep, senders, start)
	rep.MeanEventBytes = gen.MeanEventBytes()

	var readLat []time.Duration
	var readErr error
	for i := range reads {
		readLat = append(readLat, reads[i].lat...)
		rep.ReadNotFound += reads[i].notFound
		rep.ReadErrors += reads[i].failures
		if readErr == nil {
			readErr = reads[i].err
		}
	}
	rep.Reads = summarize(readLat)
	rep.ReadsSkipped = skipped.Load()
	if readErr != nil {
		rep.ReadError = readErr.Error()
	}

	switch {
	case ctx.Err() != nil:
		return rep, fmt.Errorf("loadgen: run stopped with %d of %d events acknowledged: %w", rep.Acked, events, ctx.Err())
	case rep.Acked < int64(events):
		if firstErr == nil {
			firstErr = errors.New("no answer recorded")
		}
		return rep, fmt.Errorf("loadgen: %d of %d events not acknowledged; first failure: %w", int64(events)-rep.Acked, events, firstErr)
	}
	if firstErr != nil {
		// Every batch got through in the end, but say what went wrong.
		rep.Error = firstErr.Error()
	}

	if wait {
		cur, at, err := r.waitProcessed(ctx, base, rep.Acked)
		rep.ServerAccepted = cur.accepted - base.accepted
		rep.ServerDuplicate = cur.duplicate - base.duplicate
		if err != nil {
			return rep, err
		}
		rep.Processed = true
		rep.EndToEnd = at.Sub(start)
		if rep.EndToEnd > 0 {
			rep.EndToEndPerSec = float64(rep.Acked) / rep.EndToEnd.Seconds()
		}
	}
	return rep, nil
}

// mergeSenders adds the senders' private tallies to rep: counts, the
// wall time from start to the last ack, the acked rate and the ack
// latencies; it returns the earliest failure any sender saw.
func mergeSenders(rep *Report, senders []senderStats, start time.Time) error {
	last := start
	var firstErr error
	var firstAt time.Time
	total := 0
	for i := range senders {
		total += len(senders[i].lat)
	}
	lat := make([]time.Duration, 0, total)
	for i := range senders {
		s := &senders[i]
		lat = append(lat, s.lat...)
		rep.Sent += s.sent
		rep.Acked += s.acked
		rep.Batches += s.batches
		rep.WireBytes += s.wire
		rep.Status2xx += s.ok
		rep.Status429 += s.tooMany
		rep.StatusOther += s.other
		rep.TransportErrors += s.transport
		rep.Retries += s.retries
		if s.last.After(last) {
			last = s.last
		}
		if s.err != nil && (firstErr == nil || s.errAt.Before(firstAt)) {
			firstErr, firstAt = s.err, s.errAt
		}
	}
	rep.Wall = last.Sub(start)
	if rep.Wall > 0 {
		rep.AckedPerSec = float64(rep.Acked) / rep.Wall.Seconds()
	}
	rep.Ack = summarize(lat)
	return firstErr
}

// send posts the batches it receives until the channel closes.
func (r *runner) send(ctx context.Context, batches <-chan batch, start time.Time, st *senderStats) {
	var zw *gzip.Writer
	for b := range batches {
		if ctx.Err() != nil {
			continue // drain; the producer stops too
		}
		body := b.body
		if r.cfg.Gzip {
			// A fresh buffer per batch: the transport may still be reading
			// the previous body when its response has already arrived.
			buf := bytes.NewBuffer(make([]byte, 0, len(body)/3))
			if zw == nil {
				zw = gzip.NewWriter(buf)
			} else {
				zw.Reset(buf)
			}
			// Writes to a bytes.Buffer cannot fail.
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = buf.Bytes()
		}
		due := time.Now()
		if r.cfg.Rate > 0 {
			due = start.Add(time.Duration(float64(b.idx*r.cfg.BatchSize) / r.cfg.Rate * float64(time.Second)))
			if !sleepUntil(ctx, due) {
				continue
			}
		}
		st.batches++
		st.sent += int64(b.n)
		if r.post(ctx, body, st) {
			now := time.Now()
			st.lat = append(st.lat, now.Sub(due))
			st.acked += int64(b.n)
			st.last = now
			r.recent.add(b.identified)
		}
	}
}

// post sends one batch body, retrying after 429 answers, and reports
// whether the server acknowledged it.
func (r *runner) post(ctx context.Context, body []byte, st *senderStats) bool {
	for attempt := 0; attempt <= maxRetries; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.batchURL, bytes.NewReader(body))
		if err != nil {
			st.fail(fmt.Errorf("build batch request: %w", err))
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		if r.cfg.Gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
		if r.cfg.WriteKey != "" {
			req.SetBasicAuth(r.cfg.WriteKey, "")
		}
		st.wire += int64(len(body))
		resp, err := r.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.transport++
				st.fail(fmt.Errorf("post batch: %w", err))
			}
			return false
		}
		snippet := drain(resp)
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			st.ok++
			return true
		case resp.StatusCode == http.StatusTooManyRequests:
			st.tooMany++
			if attempt == maxRetries {
				st.fail(fmt.Errorf("post batch: still 429 after %d retries", maxRetries))
				return false
			}
			st.retries++
			if !sleepFor(ctx, retryAfter(resp.Header.Get("Retry-After"), attempt, time.Now())) {
				return false
			}
		default:
			st.other++
			st.fail(fmt.Errorf("post batch: %s: %s", resp.Status, snippet))
			return false
		}
	}
	return false
}

// retryAfter returns how long to wait before retrying after a 429 with the
// given Retry-After header (seconds or an HTTP date); without one it backs
// off exponentially from 50 ms to 1.6 s.
func retryAfter(h string, attempt int, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h != "" {
		if secs, err := strconv.Atoi(h); err == nil && secs >= 0 {
			return min(time.Duration(secs)*time.Second, maxRetryAfter)
		}
		if t, err := http.ParseTime(h); err == nil {
			return max(0, min(t.Sub(now), maxRetryAfter))
		}
	}
	return 50 * time.Millisecond << min(attempt, 5)
}

// drain reads and closes a response body so its connection is reused, and
// returns the start of the body for error messages.
func drain(resp *http.Response) string {
	defer func() { _ = resp.Body.Close() }()
	head := make([]byte, 256)
	n, _ := io.ReadFull(resp.Body, head)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return strings.TrimSpace(string(head[:n]))
}

// startReads starts the profile readers and their scheduler, which issues
// ReadRate reads per second open-loop until ctx ends; a read due while all
// readers are busy is skipped and counted.
func (r *runner) startReads(ctx context.Context, wg *sync.WaitGroup, start time.Time, stats []readStats, skipped *atomic.Int64) {
	ticks := make(chan struct{}, len(stats))
	for i := range stats {
		stats[i].lat = make([]time.Duration, 0, 1024)
		rng := rand.New(rand.NewPCG(uint64(r.cfg.Seed), uint64(i)))
		wg.Go(func() { r.readProfiles(ctx, ticks, rng, &stats[i]) })
	}
	interval := max(time.Duration(float64(time.Second)/r.cfg.ReadRate), 100*time.Microsecond)
	wg.Go(func() {
		defer close(ticks)
		for k := time.Duration(1); ; k++ {
			if !sleepUntil(ctx, start.Add(k*interval)) {
				return
			}
			select {
			case ticks <- struct{}{}:
			default:
				skipped.Add(1)
			}
		}
	})
}

// readProfiles makes one profile read per tick, preferring users the
// server has recently acknowledged an identify for.
func (r *runner) readProfiles(ctx context.Context, ticks <-chan struct{}, rng *rand.Rand, st *readStats) {
	for range ticks {
		u, ok := r.recent.pick(rng)
		if !ok {
			u = rng.IntN(r.cfg.Users)
		}
		p := person(uint64(r.cfg.Seed), u)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.profileURL+"user_id:"+string(p.userID[:]), nil)
		if err != nil {
			st.failures++
			st.err = cmpOr(st.err, fmt.Errorf("build profile request: %w", err))
			continue
		}
		if r.cfg.AdminToken != "" {
			req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
		}
		t0 := time.Now()
		resp, err := r.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.failures++
			st.err = cmpOr(st.err, fmt.Errorf("read profile: %w", err))
			continue
		}
		snippet := drain(resp)
		d := time.Since(t0)
		switch resp.StatusCode {
		case http.StatusOK:
			st.lat = append(st.lat, d)
		case http.StatusNotFound:
			st.lat = append(st.lat, d)
			st.notFound++
		default:
			st.failures++
			st.err = cmpOr(st.err, fmt.Errorf("read profile: %s: %s", resp.Status, snippet))
		}
	}
}

// cmpOr returns the first non-nil error.
func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// statCounts is the part of GET /v1/stats the benchmark needs, summed over
// sources.
type statCounts struct {
	received, accepted, duplicate, processed int64
	hasReceived                              bool
	null                                     bool
}

// stats fetches and sums the server's counters.
func (r *runner) stats(ctx context.Context) (statCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.statsURL, nil)
	if err != nil {
		return statCounts{}, fmt.Errorf("build stats request: %w", err)
	}
	if r.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return statCounts{}, fmt.Errorf("get stats: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return statCounts{}, fmt.Errorf("get stats: %s: %s", resp.Status, drain(resp))
	}
	var v any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&v); err != nil {
		return statCounts{}, fmt.Errorf("decode stats: %w", err)
	}
	return parseStats(v), nil
}

// parseStats sums the received, accepted, duplicate and processed counters
// in a stats document without depending on its exact shape: it uses a
// top-level "total" (or "totals") object when there is one, and otherwise
// adds up every counter it finds, so per-source maps and lists both work.
// "null": true at the top marks a NullServer.
func parseStats(v any) statCounts {
	var c statCounts
	if m, ok := v.(map[string]any); ok {
		c.null, _ = m["null"].(bool)
		for _, k := range []string{"total", "totals"} {
			if t, ok := m[k].(map[string]any); ok {
				if _, has := t["processed"]; has {
					c.add(t)
					return c
				}
			}
		}
	}
	c.walk(v)
	return c
}

// walk adds every counter found in v and below it.
func (c *statCounts) walk(v any) {
	switch x := v.(type) {
	case map[string]any:
		c.add(x)
		for k, val := range x {
			switch k {
			case "received", "accepted", "duplicate", "processed", "rejected":
			default:
				c.walk(val)
			}
		}
	case []any:
		for _, e := range x {
			c.walk(e)
		}
	}
}

// add adds the counters held directly in m.
func (c *statCounts) add(m map[string]any) {
	num := func(k string) (int64, bool) {
		f, ok := m[k].(float64)
		return int64(f), ok
	}
	if n, ok := num("received"); ok {
		c.received += n
		c.hasReceived = true
	}
	if n, ok := num("accepted"); ok {
		c.accepted += n
	}
	if n, ok := num("duplicate"); ok {
		c.duplicate += n
	}
	if n, ok := num("processed"); ok {
		c.processed += n
	}
}

// caughtUp reports whether the server has processed everything this run
// sent: either processed reached the accepted count at the baseline plus
// the acked events, or — when duplicates or rejections kept accepted lower
// — every event was received and everything accepted was processed.
func caughtUp(base, cur statCounts, acked int64) bool {
	if cur.processed >= base.accepted+acked {
		return true
	}
	return cur.hasReceived && cur.received >= base.received+acked && cur.processed >= cur.accepted
}

// waitProcessed polls the stats until caughtUp, returning the last counts
// and when they were fetched.
func (r *runner) waitProcessed(ctx context.Context, base statCounts, acked int64) (statCounts, time.Time, error) {
	var last statCounts
	var lastErr error
	for {
		cur, err := r.stats(ctx)
		at := time.Now()
		if err == nil {
			last, lastErr = cur, nil
			if caughtUp(base, cur, acked) {
				return cur, at, nil
			}
		} else {
			lastErr = err
		}
		if !sleepFor(ctx, statsPoll) {
			err := ctx.Err()
			if lastErr != nil {
				err = errors.Join(err, lastErr)
			}
			return last, time.Time{}, fmt.Errorf("loadgen: wait for processing: processed %d, want %d: %w",
				last.processed, base.accepted+acked, err)
		}
	}
}

// recent is a small ring of recently identified users for profile reads.
type recent struct {
	mu   sync.Mutex
	ids  []int
	next int
}

// add remembers the given users, displacing the oldest.
func (q *recent) add(ids []int) {
	if len(ids) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		if len(q.ids) < cap(q.ids) {
			q.ids = append(q.ids, id)
			continue
		}
		q.ids[q.next] = id
		q.next = (q.next + 1) % len(q.ids)
	}
}

// pick returns a random remembered user, or false if there is none.
func (q *recent) pick(rng *rand.Rand) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ids) == 0 {
		return 0, false
	}
	return q.ids[rng.IntN(len(q.ids))], true
}

// sleepUntil waits until t and reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleepFor(ctx, time.Until(t))
}

// sleepFor waits for d and reports false if ctx ended first.
func sleepFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
