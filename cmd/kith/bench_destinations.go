package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/loadgen"
)

const destinationsUsage = `usage: kith bench destinations [--destinations N] [--events N] [--failing 503|hang] [flags]

Measures outbound delivery. Runs kith serve as a child process on a fresh
embedded store, starts one webhook receiver on loopback per destination
(each timestamps every message it gets), creates the destinations through
the API (webhooks subscribed to every event, signed, batched as
--webhook-batch says) and offers the ingest benchmark's traffic. It reports
acknowledged events/s, each destination's delivery rate and delivery
latency (from the acknowledgement of the request that carried an event to
its arrival at the receiver), and the server's peak resident memory.

  --failing 503|hang   the last destination answers 503, or never answers
                       (each attempt ends at --webhook-timeout); a comma
                       list runs one case each
  --baseline           first run the same load without destinations (with
                       --failing: with every destination healthy), each
                       case on a fresh server, and compare
  --audience           add one probe event to every request and subscribe
                       the destinations to an audience every probe enters:
                       reports ack → "Audience Entered" arrival
  --rounds N           run the cases N times in turn (baseline, case, …,
                       baseline, case, …) and print the medians: on a
                       shared machine, drift between minutes is larger
                       than the differences measured
  --backlog            create the destinations paused, ingest everything,
                       wait until it is processed, restart the server
                       (--restart=false: don't), then resume them and time
                       the drain, with the server's RSS when it starts and
                       its peak during it

Flags:
`

// destinationsBench is the configuration of `kith bench destinations`.
type destinationsBench struct {
	load            loadgen.DeliveryConfig
	destinations    int
	webhookBatch    int
	webhookTimeout  time.Duration
	failing         []loadgen.ReceiverMode
	baseline        bool
	audience        bool
	events          bool
	backlog         bool
	restart         bool
	deliveryTimeout time.Duration
	bin             string
	serverLog       string
	asJSON          bool
	rounds          int
}

// parseDestinationsBench reads the flags of `kith bench destinations`.
func parseDestinationsBench(args []string, stderr io.Writer) (destinationsBench, error) {
	var b destinationsBench
	fs := flag.NewFlagSet("kith bench destinations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), destinationsUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&b.destinations, "destinations", 10, "webhook destinations (and receivers)")
	fs.IntVar(&b.load.Events, "events", loadgen.DefaultEvents, "events to send")
	fs.Float64Var(&b.load.Rate, "rate", 0, "offered events/s (0: as fast as the server acknowledges)")
	fs.IntVar(&b.load.BatchSize, "batch", loadgen.DefaultBatchSize, "events per ingest request")
	fs.IntVar(&b.load.Concurrency, "concurrency", loadgen.DefaultConcurrency, "parallel senders")
	fs.IntVar(&b.load.Users, "users", loadgen.DefaultUsers, "distinct people in the generated traffic")
	fs.Int64Var(&b.load.Seed, "seed", 0, "payload seed (0: random)")
	fs.IntVar(&b.webhookBatch, "webhook-batch", 100, `messages per webhook request (the destinations' config "batch"; 1: one message per request)`)
	fs.DurationVar(&b.webhookTimeout, "webhook-timeout", 2*time.Second, `each attempt's timeout (the destinations' config "timeout")`)
	failing := fs.String("failing", "", "make the last destination fail: 503 or hang (a comma list runs one case each)")
	fs.BoolVar(&b.baseline, "baseline", false, "first run a baseline case: no destinations, or with --failing every destination healthy")
	fs.BoolVar(&b.audience, "audience", false, "add a probe event to every request and subscribe the destinations to the audience the probes enter")
	fs.BoolVar(&b.events, "subscribe-events", true, "subscribe the destinations to every event (--subscribe-events=false with --audience: audience changes only)")
	fs.BoolVar(&b.backlog, "backlog", false, "pause the destinations during the load, then resume them and time the drain")
	fs.BoolVar(&b.restart, "restart", true, "with --backlog: restart the server before the drain, so that its memory is measured in a process that did not ingest")
	fs.DurationVar(&b.deliveryTimeout, "delivery-timeout", 10*time.Minute, "how long to wait for the healthy receivers to get everything after the load")
	fs.StringVar(&b.bin, "kith", "", "the kith binary to run as the server (default: this one)")
	fs.StringVar(&b.serverLog, "server-log", "", "file for the servers' output (default: discarded unless a case fails)")
	fs.BoolVar(&b.asJSON, "json", false, "print the reports as JSON")
	fs.IntVar(&b.rounds, "rounds", 1, "run the cases this many times, in turn, and print the medians (and the medians of the ratios to each round's baseline)")
	if err := fs.Parse(args); err != nil {
		return b, err
	}
	if fs.NArg() > 0 {
		return b, fmt.Errorf("kith bench destinations: unexpected argument %q", fs.Arg(0))
	}
	if *failing != "" {
		for _, s := range strings.Split(*failing, ",") {
			m, err := loadgen.ParseReceiverMode(strings.TrimSpace(s))
			if err != nil || m == loadgen.ReceiverOK {
				return b, fmt.Errorf("kith bench destinations: --failing %q: want 503 or hang", s)
			}
			b.failing = append(b.failing, m)
		}
	}
	switch {
	case b.destinations < 0 || b.destinations > 1000:
		return b, fmt.Errorf("kith bench destinations: --destinations must be 0 to 1000")
	case b.load.Events <= 0 || b.load.BatchSize <= 0 || b.load.Concurrency <= 0 || b.load.Users <= 0:
		return b, fmt.Errorf("kith bench destinations: --events, --batch, --concurrency and --users must be positive")
	case b.rounds < 1 || b.rounds > 100:
		return b, fmt.Errorf("kith bench destinations: --rounds must be 1 to 100")
	case b.load.Rate < 0:
		return b, fmt.Errorf("kith bench destinations: --rate must be 0 or positive")
	case b.webhookBatch < 1 || b.webhookBatch > 1000:
		return b, fmt.Errorf("kith bench destinations: --webhook-batch must be 1 to 1000")
	case b.webhookTimeout <= 0 || b.webhookTimeout > time.Minute:
		return b, fmt.Errorf("kith bench destinations: --webhook-timeout must be more than 0 and at most 1m")
	case len(b.failing) > 0 && b.destinations < 2:
		return b, fmt.Errorf("kith bench destinations: --failing needs at least 2 destinations (one fails, the others are measured)")
	case !b.events && !b.audience:
		return b, fmt.Errorf("kith bench destinations: --subscribe-events=false needs --audience (the destinations would get nothing)")
	case b.backlog && (b.baseline || len(b.failing) > 0):
		return b, fmt.Errorf("kith bench destinations: --backlog measures a drain; it takes neither --baseline nor --failing")
	}
	b.load.Probes = b.audience
	b.load.Timeout = 30 * time.Minute
	return b, nil
}

// deliveryCase is one case of the benchmark: how many destinations, and
// how the last one answers.
type deliveryCase struct {
	name         string
	destinations int
	failing      loadgen.ReceiverMode
}

// cases lists the cases the flags ask for, baseline first.
func (b destinationsBench) cases() []deliveryCase {
	var out []deliveryCase
	dests := fmt.Sprintf("%d destinations", b.destinations)
	if b.destinations == 1 {
		dests = "1 destination"
	}
	healthy := deliveryCase{name: dests + ", all healthy", destinations: b.destinations}
	if b.baseline {
		if len(b.failing) == 0 {
			out = append(out, deliveryCase{name: "baseline: no destinations"})
		} else {
			healthy.name = "baseline: " + healthy.name
			out = append(out, healthy)
		}
	}
	if len(b.failing) == 0 {
		return append(out, healthy)
	}
	for _, m := range b.failing {
		what := "answers 503"
		if m == loadgen.ReceiverHang {
			what = fmt.Sprintf("hangs (never answers; each attempt times out after %s)", b.webhookTimeout)
		}
		out = append(out, deliveryCase{name: dests + ", the last " + what, destinations: b.destinations, failing: m})
	}
	return out
}

// benchDestinations implements `kith bench destinations`.
func benchDestinations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	b, err := parseDestinationsBench(args, stderr)
	if err != nil {
		return err
	}
	if b.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("kith bench destinations: find this binary (use --kith): %w", err)
		}
		b.bin = exe
	}
	cases := b.cases()
	var reports []loadgen.DeliveryReport
	// byCase[i] holds case i's reports, one per round.
	byCase := make([][]loadgen.DeliveryReport, len(cases))
	for round := 1; round <= b.rounds; round++ {
		for i, c := range cases {
			fmt.Fprintf(stderr, "kith bench destinations: round %d of %d: %s …\n", round, b.rounds, c.name)
			rep, err := b.runCase(ctx, c, stderr)
			if err != nil {
				return fmt.Errorf("kith bench destinations: %s: %w", c.name, err)
			}
			rep.Round = round
			reports = append(reports, rep)
			byCase[i] = append(byCase[i], rep)
			if !b.asJSON {
				fmt.Fprintln(stdout, rep)
			}
		}
		if !b.asJSON && b.baseline {
			for i := 1; i < len(cases); i++ {
				fmt.Fprintf(stdout, "%s, against the baseline of round %d:\n%s\n", cases[i].name, round,
					compareDeliveries(byCase[0][round-1], byCase[i][round-1]))
			}
		}
	}
	if b.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	if b.rounds > 1 {
		fmt.Fprintf(stdout, "== medians over %d rounds (ratios: to the baseline of the same round) ==\n", b.rounds)
		for i, c := range cases {
			fmt.Fprintf(stdout, "%s\n%s", c.name, medianDeliveries(byCase[0], byCase[i], b.baseline && i > 0))
		}
	}
	return nil
}

// medianDeliveries renders a case's medians over rounds and, with
// ratios, the medians of its ratios to the baseline of each round.
func medianDeliveries(base, rs []loadgen.DeliveryReport, ratios bool) string {
	median := func(f func(r, base loadgen.DeliveryReport) float64) float64 {
		var v []float64
		for i, r := range rs {
			v = append(v, f(r, base[i]))
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var s strings.Builder
	fmt.Fprintf(&s, "  acked %.0f events/s, processed %.0f events/s",
		median(func(r, _ loadgen.DeliveryReport) float64 { return r.Ingest.AckedPerSec }),
		median(func(r, _ loadgen.DeliveryReport) float64 { return r.Ingest.EndToEndPerSec }))
	receivers := rs[0].Healthy.Receivers > 0
	if receivers {
		fmt.Fprintf(&s, "; healthy receivers: delivered min %.0f/s, latency p50 %.1f ms, p99 %.1f ms",
			median(func(r, _ loadgen.DeliveryReport) float64 { return r.Healthy.MinPerSec }),
			median(func(r, _ loadgen.DeliveryReport) float64 { return ms(r.Healthy.Latency.P50) }),
			median(func(r, _ loadgen.DeliveryReport) float64 { return ms(r.Healthy.Latency.P99) }))
	}
	if rs[0].Healthy.EntryLatency.Count > 0 {
		fmt.Fprintf(&s, "; audience entries p50 %.1f ms, p99 %.1f ms",
			median(func(r, _ loadgen.DeliveryReport) float64 { return ms(r.Healthy.EntryLatency.P50) }),
			median(func(r, _ loadgen.DeliveryReport) float64 { return ms(r.Healthy.EntryLatency.P99) }))
	}
	fmt.Fprintf(&s, "; peak RSS %.0f MiB\n", median(func(r, _ loadgen.DeliveryReport) float64 { return float64(r.PeakRSS) / (1 << 20) }))
	if ratios {
		ratio := func(x, y float64) float64 {
			if y == 0 {
				return 0
			}
			return x / y
		}
		fmt.Fprintf(&s, "  ratios: acked %.3f, processed %.3f",
			median(func(r, b loadgen.DeliveryReport) float64 { return ratio(r.Ingest.AckedPerSec, b.Ingest.AckedPerSec) }),
			median(func(r, b loadgen.DeliveryReport) float64 {
				return ratio(r.Ingest.EndToEndPerSec, b.Ingest.EndToEndPerSec)
			}))
		if !receivers || base[0].Healthy.Receivers == 0 {
			s.WriteString("\n")
			return s.String()
		}
		fmt.Fprintf(&s, ", healthy delivery rate min %.3f, latency p50 %.3f, p99 %.3f\n",
			median(func(r, b loadgen.DeliveryReport) float64 { return ratio(r.Healthy.MinPerSec, b.Healthy.MinPerSec) }),
			median(func(r, b loadgen.DeliveryReport) float64 {
				return ratio(float64(r.Healthy.Latency.P50), float64(b.Healthy.Latency.P50))
			}),
			median(func(r, b loadgen.DeliveryReport) float64 {
				return ratio(float64(r.Healthy.Latency.P99), float64(b.Healthy.Latency.P99))
			}))
	}
	return s.String()
}

// compareDeliveries states a case as ratios to the baseline of the same
// invocation.
func compareDeliveries(base, r loadgen.DeliveryReport) string {
	ratio := func(x, y float64) string {
		if y == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.3f (%+.1f%%)", x/y, (x/y-1)*100)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "  acked events/s        %s\n", ratio(r.Ingest.AckedPerSec, base.Ingest.AckedPerSec))
	fmt.Fprintf(&s, "  processed events/s    %s\n", ratio(r.Ingest.EndToEndPerSec, base.Ingest.EndToEndPerSec))
	if base.Healthy.Receivers > 0 && r.Healthy.Receivers > 0 {
		fmt.Fprintf(&s, "  healthy delivery rate min %s, median %s\n",
			ratio(r.Healthy.MinPerSec, base.Healthy.MinPerSec), ratio(r.Healthy.MedianPerSec, base.Healthy.MedianPerSec))
		fmt.Fprintf(&s, "  healthy latency       p50 %s, p99 %s\n",
			ratio(float64(r.Healthy.Latency.P50), float64(base.Healthy.Latency.P50)), ratio(float64(r.Healthy.Latency.P99), float64(base.Healthy.Latency.P99)))
	}
	return s.String()
}

// probeAudience is the audience key the probes enter.
const probeAudience = "kith_bench_probe"

// runCase runs one case on a fresh server.
func (b destinationsBench) runCase(ctx context.Context, c deliveryCase, stderr io.Writer) (rep loadgen.DeliveryReport, err error) {
	rep.Case, rep.Backlog = c.name, b.backlog
	work, err := os.MkdirTemp("", "kith-bench-destinations-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(work)
	logPath := b.serverLog
	if logPath == "" {
		logPath = filepath.Join(work, "server.log")
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return rep, fmt.Errorf("server log: %w", err)
	}
	defer logFile.Close()
	defer func() {
		if err != nil && b.serverLog == "" {
			tail, _ := os.ReadFile(logPath)
			if len(tail) > 4000 {
				tail = tail[len(tail)-4000:]
			}
			err = fmt.Errorf("%w\nthe end of the server's output:\n%s", err, tail)
		}
	}()
	addr, err := freeLocalAddr()
	if err != nil {
		return rep, err
	}
	token := kith.NewSecret("bench-")
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, k := range []string{"KITH_POSTGRES_URL=", "KITH_ADMIN_TOKEN=", "KITH_DATA=", "KITH_ADDR="} {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	proc := &loadgen.Process{Path: b.bin, Args: []string{"serve", "--data", filepath.Join(work, "data"), "--addr", addr},
		Env: append(env, "KITH_ADMIN_TOKEN="+token), Addr: addr, Log: logFile}
	if err := proc.Start(ctx); err != nil {
		return rep, fmt.Errorf("start the server: %w", err)
	}
	defer proc.Kill() // after an error; a finished case has stopped it
	pid := proc.Pid()
	c2 := &client{server: "http://" + addr, token: token, http: defaultHTTPClient()}
	var src struct{ WriteKey string }
	if err := c2.do(ctx, "POST", "/v1/sources", map[string]string{"name": "bench"}, &src); err != nil {
		return rep, fmt.Errorf("create the source: %w", err)
	}
	load := b.load
	load.Target, load.WriteKey, load.AdminToken = "http://"+addr, src.WriteKey, token
	run, err := loadgen.NewDeliveryRun(load)
	if err != nil {
		return rep, err
	}
	defer run.Close()
	if b.audience {
		if err := createProbeAudience(ctx, c2); err != nil {
			return rep, err
		}
	}
	var names []string
	for i := range c.destinations {
		mode := loadgen.ReceiverOK
		if c.failing != "" && i == c.destinations-1 {
			mode = c.failing
		}
		rc, err := run.NewReceiver(fmt.Sprintf("dest-%d", i), mode)
		if err != nil {
			return rep, err
		}
		rc.Events, rc.Audience = b.events, b.audience
		body := map[string]any{
			"name": rc.Name, "type": kith.DestinationWebhook, "events": b.events,
			"config": map[string]any{"url": rc.URL, "secret": rc.Secret, "batch": b.webhookBatch, "timeout": b.webhookTimeout.String()},
		}
		if b.audience {
			body["audiences"] = []string{probeAudience}
		}
		if err := c2.do(ctx, "POST", "/v1/destinations", body, nil); err != nil {
			return rep, fmt.Errorf("create destination %s: %w", rc.Name, err)
		}
		if b.backlog {
			if err := c2.do(ctx, "POST", "/v1/destinations/"+rc.Name+"/pause", nil, nil); err != nil {
				return rep, fmt.Errorf("pause destination %s: %w", rc.Name, err)
			}
		}
		names = append(names, rc.Name)
	}

	sampler := loadgen.SampleRSS(pid, 100*time.Millisecond)
	rep.Ingest, err = run.Ingest(ctx)
	rep.LoadPeakRSS = sampler.Stop()
	if err != nil {
		return rep, err
	}
	var drainStart time.Time
	if b.backlog {
		_, peak, _ := loadgen.ProcessRSS(pid)
		rep.PeakRSS = peak
		if b.restart {
			// The drain's memory, measured in a process that did not
			// ingest: the paused destinations keep their position.
			if err := proc.Stop(); err != nil {
				return rep, fmt.Errorf("stop the server before the drain: %w", err)
			}
			if err := proc.Start(ctx); err != nil {
				return rep, fmt.Errorf("restart the server before the drain: %w", err)
			}
			pid = proc.Pid()
		}
		rep.DrainStartRSS, _, _ = loadgen.ProcessRSS(pid)
		if err := loadgen.ResetPeakRSS(pid); err != nil {
			fmt.Fprintf(stderr, "kith bench destinations: cannot reset the peak RSS (%v); the drain's peak is sampled\n", err)
		}
		sampler = loadgen.SampleRSS(pid, 100*time.Millisecond)
		drainStart = time.Now()
		for _, n := range names {
			if err := c2.do(ctx, "POST", "/v1/destinations/"+n+"/resume", nil, nil); err != nil {
				return rep, fmt.Errorf("resume destination %s: %w", n, err)
			}
		}
	}
	if err := run.WaitDelivered(ctx, b.deliveryTimeout); err != nil {
		rep.Incomplete = err.Error()
	}
	_, peak, _ := loadgen.ProcessRSS(pid)
	if b.backlog {
		rep.DeliveryPeakRSS = max(sampler.Stop(), peak)
	}
	rep.PeakRSS = max(rep.PeakRSS, peak, rep.LoadPeakRSS)
	if b.audience {
		var st struct {
			Audiences map[string]any `json:"audiences"`
		}
		if err := c2.do(ctx, "GET", "/v1/stats", nil, &st); err == nil {
			rep.AudienceLag = map[string]float64{}
			for _, k := range []string{"lagP50Ms", "lagP99Ms", "indexLagP50Ms", "indexLagP99Ms"} {
				if v, ok := st.Audiences[k].(float64); ok {
					rep.AudienceLag[k] = v
				}
			}
		}
	}
	rep.Receivers = run.Results(drainStart)
	rep.Healthy = run.Healthy(rep.Receivers)
	if err := proc.Stop(); err != nil {
		return rep, err
	}
	return rep, nil
}

// createProbeAudience defines the audience the probes enter and waits
// for its backfill.
func createProbeAudience(ctx context.Context, c *client) error {
	if err := c.do(ctx, "POST", "/v1/audiences", map[string]string{"key": probeAudience, "definition": loadgen.ProbeAudience}, nil); err != nil {
		return fmt.Errorf("audience %s: %w", probeAudience, err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var a struct {
			Backfill struct{ State string } `json:"backfill"`
		}
		if err := c.do(ctx, "GET", "/v1/audiences/"+probeAudience, nil, &a); err != nil {
			return err
		}
		if a.Backfill.State == "done" {
			return nil
		}
	}
	return fmt.Errorf("audience %s: its backfill did not finish", probeAudience)
}
