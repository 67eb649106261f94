package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The destinations benchmark (`kith bench destinations`) measures outbound
// delivery: the same generated traffic as Run, posted to a real server
// whose webhook destinations point at receivers on loopback that timestamp
// every message they get. Each event's messageId is rewritten to name the
// run and the event's position in it, so a receiver knows, from the body
// alone and without a lookup, which request carried the event and hence
// when it was acknowledged: delivery latency is measured per event, from
// the acknowledgement of its request to its arrival at the receiver.
//
// Audience changes are measured with probes: with Probes set, every
// request carries one extra event, "Kith Bench Probe", of a person of its
// own (userId bprobe-<run>-<request>), so that an audience
// `count(event "Kith Bench Probe") >= 1` has exactly one entry per request,
// and its "Audience Entered" message names the request that caused it.

// ProbeEvent is the event name of the probes, and ProbeAudience an audience
// definition with one entry per probe.
const (
	ProbeEvent    = "Kith Bench Probe"
	ProbeAudience = `count(event "Kith Bench Probe") >= 1`
)

// ReceiverMode is how a benchmark receiver answers.
type ReceiverMode string

// Receiver modes.
const (
	// ReceiverOK answers 200 to every request.
	ReceiverOK ReceiverMode = "ok"
	// Receiver503 answers 503 to every request, as a receiver that is down
	// behind a load balancer does.
	Receiver503 ReceiverMode = "503"
	// ReceiverHang reads the request and never answers: the sender's
	// timeout ends each attempt.
	ReceiverHang ReceiverMode = "hang"
)

// ParseReceiverMode reads a mode as the command line writes it.
func ParseReceiverMode(s string) (ReceiverMode, error) {
	switch m := ReceiverMode(s); m {
	case ReceiverOK, Receiver503, ReceiverHang:
		return m, nil
	}
	return "", fmt.Errorf("loadgen: receiver mode %q: want ok, 503 or hang", s)
}

// DeliveryConfig describes the load of one destinations benchmark run.
// Zero values take the Default constants of Config; Target is required.
type DeliveryConfig struct {
	Target     string
	WriteKey   string
	AdminToken string
	// Events is the number of generated events (probes come on top).
	Events      int
	BatchSize   int
	Concurrency int
	Users       int
	// Rate is the offered load in events/s (open loop, latency from each
	// request's due time); 0 sends as fast as the server acknowledges.
	Rate float64
	Seed int64
	// Probes adds one probe event to every request.
	Probes bool
	// Timeout bounds the ingest, waiting for processing included.
	Timeout time.Duration
}

// DeliveryRun is one run of the destinations benchmark: the ids of its
// events, when each request was acknowledged, and its receivers.
type DeliveryRun struct {
	cfg    Config
	probes bool
	nonce  uint32
	// stride is the ids per request (the batch size, one more with
	// probes): id i was sent in request i/stride.
	stride   int
	requests int
	ids      int
	ackAt    []atomic.Int64 // unix nanoseconds, by request
	start    atomic.Int64

	mu        sync.Mutex
	receivers []*Receiver
}

// NewDeliveryRun prepares a run; its receivers are made with NewReceiver
// before Ingest.
func NewDeliveryRun(c DeliveryConfig) (*DeliveryRun, error) {
	cfg, err := Config{
		Target: c.Target, WriteKey: c.WriteKey, AdminToken: c.AdminToken, Events: c.Events,
		BatchSize: c.BatchSize, Concurrency: c.Concurrency, Users: c.Users, Rate: c.Rate,
		Seed: c.Seed, ReadRate: -1, WaitProcessed: true, Timeout: c.Timeout,
	}.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Events <= 0 || cfg.BatchSize <= 0 {
		return nil, errors.New("loadgen: a delivery run needs events and a batch size")
	}
	var nb [4]byte
	_, _ = rand.Read(nb[:])
	d := &DeliveryRun{cfg: cfg, probes: c.Probes, nonce: uint32(nb[0])<<24 | uint32(nb[1])<<16 | uint32(nb[2])<<8 | uint32(nb[3])}
	d.stride = cfg.BatchSize
	d.requests = (cfg.Events + cfg.BatchSize - 1) / cfg.BatchSize
	d.ids = cfg.Events
	if c.Probes {
		d.stride++
		d.ids += d.requests
	}
	d.ackAt = make([]atomic.Int64, d.requests)
	return d, nil
}

// IDs is the number of messages the run sends: events and probes.
func (d *DeliveryRun) IDs() int { return d.ids }

// Probes is the number of probes the run sends.
func (d *DeliveryRun) Probes() int {
	if d.probes {
		return d.requests
	}
	return 0
}

// idLen is the length of a messageId: a UUID's.
const idLen = 36

// appendID appends the messageId of id: the run's nonce and id, in the
// shape of a UUID.
func (d *DeliveryRun) appendID(dst []byte, id int) []byte {
	return fmt.Appendf(dst, "%08x-0000-4000-8000-%012x", d.nonce, id)
}

// parseID returns the id a messageId names, if it is one of this run's.
func (d *DeliveryRun) parseID(b []byte) (int, bool) {
	if len(b) != idLen || string(b[8:24]) != "-0000-4000-8000-" {
		return 0, false
	}
	var n [4]byte
	if _, err := hex.Decode(n[:], b[:8]); err != nil || uint32(n[0])<<24|uint32(n[1])<<16|uint32(n[2])<<8|uint32(n[3]) != d.nonce {
		return 0, false
	}
	id, err := strconv.ParseUint(string(b[24:]), 16, 64)
	if err != nil || id >= uint64(d.ids) {
		return 0, false
	}
	return int(id), true
}

// probeUser is the userId of request i's probe.
func (d *DeliveryRun) probeUser(i int) string { return fmt.Sprintf("bprobe-%08x-%d", d.nonce, i) }

// parseProbeUser returns the request a probe's userId names.
func (d *DeliveryRun) parseProbeUser(u string) (int, bool) {
	rest, ok := strings.CutPrefix(u, fmt.Sprintf("bprobe-%08x-", d.nonce))
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= d.requests {
		return 0, false
	}
	return i, true
}

var messageIDKey = []byte(`"messageId":"`)

// appendBatch appends request i's body: n generated events, their
// messageIds rewritten to ids i×stride …, and the probe last.
func (d *DeliveryRun) appendBatch(dst []byte, g *Generator, i, n int) ([]byte, error) {
	dst = append(dst, `{"batch":[`...)
	id := i * d.stride
	for k := range n {
		if k > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		dst = g.Next(dst)
		p := bytes.Index(dst[start:], messageIDKey)
		if p < 0 || start+p+len(messageIDKey)+idLen > len(dst) {
			return nil, errors.New("loadgen: a generated event has no messageId")
		}
		p += start + len(messageIDKey)
		copy(dst[p:p+idLen], d.appendID(nil, id))
		id++
	}
	if d.probes {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = fmt.Appendf(dst, `{"type":"track","event":%q,"userId":%q,"messageId":"`, ProbeEvent, d.probeUser(i))
		dst = d.appendID(dst, id)
		dst = append(dst, `","timestamp":"`...)
		dst = time.Now().UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		dst = append(dst, `"}`...)
	}
	return append(dst, "]}"...), nil
}

// ackOf returns when the request that carried id was acknowledged (0 if
// it was not).
func (d *DeliveryRun) ackOf(id int) int64 { return d.ackAt[id/d.stride].Load() }

// Ingest posts the run's events as Run does (without profile reads),
// recording when each request was acknowledged, and waits until the
// server has processed them. The report's Events counts probes too.
func (d *DeliveryRun) Ingest(ctx context.Context) (Report, error) {
	cfg := d.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := newRunner(cfg)
	defer r.client.CloseIdleConnections()
	rep := Report{
		Target: cfg.Target, Seed: cfg.Seed, Events: d.ids, BatchSize: d.stride, Concurrency: cfg.Concurrency,
		Users: cfg.Users, Rate: cfg.Rate, WaitProcessed: true,
	}
	base, err := r.stats(ctx)
	if err != nil {
		return rep, fmt.Errorf("loadgen: read baseline stats: %w", err)
	}
	start := time.Now()
	d.start.Store(start.UnixNano())
	gen := NewGenerator(cfg.Seed, cfg.Users, start)
	batches := make(chan batch, 2*cfg.Concurrency)
	genErr := make(chan error, 1)
	go func() {
		defer close(batches)
		for i := range d.requests {
			n := min(cfg.BatchSize, cfg.Events-i*cfg.BatchSize)
			body, err := d.appendBatch(make([]byte, 0, n*450+256), gen, i, n)
			if err != nil {
				genErr <- err
				return
			}
			if d.probes {
				n++
			}
			select {
			case batches <- batch{idx: i, n: n, body: body}:
			case <-ctx.Done():
				return
			}
		}
	}()
	senders := make([]senderStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range senders {
		st := &senders[i]
		wg.Go(func() {
			for b := range batches {
				if ctx.Err() != nil {
					continue
				}
				due := time.Now()
				if cfg.Rate > 0 {
					due = start.Add(time.Duration(float64(b.idx*cfg.BatchSize) / cfg.Rate * float64(time.Second)))
					if !sleepUntil(ctx, due) {
						continue
					}
				}
				st.batches++
				st.sent += int64(b.n)
				if r.post(ctx, b.body, st) {
					now := time.Now()
					d.ackAt[b.idx].Store(now.UnixNano())
					st.lat = append(st.lat, now.Sub(due))
					st.acked += int64(b.n)
					st.last = now
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-genErr:
		return rep, err
	default:
	}
	firstErr := mergeSenders(&rep, senders, start)
	rep.MeanEventBytes = gen.MeanEventBytes()
	if ctx.Err() != nil || rep.Acked < int64(d.ids) {
		if firstErr == nil {
			firstErr = cmpOr(ctx.Err(), errors.New("no answer recorded"))
		}
		rep.Error = firstErr.Error()
		return rep, fmt.Errorf("loadgen: %d of %d events not acknowledged; first failure: %w", int64(d.ids)-rep.Acked, d.ids, firstErr)
	}
	if base.null {
		rep.Null = true // nothing is processed: a test's stand-in
		return rep, nil
	}
	cur, at, err := r.waitProcessed(ctx, base, rep.Acked)
	rep.ServerAccepted = cur.accepted - base.accepted
	rep.ServerDuplicate = cur.duplicate - base.duplicate
	if err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	rep.Processed = true
	rep.EndToEnd = at.Sub(start)
	if rep.EndToEnd > 0 {
		rep.EndToEndPerSec = float64(rep.Acked) / rep.EndToEnd.Seconds()
	}
	return rep, nil
}

// Receiver is a webhook receiver on loopback for one destination: it
// records when each of the run's messages first arrived.
type Receiver struct {
	// Name is the destination's; URL and Secret go into its config.
	Name   string
	Mode   ReceiverMode
	URL    string
	Secret string
	// Events and Audience say what its destination subscribes to, so
	// what it should get: every message, every probe's entry.
	Events, Audience bool

	run     *DeliveryRun
	srv     *http.Server
	closing chan struct{}
	closed  sync.Once
	wh      *standardwebhooks.Webhook

	arrived  []atomic.Int64 // unix nanoseconds of the first arrival, by id
	entered  []atomic.Int64 // of each probe's "Audience Entered", by request
	got      atomic.Int64   // distinct ids
	entries  atomic.Int64   // distinct probe entries
	requests atomic.Int64
	messages atomic.Int64 // messages in requests answered 200, duplicates included
	dups     atomic.Int64
	other    atomic.Int64 // messages not of this run (a test message, say)
	exits    atomic.Int64
	verified atomic.Int64
	sigErr   atomic.Value // string: the first signature that did not verify
}

// NewReceiver starts a receiver on a free loopback port.
func (d *DeliveryRun) NewReceiver(name string, mode ReceiverMode) (*Receiver, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadgen: receiver %s: %w", name, err)
	}
	rc := &Receiver{
		Name: name, Mode: mode, URL: "http://" + ln.Addr().String() + "/hook", Secret: secret,
		run: d, closing: make(chan struct{}), wh: wh,
		arrived: make([]atomic.Int64, d.ids), entered: make([]atomic.Int64, d.requests),
	}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: time.Minute}
	go func() { _ = rc.srv.Serve(ln) }()
	d.mu.Lock()
	d.receivers = append(d.receivers, rc)
	d.mu.Unlock()
	return rc, nil
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP takes one webhook request.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bodyPool.Put(buf)
	_, err := buf.ReadFrom(io.LimitReader(r.Body, 8<<20))
	at := time.Now().UnixNano()
	rc.requests.Add(1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch rc.Mode {
	case Receiver503:
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case ReceiverHang:
		select {
		case <-r.Context().Done():
		case <-rc.closing:
		}
		return
	}
	body := buf.Bytes()
	if rc.verified.Add(1) == 1 {
		// The first request's signature is checked (every request's
		// would cost the benchmark more than the server's signing).
		if err := rc.wh.Verify(body, r.Header); err != nil {
			rc.sigErr.Store(err.Error())
		}
	}
	rc.take(body, at)
	w.WriteHeader(http.StatusOK)
}

// take records the messages of a body, a message or {"batch":[…]}.
func (rc *Receiver) take(body []byte, at int64) {
	d := rc.run
	for i := 0; ; {
		j := bytes.Index(body[i:], messageIDKey)
		if j < 0 {
			break
		}
		p := i + j + len(messageIDKey)
		i = p
		rc.messages.Add(1)
		id, ok := 0, false
		if p+idLen < len(body) && body[p+idLen] == '"' {
			id, ok = d.parseID(body[p : p+idLen])
		}
		switch {
		case !ok && bytes.HasPrefix(body[p:], []byte("dlv_")):
			// A message Kith made (an audience change): its delivery id.
		case !ok:
			rc.other.Add(1)
		case rc.arrived[id].CompareAndSwap(0, at):
			rc.got.Add(1)
		default:
			rc.dups.Add(1)
		}
	}
	if !bytes.Contains(body, []byte(`"Audience E`)) {
		return
	}
	// Audience changes are few: decoded properly.
	var msgs []json.RawMessage
	var env struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if json.Unmarshal(body, &env) == nil && env.Batch != nil {
		msgs = env.Batch
	} else {
		msgs = []json.RawMessage{body}
	}
	for _, m := range msgs {
		var ch struct {
			Event  string `json:"event"`
			UserID string `json:"userId"`
		}
		if json.Unmarshal(m, &ch) != nil {
			continue
		}
		req, ok := d.parseProbeUser(ch.UserID)
		switch {
		case !ok:
		case ch.Event == "Audience Exited":
			rc.exits.Add(1)
		case ch.Event == "Audience Entered" && rc.entered[req].CompareAndSwap(0, at):
			rc.entries.Add(1)
		}
	}
}

// Close stops the receiver; requests hanging in it end.
func (rc *Receiver) Close() {
	rc.closed.Do(func() {
		close(rc.closing)
		_ = rc.srv.Close()
	})
}

// Healthy reports whether the receiver answers 200.
func (rc *Receiver) Healthy() bool { return rc.Mode == ReceiverOK }

// wanted is what the receiver should get: ids and probe entries.
func (rc *Receiver) wanted() (ids, entries int64) {
	if !rc.Healthy() {
		return 0, 0
	}
	if rc.Events {
		ids = int64(rc.run.ids)
	}
	if rc.Audience {
		entries = int64(rc.run.Probes())
	}
	return ids, entries
}

// complete reports whether the receiver has got everything it should.
func (rc *Receiver) complete() bool {
	ids, entries := rc.wanted()
	return rc.got.Load() >= ids && rc.entries.Load() >= entries
}

// WaitDelivered waits until every healthy receiver has got every message
// it should, or timeout passes (an error saying who is short).
func (d *DeliveryRun) WaitDelivered(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		rcs := slices.Clone(d.receivers)
		d.mu.Unlock()
		var short []string
		for _, rc := range rcs {
			if !rc.complete() {
				ids, entries := rc.wanted()
				short = append(short, fmt.Sprintf("%s got %d of %d messages and %d of %d audience entries",
					rc.Name, rc.got.Load(), ids, rc.entries.Load(), entries))
			}
		}
		if len(short) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: deliveries incomplete after %s: %s", timeout, strings.Join(short, "; "))
		}
		if !sleepFor(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Close stops every receiver.
func (d *DeliveryRun) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rc := range d.receivers {
		rc.Close()
	}
}

// ReceiverReport is what one receiver got.
type ReceiverReport struct {
	Name string       `json:"name"`
	Mode ReceiverMode `json:"mode"`
	// Requests counts requests, answered or not; Messages the messages in
	// those answered 200 (duplicates included), Received the distinct ones
	// of the run, out of Wanted.
	Requests   int64 `json:"requests"`
	Messages   int64 `json:"messages"`
	Received   int64 `json:"received"`
	Wanted     int64 `json:"wanted"`
	Duplicates int64 `json:"duplicates"`
	Other      int64 `json:"other"`
	// SignatureError is why the first request's signature did not
	// verify, if it did not.
	SignatureError string `json:"signature_error,omitempty"`
	// Span runs from the start (the first request of the load, or the
	// start given to Results) to the last arrival; PerSec is Received
	// over it.
	Span   time.Duration `json:"span_ns"`
	PerSec float64       `json:"per_sec"`
	// AfterLastAck is how long after the last acknowledgement the last
	// message arrived.
	AfterLastAck time.Duration `json:"after_last_ack_ns"`
	// Latency is from each message's acknowledgement to its arrival
	// (early counts arrivals before the client saw the ack; they count 0).
	Latency Latency `json:"latency"`
	Early   int64   `json:"early"`
	// Entries and EntryLatency: probes' "Audience Entered", from the ack
	// of the probe's request to the entry's arrival.
	WantedEntries int64   `json:"wanted_entries"`
	Entries       int64   `json:"entries"`
	Exits         int64   `json:"exits"`
	EntryLatency  Latency `json:"entry_latency"`
}

// Results reports each receiver's deliveries. Rates are measured from
// since, or from the start of the load when since is zero.
func (d *DeliveryRun) Results(since time.Time) []ReceiverReport {
	from := d.start.Load()
	if !since.IsZero() {
		from = since.UnixNano()
	}
	var lastAck int64
	for i := range d.ackAt {
		lastAck = max(lastAck, d.ackAt[i].Load())
	}
	d.mu.Lock()
	rcs := slices.Clone(d.receivers)
	d.mu.Unlock()
	out := make([]ReceiverReport, 0, len(rcs))
	for _, rc := range rcs {
		ids, entries := rc.wanted()
		rr := ReceiverReport{
			Name: rc.Name, Mode: rc.Mode, Requests: rc.requests.Load(), Messages: rc.messages.Load(),
			Received: rc.got.Load(), Wanted: ids, Duplicates: rc.dups.Load(), Other: rc.other.Load(),
			WantedEntries: entries, Entries: rc.entries.Load(), Exits: rc.exits.Load(),
		}
		if s, ok := rc.sigErr.Load().(string); ok {
			rr.SignatureError = s
		}
		var last int64
		lat := make([]time.Duration, 0, rr.Received)
		for id := range rc.arrived {
			at := rc.arrived[id].Load()
			if at == 0 {
				continue
			}
			last = max(last, at)
			l := time.Duration(at - d.ackOf(id))
			if l < 0 {
				rr.Early++
				l = 0
			}
			lat = append(lat, l)
		}
		rr.Latency = summarize(lat)
		lat = lat[:0]
		for req := range rc.entered {
			at := rc.entered[req].Load()
			if at == 0 {
				continue
			}
			last = max(last, at)
			lat = append(lat, max(time.Duration(at-d.ackAt[req].Load()), 0))
		}
		rr.EntryLatency = summarize(lat)
		if last > 0 {
			rr.Span = time.Duration(last - from)
			rr.AfterLastAck = time.Duration(last - lastAck)
			if rr.Span > 0 {
				rr.PerSec = float64(rr.Received) / rr.Span.Seconds()
			}
		}
		out = append(out, rr)
	}
	return out
}

// HealthySummary is the healthy receivers' results together: the lowest
// and median delivery rate, and the latency of all their messages.
type HealthySummary struct {
	Receivers    int           `json:"receivers"`
	MinPerSec    float64       `json:"min_per_sec"`
	MedianPerSec float64       `json:"median_per_sec"`
	AfterLastAck time.Duration `json:"after_last_ack_ns"`
	Latency      Latency       `json:"latency"`
	EntryLatency Latency       `json:"entry_latency"`
	Complete     bool          `json:"complete"`
}

// Healthy sums up the healthy receivers' results; latencies are
// recomputed over all their messages.
func (d *DeliveryRun) Healthy(rs []ReceiverReport) HealthySummary {
	var h HealthySummary
	h.Complete = true
	var rates []float64
	var lat, entryLat []time.Duration
	d.mu.Lock()
	rcs := slices.Clone(d.receivers)
	d.mu.Unlock()
	for _, rr := range rs {
		if rr.Mode != ReceiverOK {
			continue
		}
		h.Receivers++
		rates = append(rates, rr.PerSec)
		h.AfterLastAck = max(h.AfterLastAck, rr.AfterLastAck)
		h.Complete = h.Complete && rr.Received >= rr.Wanted && rr.Entries >= rr.WantedEntries
	}
	for _, rc := range rcs {
		if !rc.Healthy() {
			continue
		}
		for id := range rc.arrived {
			if at := rc.arrived[id].Load(); at != 0 {
				lat = append(lat, max(time.Duration(at-d.ackOf(id)), 0))
			}
		}
		for req := range rc.entered {
			if at := rc.entered[req].Load(); at != 0 {
				entryLat = append(entryLat, max(time.Duration(at-d.ackAt[req].Load()), 0))
			}
		}
	}
	if len(rates) > 0 {
		slices.Sort(rates)
		h.MinPerSec = rates[0]
		h.MedianPerSec = rates[len(rates)/2]
		if len(rates)%2 == 0 {
			h.MedianPerSec = (rates[len(rates)/2-1] + rates[len(rates)/2]) / 2
		}
	}
	h.Latency = summarize(lat)
	h.EntryLatency = summarize(entryLat)
	return h
}

// ProcessRSS reads a process's resident memory and its peak (VmRSS and
// VmHWM of /proc/<pid>/status, Linux), in bytes.
func ProcessRSS(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("loadgen: %s: %q", name, v)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// ResetPeakRSS resets a process's peak resident memory to its current
// resident memory (Linux: "5" to /proc/<pid>/clear_refs), so the peak of a
// phase can be read on its own.
func ResetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// RSSSampler samples a process's resident memory until stopped, keeping
// the largest value: a check on the kernel's peak, and the peak where it
// cannot be reset.
type RSSSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// SampleRSS starts sampling pid every interval.
func SampleRSS(pid int, every time.Duration) *RSSSampler {
	s := &RSSSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, _, err := ProcessRSS(pid); err == nil && rss > s.max.Load() {
				s.max.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest sample.
func (s *RSSSampler) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.max.Load()
}

// Pid is the running process's id (0 when it is not running).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// MiB renders bytes as mebibytes.
func MiB(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 0, 64) + " MiB" }

// DeliveryReport is one case of the destinations benchmark.
type DeliveryReport struct {
	Case  string `json:"case"`
	Round int    `json:"round,omitempty"`
	// Ingest is the load's report (acks, processing).
	Ingest Report `json:"ingest"`
	// Backlog: the destinations were paused during the load and resumed
	// after it was processed; DrainStart is then.
	Backlog    bool             `json:"backlog"`
	Receivers  []ReceiverReport `json:"receivers"`
	Healthy    HealthySummary   `json:"healthy"`
	Incomplete string           `json:"incomplete,omitempty"`
	// Server memory: PeakRSS over the whole run (VmHWM), LoadPeakRSS
	// sampled during the load; for a backlog, DrainStartRSS when the
	// drain started and DeliveryPeakRSS during it (the kernel's peak,
	// reset when the drain started).
	PeakRSS         int64 `json:"peak_rss"`
	LoadPeakRSS     int64 `json:"load_peak_rss"`
	DrainStartRSS   int64 `json:"drain_start_rss,omitempty"`
	DeliveryPeakRSS int64 `json:"delivery_peak_rss,omitempty"`
	// AudienceLag is the audience engine's own lag from /v1/stats
	// (arrival to committed membership), when audiences were used.
	AudienceLag map[string]float64 `json:"audience_lag,omitempty"`
}

// String renders the report for people.
func (r DeliveryReport) String() string {
	var b strings.Builder
	in := r.Ingest
	rate := "full speed"
	if in.Rate > 0 {
		rate = count(int64(in.Rate)) + " events/s offered"
	}
	fmt.Fprintf(&b, "== %s ==\n", r.Case)
	fmt.Fprintf(&b, "load       %s messages (%s users, %d per request, %d senders, %s, seed %d)\n",
		count(int64(in.Events)), count(int64(in.Users)), in.BatchSize, in.Concurrency, rate, in.Seed)
	fmt.Fprintf(&b, "acked      %s events/s over %s; ack p50 %s p99 %s\n",
		count(int64(math.Round(in.AckedPerSec))), dur(in.Wall), dur(in.Ack.P50), dur(in.Ack.P99))
	if in.Processed {
		fmt.Fprintf(&b, "processed  all in %s end to end → %s events/s\n", dur(in.EndToEnd), count(int64(math.Round(in.EndToEndPerSec))))
	}
	if in.Error != "" {
		fmt.Fprintf(&b, "error      %s\n", in.Error)
	}
	for _, rr := range r.Receivers {
		fmt.Fprintf(&b, "%-10s %-4s %s requests, %s of %s messages", rr.Name, rr.Mode, count(rr.Requests), count(rr.Received), count(rr.Wanted))
		if rr.Received > 0 {
			fmt.Fprintf(&b, ", %s/s, last %s after the last ack, latency p50 %s p99 %s max %s",
				count(int64(math.Round(rr.PerSec))), dur(rr.AfterLastAck), dur(rr.Latency.P50), dur(rr.Latency.P99), dur(rr.Latency.Max))
		}
		if rr.WantedEntries > 0 || rr.Entries > 0 {
			fmt.Fprintf(&b, "; audience entries %s of %s, p50 %s p99 %s max %s", count(rr.Entries), count(rr.WantedEntries),
				dur(rr.EntryLatency.P50), dur(rr.EntryLatency.P99), dur(rr.EntryLatency.Max))
		}
		if rr.Duplicates > 0 || rr.Other > 0 || rr.Exits > 0 {
			fmt.Fprintf(&b, " (duplicates %s, other %s, exits %s)", count(rr.Duplicates), count(rr.Other), count(rr.Exits))
		}
		if rr.SignatureError != "" {
			fmt.Fprintf(&b, " SIGNATURE DID NOT VERIFY: %s", rr.SignatureError)
		}
		b.WriteByte('\n')
	}
	h := r.Healthy
	if h.Receivers > 0 {
		fmt.Fprintf(&b, "healthy    %d receivers: delivered min %s/s, median %s/s; latency p50 %s p99 %s max %s; last %s after the last ack",
			h.Receivers, count(int64(math.Round(h.MinPerSec))), count(int64(math.Round(h.MedianPerSec))),
			dur(h.Latency.P50), dur(h.Latency.P99), dur(h.Latency.Max), dur(h.AfterLastAck))
		if h.EntryLatency.Count > 0 {
			fmt.Fprintf(&b, "; audience entries p50 %s p99 %s max %s", dur(h.EntryLatency.P50), dur(h.EntryLatency.P99), dur(h.EntryLatency.Max))
		}
		b.WriteByte('\n')
	}
	if r.AudienceLag != nil {
		fmt.Fprintf(&b, "audiences  engine lag, arrival to committed membership: p50 %.1f ms, p99 %.1f ms (arrival to the indexer's commit: p50 %.1f ms, p99 %.1f ms)\n",
			r.AudienceLag["lagP50Ms"], r.AudienceLag["lagP99Ms"], r.AudienceLag["indexLagP50Ms"], r.AudienceLag["indexLagP99Ms"])
	}
	fmt.Fprintf(&b, "server     peak RSS %s (during the load %s", MiB(r.PeakRSS), MiB(r.LoadPeakRSS))
	if r.Backlog {
		fmt.Fprintf(&b, "; %s when the drain started, peak during the drain %s", MiB(r.DrainStartRSS), MiB(r.DeliveryPeakRSS))
	}
	b.WriteString(")\n")
	if r.Incomplete != "" {
		fmt.Fprintf(&b, "INCOMPLETE %s\n", r.Incomplete)
	}
	return b.String()
}
