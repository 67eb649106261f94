package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kithcdp/kith"
)

// The soak test (`kith bench soak`) runs a steady, capped load against a
// server process for a long time while faults are injected: the process
// is killed with SIGKILL and restarted, PostgreSQL is restarted, the
// server's files are stopped from growing (a full disk). Every batch is
// retried until it is acknowledged, as an SDK does. At the end the server
// catches up and is stopped, and the store is read directly: every
// acknowledged messageId must be stored exactly once, nothing stored may
// be foreign, and the source's accounting must add up (received = accepted
// + duplicate + rejected + suppressed; processed = accepted; accepted =
// the events stored).

// Process is a server process that can be started, killed and restarted
// on the same data and address.
type Process struct {
	// Path and Args are the command (e.g. the kith binary and "serve",
	// "--data", ...); Env its environment.
	Path string
	Args []string
	Env  []string
	// Addr is the host:port it listens on; GET /healthz there answers 200
	// once it is ready.
	Addr string
	// Log receives the output of every run, each preceded by a header.
	Log io.Writer
	// StartTimeout bounds how long a start waits for /healthz (default 5
	// minutes: a large store rebuilds its dedup index at start).
	StartTimeout time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	// expected is set when the running process is being ended on purpose.
	expected bool
	runs     int
}

// Start launches the process and waits until it is healthy.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New("loadgen: process: already running")
	}
	p.runs++
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	if p.Log != nil {
		fmt.Fprintf(p.Log, "=== run %d of %s started at %s ===\n", p.runs, filepath.Base(p.Path), time.Now().UTC().Format(time.RFC3339Nano))
		// Through a pipe, even when Log is a file: a cap on the size of
		// the files the process writes (LimitFileSize) must not silence
		// its output.
		w := struct{ io.Writer }{p.Log}
		cmd.Stdout, cmd.Stderr = w, w
	}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("loadgen: start %s: %w", p.Path, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected = cmd, done, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	timeout := p.StartTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-done:
			p.mu.Lock()
			err := p.waitErr
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("loadgen: %s exited before it became healthy: %v", filepath.Base(p.Path), err)
		case <-ctx.Done():
			p.Kill()
			return ctx.Err()
		default:
		}
		if resp, err := client.Get("http://" + p.Addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("loadgen: %s not healthy within %s", filepath.Base(p.Path), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// end signals the running process and waits up to wait for it to exit,
// killing it after that.
func (p *Process) end(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.expected = true
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("loadgen: signal %s: %w", filepath.Base(p.Path), err)
	}
	var err error
	select {
	case <-done:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("loadgen: %s did not exit within %s of %v; killed", filepath.Base(p.Path), wait, sig)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return err
}

// Kill ends the process with SIGKILL, as a crash would, and waits until it
// is gone.
func (p *Process) Kill() error { return p.end(syscall.SIGKILL, time.Minute) }

// Stop ends the process with SIGTERM (a graceful shutdown), killing it if
// it has not exited after a minute.
func (p *Process) Stop() error { return p.end(syscall.SIGTERM, time.Minute) }

// Exited reports whether the process was started and has exited without
// being killed or stopped through p, and forgets it if so.
func (p *Process) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, nil
	}
	select {
	case <-p.done:
		err := p.waitErr
		p.cmd = nil
		return !p.expected, err
	default:
		return false, nil
	}
}

// LimitFileSize caps the size of any file the running process writes at n
// bytes (RLIMIT_FSIZE: a write beyond it fails with EFBIG, as writes fail
// on a full disk); 0 lifts the cap.
func (p *Process) LimitFileSize(n int64) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return errors.New("loadgen: process: not running")
	}
	return setFileSizeLimit(cmd.Process.Pid, n)
}

// SoakServer is what the soak needs of the server under test; *Process
// is one.
type SoakServer interface {
	Start(ctx context.Context) error
	Kill() error
	Stop() error
	Exited() (bool, error)
	LimitFileSize(n int64) error
}

// SoakConfig describes a soak run.
type SoakConfig struct {
	// Target is the server's base URL, the same across restarts.
	Target string
	// WriteKey is the write key of SourceID, the source all the load is
	// sent to; AdminToken reads GET /v1/stats.
	WriteKey, AdminToken, SourceID string
	// Server is the running server under test.
	Server SoakServer
	// Duration is how long load is offered; faults scheduled within it
	// are injected even if the run is late.
	Duration time.Duration
	// Rate is the offered load in events per second (open loop: batch i
	// is due at i×BatchSize/Rate). Batches whose requests fail are retried
	// until acknowledged, so the acknowledged rate falls behind during an
	// outage and catches up after it.
	Rate float64
	// BatchSize, Concurrency (parallel senders) and Users (distinct
	// people) shape the load; Seed makes it reproducible (0: random).
	BatchSize, Concurrency, Users int
	Seed                          int64
	// KillEvery kills the server with SIGKILL and restarts it once per
	// interval (the first after half of it, see schedule); 0 never.
	KillEvery time.Duration
	// RestartPostgresEvery runs RestartPostgres once per interval; 0
	// never.
	RestartPostgresEvery time.Duration
	RestartPostgres      func(ctx context.Context) error
	// DiskFullEvery makes the disk "full" once per interval, for
	// DiskFullFor: every file the server writes is capped at the current
	// size of DiskFullSizeOf plus DiskFullHeadroom (default 1 MiB), so a
	// write beyond that offset fails as it would on a full disk. With the
	// log's write-ahead log as DiskFullSizeOf, writes to the (larger)
	// database files fail at once and appends after another MiB. Then the
	// cap is lifted and the server must acknowledge again without a
	// restart.
	DiskFullEvery, DiskFullFor time.Duration
	DiskFullSizeOf             string
	DiskFullHeadroom           int64
	// StoredIDs calls fn with the messageId of every event of SourceID in
	// the store; it runs after the server is stopped.
	StoredIDs func(ctx context.Context, fn func(messageID string)) error
	// Progress receives a line every ProgressEvery (default 30 s).
	Progress      io.Writer
	ProgressEvery time.Duration
	// DrainTimeout bounds how long after Duration the senders keep
	// retrying unacknowledged batches (default 5 minutes); CatchUpTimeout
	// how long the server may take to process what it accepted (default
	// 10 minutes).
	DrainTimeout, CatchUpTimeout time.Duration
}

// SoakReport is the outcome of a soak run. Durations marshal as integer
// nanoseconds.
type SoakReport struct {
	Duration    time.Duration `json:"duration_ns"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	Rate        float64       `json:"offered_rate"`
	BatchSize   int           `json:"batch_size"`
	Concurrency int           `json:"concurrency"`
	Users       int           `json:"users"`
	Seed        int64         `json:"seed"`

	Batches      int     `json:"batches"`
	BatchesAcked int     `json:"batches_acked"`
	EventsSent   int64   `json:"events_sent"`
	EventsAcked  int64   `json:"events_acked"`
	AckedPerSec  float64 `json:"acked_per_sec"`
	// Requests counts POST /v1/batch attempts; Retries the failed ones by
	// cause (transport, 429, 5xx, ...).
	Requests int64            `json:"requests"`
	Retries  map[string]int64 `json:"retries"`
	// AckLatency is from each batch's due time to its acknowledgement,
	// retries and outages included.
	AckLatency Latency `json:"ack_latency"`

	Kills int `json:"kills"`
	// Restart is from a kill to the restarted server being healthy.
	// Outage is, for each fault, the longest stretch without any
	// acknowledgement from the fault's start until the first
	// acknowledgement after it ended (the restart, the command, the cap).
	Restart         Latency         `json:"restart"`
	Outage          Latency         `json:"outage"`
	PostgresRestart int             `json:"postgres_restarts"`
	DiskFull        []DiskFullEvent `json:"disk_full,omitempty"`
	UnexpectedExits []string        `json:"unexpected_exits,omitempty"`
	// AccountingChecks counts the stats checks made after each fault.
	AccountingChecks int `json:"accounting_checks"`

	Final    kith.Counts   `json:"final"`
	CatchUp  time.Duration `json:"catch_up_ns"`
	Stored   int64         `json:"stored"`
	Missing  int64         `json:"missing"`
	Repeated int64         `json:"stored_more_than_once"`
	Foreign  int64         `json:"foreign"`
	// StoredUnacked counts events stored whose batch was never
	// acknowledged (committed, then the answer was lost to a fault and
	// the run ended before a retry succeeded).
	StoredUnacked int64 `json:"stored_unacknowledged"`

	Failures []string `json:"failures,omitempty"`
}

// DiskFullEvent is one full-disk episode.
type DiskFullEvent struct {
	At         time.Duration `json:"at_ns"`
	LimitBytes int64         `json:"limit_bytes"`
	// Failed counts requests answered with an error or not answered
	// while the cap was on.
	Failed    int64 `json:"failed_requests"`
	Recovered bool  `json:"recovered"`
	// RecoveredAfter is from lifting the cap to the next acknowledgement.
	RecoveredAfter time.Duration `json:"recovered_after_ns"`
}

// OK reports whether the run found nothing wrong.
func (r SoakReport) OK() bool { return len(r.Failures) == 0 }

// String renders the report for a terminal.
func (r SoakReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load:        %s at %s events/s offered (%d per batch, %d senders, %s users, seed %d)\n",
		dur(r.Duration), count(int64(r.Rate)), r.BatchSize, r.Concurrency, count(int64(r.Users)), r.Seed)
	fmt.Fprintf(&b, "acked:       %s of %s events (%d of %d batches), %s events/s over %s\n",
		count(r.EventsAcked), count(r.EventsSent), r.BatchesAcked, r.Batches, count(int64(r.AckedPerSec)), dur(r.Elapsed))
	fmt.Fprintf(&b, "requests:    %s, retried: %s\n", count(r.Requests), retriesText(r.Retries))
	fmt.Fprintf(&b, "ack latency: p50 %s  p99 %s  max %s (from due time, outages included)\n", dur(r.AckLatency.P50), dur(r.AckLatency.P99), dur(r.AckLatency.Max))
	restart := ""
	if r.Restart.Count > 0 {
		restart = fmt.Sprintf(" (restart p50 %s, max %s)", dur(r.Restart.P50), dur(r.Restart.Max))
	}
	fmt.Fprintf(&b, "faults:      %d kills%s, %d PostgreSQL restarts, %d full-disk episodes, %d unexpected exits\n",
		r.Kills, restart, r.PostgresRestart, len(r.DiskFull), len(r.UnexpectedExits))
	if r.Outage.Count > 0 {
		fmt.Fprintf(&b, "outage:      longest time without an ack per fault: p50 %s, max %s\n", dur(r.Outage.P50), dur(r.Outage.Max))
	}
	for _, d := range r.DiskFull {
		state := fmt.Sprintf("recovered %s after the cap was lifted", dur(d.RecoveredAfter))
		if !d.Recovered {
			state = "did not recover without a restart"
		}
		fmt.Fprintf(&b, "disk full:   at %s, files capped at %s, %d requests failed, %s\n", dur(d.At), bytesText(d.LimitBytes), d.Failed, state)
	}
	for _, e := range r.UnexpectedExits {
		fmt.Fprintf(&b, "exit:        %s\n", e)
	}
	f := r.Final
	fmt.Fprintf(&b, "accounting:  received %d = accepted %d + duplicate %d + rejected %d + suppressed %d; processed %d (caught up %s after the last ack); %d checks after faults\n",
		f.Received, f.Accepted, f.Duplicate, f.RejectedTotal(), f.Suppressed, f.Processed, dur(r.CatchUp), r.AccountingChecks)
	fmt.Fprintf(&b, "store:       %d events stored; acknowledged but missing %d, stored more than once %d, foreign %d, stored but never acknowledged %d\n",
		r.Stored, r.Missing, r.Repeated, r.Foreign, r.StoredUnacked)
	if r.OK() {
		b.WriteString("result:      PASS\n")
	} else {
		b.WriteString("result:      FAIL\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	return b.String()
}

func retriesText(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// soak is one run's shared state.
type soak struct {
	cfg    SoakConfig
	client *http.Client
	start  time.Time
	// progressMu serialises progress lines: the load and the faults
	// report from their own goroutines.
	progressMu sync.Mutex

	// ids[i*BatchSize+j] is the messageId of event j of batch i;
	// acked[i] says whether batch i was acknowledged.
	ids   [][16]byte
	acked []atomic.Bool

	generated, ackedBatches atomic.Int64
	requests                atomic.Int64
	failedRequests          atomic.Int64 // for the disk-full episodes
	lastAck                 atomic.Int64 // unix nanoseconds

	mu            sync.Mutex
	retries       map[string]int64
	lat, restarts []time.Duration
	ackTimes      []int64 // unix nanoseconds of every acknowledgement
	windows       [][2]time.Time
	failures      []string
	rep           SoakReport
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 100 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

func (s *soak) progress(format string, args ...any) {
	if s.cfg.Progress != nil {
		line := fmt.Sprintf("[%6s] %s\n", dur(time.Since(s.start).Round(time.Second)), fmt.Sprintf(format, args...))
		s.progressMu.Lock()
		io.WriteString(s.cfg.Progress, line)
		s.progressMu.Unlock()
	}
}

// Soak runs the soak test described by cfg against a server already
// started, and stops the server at the end. An error means the run could
// not be carried out; what it found wrong is in the report's Failures.
func Soak(ctx context.Context, cfg SoakConfig) (SoakReport, error) {
	if cfg.Target == "" || cfg.Server == nil || cfg.StoredIDs == nil || cfg.SourceID == "" {
		return SoakReport{}, errors.New("loadgen: soak: Target, Server, SourceID and StoredIDs are required")
	}
	if cfg.Duration <= 0 || cfg.Rate <= 0 {
		return SoakReport{}, errors.New("loadgen: soak: Duration and Rate must be positive")
	}
	if cfg.RestartPostgresEvery > 0 && cfg.RestartPostgres == nil {
		return SoakReport{}, errors.New("loadgen: soak: RestartPostgresEvery needs RestartPostgres")
	}
	if cfg.DiskFullEvery > 0 && (cfg.DiskFullFor <= 0 || cfg.DiskFullSizeOf == "") {
		return SoakReport{}, errors.New("loadgen: soak: DiskFullEvery needs DiskFullFor and DiskFullSizeOf")
	}
	cfg.BatchSize = cmp0(cfg.BatchSize, 50)
	cfg.Concurrency = cmp0(cfg.Concurrency, 8)
	cfg.Users = cmp0(cfg.Users, DefaultUsers)
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = 30 * time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Minute
	}
	if cfg.CatchUpTimeout == 0 {
		cfg.CatchUpTimeout = 10 * time.Minute
	}
	if cfg.DiskFullHeadroom == 0 {
		cfg.DiskFullHeadroom = 1 << 20
	}
	perBatch := float64(cfg.BatchSize) / cfg.Rate * float64(time.Second)
	nBatches := int(float64(cfg.Duration) / perBatch)
	if float64(nBatches)*perBatch < float64(cfg.Duration) {
		nBatches++
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency + 4,
		MaxIdleConnsPerHost: cfg.Concurrency + 4,
		IdleConnTimeout:     30 * time.Second,
	}
	s := &soak{
		cfg:     cfg,
		client:  &http.Client{Transport: tr, Timeout: time.Minute},
		ids:     make([][16]byte, nBatches*cfg.BatchSize),
		acked:   make([]atomic.Bool, nBatches),
		retries: map[string]int64{},
	}
	defer tr.CloseIdleConnections()
	s.rep = SoakReport{Duration: cfg.Duration, Rate: cfg.Rate, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency,
		Users: cfg.Users, Seed: cfg.Seed, Batches: nBatches}
	err := s.run(ctx)
	s.mu.Lock()
	s.rep.Failures = append(s.rep.Failures, s.failures...)
	s.mu.Unlock()
	return s.rep, err
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

type soakBatch struct {
	idx  int
	due  time.Time
	body []byte
}

func (s *soak) run(ctx context.Context) error {
	cfg := s.cfg
	s.start = time.Now()
	s.lastAck.Store(s.start.UnixNano())
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	work := make(chan soakBatch, len(s.acked))
	var senders sync.WaitGroup
	for range cfg.Concurrency {
		senders.Add(1)
		go func() {
			defer senders.Done()
			s.send(loadCtx, work)
		}()
	}
	// The producer generates each batch when it is due.
	produced := make(chan error, 1)
	go func() {
		defer close(work)
		g := NewGenerator(cfg.Seed, cfg.Users, s.start)
		perBatch := float64(cfg.BatchSize) / cfg.Rate * float64(time.Second)
		for i := range s.acked {
			due := s.start.Add(time.Duration(float64(i) * perBatch))
			if !sleepUntil(loadCtx, due) {
				produced <- nil
				return
			}
			body := g.AppendBatch(make([]byte, 0, cfg.BatchSize*512), cfg.BatchSize)
			if err := s.recordIDs(i, body); err != nil {
				produced <- err
				return
			}
			s.generated.Add(1)
			work <- soakBatch{idx: i, due: due, body: body}
		}
		produced <- nil
	}()
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()

	// Progress lines until the senders are done.
	go func() {
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-sendersDone:
				return
			case <-t.C:
				s.mu.Lock()
				kills, pg, disk := s.rep.Kills, s.rep.PostgresRestart, len(s.rep.DiskFull)
				s.mu.Unlock()
				gen, ack := s.generated.Load(), s.ackedBatches.Load()
				s.progress("acked %s events (%s/s), %d batches pending; %d kills, %d PostgreSQL restarts, %d full-disk episodes",
					count(ack*int64(cfg.BatchSize)), count(int64(float64(ack*int64(cfg.BatchSize))/time.Since(s.start).Seconds())),
					gen-ack, kills, pg, disk)
			}
		}
	}()

	// Faults, until they are all done and the load is over.
	faultsDone := make(chan error, 1)
	go func() { faultsDone <- s.faults(ctx, sendersDone) }()

	// The load ends at Duration; the senders then retry what is not
	// acknowledged for at most DrainTimeout.
	if err := <-produced; err != nil {
		stopLoad()
		<-faultsDone
		return err
	}
	select {
	case <-sendersDone:
	case <-time.After(cfg.DrainTimeout):
		s.fail("%d batches still unacknowledged %s after the load ended", s.generated.Load()-s.ackedBatches.Load(), cfg.DrainTimeout)
		stopLoad()
		<-sendersDone
	case <-ctx.Done():
		stopLoad()
		<-sendersDone
		<-faultsDone
		return ctx.Err()
	}
	lastAck := time.Unix(0, s.lastAck.Load())
	s.progress("load over: %d of %d batches acknowledged", s.ackedBatches.Load(), s.generated.Load())
	if err := <-faultsDone; err != nil {
		return err
	}
	s.rep.Elapsed = lastAck.Sub(s.start)

	// The server catches up; then it is stopped and the store read.
	final, err := s.waitCaughtUp(ctx)
	if err != nil {
		s.fail("%v", err)
	}
	s.rep.Final = final
	s.rep.CatchUp = max(0, time.Since(lastAck))
	s.progress("stopping the server")
	if err := cfg.Server.Stop(); err != nil {
		s.fail("graceful stop: %v", err)
	}
	s.progress("reading the store")
	s.summarizeLoad()
	return s.verify(ctx)
}

// recordIDs keeps the messageIds of batch i.
func (s *soak) recordIDs(i int, body []byte) error {
	var b struct {
		Batch []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("loadgen: soak: generated batch %d: %w", i, err)
	}
	if len(b.Batch) != s.cfg.BatchSize {
		return fmt.Errorf("loadgen: soak: generated batch %d has %d events", i, len(b.Batch))
	}
	for j, m := range b.Batch {
		id, ok := parseUUID(m.MessageID)
		if !ok {
			return fmt.Errorf("loadgen: soak: generated messageId %q is not a UUID", m.MessageID)
		}
		s.ids[i*s.cfg.BatchSize+j] = id
	}
	return nil
}

// parseUUID reads a UUID's 32 hex digits (dashes ignored).
func parseUUID(v string) ([16]byte, bool) {
	var id [16]byte
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		var d byte
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return id, false
		}
		if n >= 32 {
			return id, false
		}
		id[n/2] |= d << (4 * uint(1-n%2))
		n++
	}
	return id, n == 32
}

// send posts batches until each is acknowledged or ctx ends.
func (s *soak) send(ctx context.Context, work <-chan soakBatch) {
	var lat []time.Duration
	var at []int64
	defer func() {
		s.mu.Lock()
		s.lat = append(s.lat, lat...)
		s.ackTimes = append(s.ackTimes, at...)
		s.mu.Unlock()
	}()
	for b := range work {
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				break
			}
			ok, retry, cause := s.post(ctx, b)
			if ok {
				now := time.Now()
				lat = append(lat, now.Sub(b.due))
				at = append(at, now.UnixNano())
				s.acked[b.idx].Store(true)
				s.ackedBatches.Add(1)
				s.lastAck.Store(now.UnixNano())
				break
			}
			if ctx.Err() != nil {
				break
			}
			s.failedRequests.Add(1)
			s.mu.Lock()
			s.retries[cause]++
			s.mu.Unlock()
			if !retry {
				break
			}
			sleepFor(ctx, min(50*time.Millisecond<<min(attempt, 5), 2*time.Second))
		}
	}
}

// post sends one batch: acknowledged, or whether to retry and why not.
func (s *soak) post(ctx context.Context, b soakBatch) (ok, retry bool, cause string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Target+"/v1/batch", bytes.NewReader(b.body))
	if err != nil {
		s.fail("build request: %v", err)
		return false, false, "request"
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(s.cfg.WriteKey, "")
	s.requests.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		return false, true, "transport"
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		var out struct {
			Success  bool              `json:"success"`
			Accepted int               `json:"accepted"`
			Dups     int               `json:"duplicates"`
			Rejected []json.RawMessage `json:"rejected"`
		}
		if err := json.Unmarshal(body, &out); err != nil || !out.Success || len(out.Rejected) > 0 || out.Accepted+out.Dups != s.cfg.BatchSize {
			s.fail("batch %d: unexpected answer: %.300s", b.idx, body)
			return false, false, "unexpected answer"
		}
		return true, false, ""
	case resp.StatusCode == http.StatusTooManyRequests:
		return false, true, "429"
	case resp.StatusCode >= 500:
		return false, true, fmt.Sprintf("%d", resp.StatusCode)
	default:
		s.fail("batch %d: HTTP %d: %.300s", b.idx, resp.StatusCode, body)
		return false, false, fmt.Sprintf("%d", resp.StatusCode)
	}
}

// fault is one scheduled fault.
type fault struct {
	at   time.Duration
	kind string // "kill", "postgres", "disk"
}

// schedule lists the faults of a run in time order: each kind every
// interval, the first after half an interval, so that a run of n
// intervals has n faults of the kind, all while the load runs.
func schedule(cfg SoakConfig) []fault {
	var fs []fault
	add := func(every time.Duration, kind string) {
		if every <= 0 {
			return
		}
		for t := every / 2; t < cfg.Duration; t += every {
			fs = append(fs, fault{t, kind})
		}
	}
	add(cfg.KillEvery, "kill")
	add(cfg.RestartPostgresEvery, "postgres")
	add(cfg.DiskFullEvery, "disk")
	slices.SortStableFunc(fs, func(a, b fault) int { return int(a.at - b.at) })
	return fs
}

// faults injects the scheduled faults, and restarts the server whenever
// it exits on its own, until the faults are done and loadDone is closed.
func (s *soak) faults(ctx context.Context, loadDone <-chan struct{}) error {
	pending := schedule(s.cfg)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := s.restartIfExited(ctx); err != nil {
			return err
		}
		if len(pending) > 0 && time.Since(s.start) >= pending[0].at {
			f := pending[0]
			pending = pending[1:]
			var err error
			switch f.kind {
			case "kill":
				err = s.kill(ctx)
			case "postgres":
				err = s.restartPostgres(ctx)
			case "disk":
				err = s.diskFull(ctx)
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(pending) == 0 {
			select {
			case <-loadDone:
				return s.restartIfExited(ctx)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// restartIfExited restarts a server that exited on its own, noting it.
func (s *soak) restartIfExited(ctx context.Context) error {
	exited, err := s.cfg.Server.Exited()
	if !exited {
		return nil
	}
	at := time.Since(s.start).Round(time.Millisecond)
	s.mu.Lock()
	s.rep.UnexpectedExits = append(s.rep.UnexpectedExits, fmt.Sprintf("at %s: %v", dur(at), err))
	s.mu.Unlock()
	s.fail("the server exited on its own at %s (%v)", dur(at), err)
	s.progress("the server exited on its own (%v); restarting it", err)
	if err := s.cfg.Server.Start(ctx); err != nil {
		return fmt.Errorf("loadgen: soak: restart after an unexpected exit: %w", err)
	}
	return nil
}

// kill kills the server, restarts it, and checks the accounting.
func (s *soak) kill(ctx context.Context) error {
	ackedBefore := s.ackedBatches.Load()
	t0 := time.Now()
	if err := s.cfg.Server.Kill(); err != nil {
		return fmt.Errorf("loadgen: soak: kill: %w", err)
	}
	if err := s.cfg.Server.Start(ctx); err != nil {
		return fmt.Errorf("loadgen: soak: restart after kill: %w", err)
	}
	restart := time.Since(t0)
	s.mu.Lock()
	s.rep.Kills++
	n := s.rep.Kills
	s.mu.Unlock()
	s.record(t0, time.Now(), restart)
	outage, ok := s.waitAck(ctx, ackedBefore, t0, time.Minute)
	s.progress("kill %d: restarted in %s, next ack %s after the kill", n, dur(restart), durOr(outage, ok))
	s.checkAccounting(ctx, "after kill", ackedBefore)
	return nil
}

func durOr(d time.Duration, ok bool) string {
	if !ok {
		return "(none: no load pending)"
	}
	return dur(d)
}

// record notes a fault's window and, for a kill, the restart time.
func (s *soak) record(start, end time.Time, restart time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if restart > 0 {
		s.restarts = append(s.restarts, restart)
	}
	s.windows = append(s.windows, [2]time.Time{start, end})
}

// outages returns, for each fault window, the longest stretch without an
// acknowledgement from its start until the first acknowledgement after
// its end; a window no acknowledgement followed is left out. ackTimes
// must be sorted.
func outages(ackTimes []int64, windows [][2]time.Time) []time.Duration {
	var out []time.Duration
	for _, w := range windows {
		start, end := w[0].UnixNano(), w[1].UnixNano()
		i, _ := slices.BinarySearch(ackTimes, start)
		prev, longest := start, int64(0)
		for ; i < len(ackTimes); i++ {
			longest = max(longest, ackTimes[i]-prev)
			prev = ackTimes[i]
			if ackTimes[i] > end {
				out = append(out, time.Duration(longest))
				break
			}
		}
	}
	return out
}

// restartPostgres restarts PostgreSQL and measures the outage.
func (s *soak) restartPostgres(ctx context.Context) error {
	ackedBefore := s.ackedBatches.Load()
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err := s.cfg.RestartPostgres(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("loadgen: soak: restart PostgreSQL: %w", err)
	}
	took := time.Since(t0)
	s.mu.Lock()
	s.rep.PostgresRestart++
	n := s.rep.PostgresRestart
	s.mu.Unlock()
	s.record(t0, time.Now(), 0)
	outage, ok := s.waitAck(ctx, s.ackedBatches.Load(), t0, 2*time.Minute)
	s.progress("PostgreSQL restart %d: took %s, next ack %s after it began", n, dur(took), durOr(outage, ok))
	s.checkAccounting(ctx, "after a PostgreSQL restart", ackedBefore)
	return nil
}

// diskFull caps the server's file sizes for DiskFullFor, lifts the cap,
// and measures whether the server recovers by itself; if it does not
// within a minute, it is killed and restarted.
func (s *soak) diskFull(ctx context.Context) error {
	var size int64
	if info, err := os.Stat(s.cfg.DiskFullSizeOf); err == nil {
		size = info.Size()
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("loadgen: soak: disk full: %w", err)
	}
	ev := DiskFullEvent{At: time.Since(s.start).Round(time.Millisecond), LimitBytes: size + s.cfg.DiskFullHeadroom}
	failedBefore := s.failedRequests.Load()
	capped := time.Now()
	if err := s.cfg.Server.LimitFileSize(ev.LimitBytes); err != nil {
		return fmt.Errorf("loadgen: soak: disk full: %w", err)
	}
	s.progress("disk full: files capped at %s for %s", bytesText(ev.LimitBytes), dur(s.cfg.DiskFullFor))
	sleepFor(ctx, s.cfg.DiskFullFor)
	ackedAtLift := s.ackedBatches.Load()
	lifted := time.Now()
	if err := s.cfg.Server.LimitFileSize(0); err != nil {
		// The server may have exited on its own meanwhile.
		if exited, _ := s.cfg.Server.Exited(); !exited {
			return fmt.Errorf("loadgen: soak: lift the file size cap: %w", err)
		}
		s.mu.Lock()
		s.rep.UnexpectedExits = append(s.rep.UnexpectedExits, fmt.Sprintf("at %s: while its disk was full", dur(time.Since(s.start).Round(time.Millisecond))))
		s.mu.Unlock()
		s.fail("the server exited while its disk was full")
		if err := s.cfg.Server.Start(ctx); err != nil {
			return fmt.Errorf("loadgen: soak: restart after a full disk: %w", err)
		}
	}
	ev.Failed = s.failedRequests.Load() - failedBefore
	s.record(capped, lifted, 0)
	ev.RecoveredAfter, ev.Recovered = s.waitAck(ctx, ackedAtLift, lifted, time.Minute)
	if !ev.Recovered && s.generated.Load() > s.ackedBatches.Load() {
		s.fail("the server did not acknowledge anything within a minute of the disk having space again")
		if err := s.cfg.Server.Kill(); err != nil {
			return err
		}
		if err := s.cfg.Server.Start(ctx); err != nil {
			return fmt.Errorf("loadgen: soak: restart after a full disk: %w", err)
		}
	} else if !ev.Recovered {
		ev.Recovered = true // nothing was pending: nothing to acknowledge
	}
	s.mu.Lock()
	s.rep.DiskFull = append(s.rep.DiskFull, ev)
	s.mu.Unlock()
	s.progress("disk full: lifted; %d requests failed meanwhile; next ack %s after", ev.Failed, durOr(ev.RecoveredAfter, ev.Recovered))
	s.checkAccounting(ctx, "after a full disk", ackedAtLift)
	return nil
}

// waitAck waits until more than before batches are acknowledged and
// returns how long after since that was; false if it did not happen
// within timeout (or no load was pending).
func (s *soak) waitAck(ctx context.Context, before int64, since time.Time, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.ackedBatches.Load() > before {
			return time.Unix(0, s.lastAck.Load()).Sub(since), true
		}
		if s.generated.Load() == s.ackedBatches.Load() && time.Since(s.start) > s.cfg.Duration {
			return 0, false
		}
		if !sleepFor(ctx, 5*time.Millisecond) {
			return 0, false
		}
	}
	return 0, false
}

// sourceCounts reads the soak source's counters from GET /v1/stats.
func (s *soak) sourceCounts(ctx context.Context) (kith.Counts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.Target+"/v1/stats", nil)
	if err != nil {
		return kith.Counts{}, err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken)
	resp, err := s.client.Do(req)
	if err != nil {
		return kith.Counts{}, fmt.Errorf("get stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return kith.Counts{}, fmt.Errorf("get stats: %s: %s", resp.Status, drain(resp))
	}
	var st struct {
		Sources []struct {
			ID string `json:"id"`
			kith.Counts
		} `json:"sources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return kith.Counts{}, fmt.Errorf("decode stats: %w", err)
	}
	for _, src := range st.Sources {
		if src.ID == s.cfg.SourceID {
			return src.Counts, nil
		}
	}
	return kith.Counts{}, fmt.Errorf("stats: source %s not listed", s.cfg.SourceID)
}

// addsUp checks the accounting identity.
func addsUp(c kith.Counts) error {
	if c.Received != c.Accepted+c.Duplicate+c.RejectedTotal()+c.Suppressed {
		return fmt.Errorf("received %d != accepted %d + duplicate %d + rejected %d + suppressed %d",
			c.Received, c.Accepted, c.Duplicate, c.RejectedTotal(), c.Suppressed)
	}
	if c.Processed > c.Accepted {
		return fmt.Errorf("processed %d > accepted %d", c.Processed, c.Accepted)
	}
	return nil
}

// checkAccounting checks, after a fault, that the counters add up and
// that at least every event acknowledged before it is counted accepted.
func (s *soak) checkAccounting(ctx context.Context, when string, ackedBefore int64) {
	c, err := s.sourceCounts(ctx)
	if err != nil {
		s.fail("%s: %v", when, err)
		return
	}
	s.mu.Lock()
	s.rep.AccountingChecks++
	s.mu.Unlock()
	if err := addsUp(c); err != nil {
		s.fail("%s: %v", when, err)
	}
	if want := ackedBefore * int64(s.cfg.BatchSize); c.Accepted < want {
		s.fail("%s: accepted %d, but %d events were acknowledged before", when, c.Accepted, want)
	}
}

// waitCaughtUp waits until the server has processed everything it
// accepted, and returns its final counters.
func (s *soak) waitCaughtUp(ctx context.Context) (kith.Counts, error) {
	deadline := time.Now().Add(s.cfg.CatchUpTimeout)
	var last kith.Counts
	var lastErr error
	for {
		c, err := s.sourceCounts(ctx)
		if err == nil {
			last, lastErr = c, nil
			if c.Processed == c.Accepted && addsUp(c) == nil {
				return c, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return last, fmt.Errorf("processing did not catch up within %s: %w", s.cfg.CatchUpTimeout, lastErr)
			}
			return last, fmt.Errorf("processing did not catch up within %s: processed %d of %d accepted (%v)", s.cfg.CatchUpTimeout, last.Processed, last.Accepted, addsUp(last))
		}
		if !sleepFor(ctx, 100*time.Millisecond) {
			return last, ctx.Err()
		}
	}
}

// summarizeLoad fills the load half of the report.
func (s *soak) summarizeLoad() {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.rep
	bs := int64(s.cfg.BatchSize)
	r.BatchesAcked = int(s.ackedBatches.Load())
	r.EventsSent = s.generated.Load() * bs
	r.EventsAcked = int64(r.BatchesAcked) * bs
	if r.Elapsed > 0 {
		r.AckedPerSec = float64(r.EventsAcked) / r.Elapsed.Seconds()
	}
	r.Requests = s.requests.Load()
	r.Retries = s.retries
	r.AckLatency = summarize(s.lat)
	r.Restart = summarize(s.restarts)
	slices.Sort(s.ackTimes)
	r.Outage = summarize(outages(s.ackTimes, s.windows))
}

// storeCheck is what reading the store found.
type storeCheck struct {
	stored, missing, repeated, foreign, storedUnacked int64
	// examples name a few missing events.
	examples []string
}

// checkStored compares the events a store holds (each calls fn with every
// stored messageId) with those sent: ids[i*batchSize+j] is event j of
// batch i, acked says whether batch i was acknowledged.
func checkStored(ids [][16]byte, batchSize int, acked func(batch int) bool, each func(fn func(string)) error) (storeCheck, error) {
	type entry struct {
		id    [16]byte
		batch int32
	}
	sent := make([]entry, len(ids))
	for i, id := range ids {
		sent[i] = entry{id, int32(i / batchSize)}
	}
	slices.SortFunc(sent, func(a, b entry) int { return bytes.Compare(a.id[:], b.id[:]) })
	seen := make([]uint8, len(sent))
	var c storeCheck
	err := each(func(mid string) {
		c.stored++
		id, ok := parseUUID(mid)
		if !ok {
			c.foreign++
			return
		}
		i, found := slices.BinarySearchFunc(sent, id, func(e entry, t [16]byte) int { return bytes.Compare(e.id[:], t[:]) })
		if !found {
			c.foreign++
			return
		}
		if seen[i] < 255 {
			seen[i]++
		}
	})
	if err != nil {
		return c, err
	}
	for i, e := range sent {
		ack := acked(int(e.batch))
		switch {
		case seen[i] == 0 && ack:
			c.missing++
			if len(c.examples) < 5 {
				c.examples = append(c.examples, fmt.Sprintf("%x (batch %d)", e.id, e.batch))
			}
		case seen[i] > 1:
			c.repeated++
		case seen[i] == 1 && !ack:
			c.storedUnacked++
		}
	}
	return c, nil
}

// verify reads the store and checks every acknowledged event is in it
// exactly once, nothing foreign is, and the counters match.
func (s *soak) verify(ctx context.Context) error {
	n := int(s.generated.Load()) * s.cfg.BatchSize
	c, err := checkStored(s.ids[:n], s.cfg.BatchSize, func(b int) bool { return s.acked[b].Load() },
		func(fn func(string)) error { return s.cfg.StoredIDs(ctx, fn) })
	if err != nil {
		return fmt.Errorf("loadgen: soak: read the store: %w", err)
	}
	r := &s.rep
	r.Stored, r.Missing, r.Repeated, r.Foreign, r.StoredUnacked = c.stored, c.missing, c.repeated, c.foreign, c.storedUnacked
	if r.Missing > 0 {
		s.fail("%d acknowledged events are not in the store, e.g. %s", r.Missing, strings.Join(c.examples, ", "))
	}
	if r.Repeated > 0 {
		s.fail("%d events are stored more than once", r.Repeated)
	}
	if r.Foreign > 0 {
		s.fail("%d stored events of the soak's source were never sent", r.Foreign)
	}
	if r.Final.Accepted != r.Stored {
		s.fail("accepted %d, but the store holds %d events of the source", r.Final.Accepted, r.Stored)
	}
	if err := addsUp(r.Final); err != nil {
		s.fail("final accounting: %v", err)
	}
	if r.Final.Processed != r.Final.Accepted {
		s.fail("final accounting: processed %d of %d accepted", r.Final.Processed, r.Final.Accepted)
	}
	if r.Final.Received < r.EventsAcked {
		s.fail("received %d < %d events acknowledged", r.Final.Received, r.EventsAcked)
	}
	s.progress("verified: %d stored, %d missing, %d stored more than once, %d foreign", r.Stored, r.Missing, r.Repeated, r.Foreign)
	return nil
}
