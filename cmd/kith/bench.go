package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/kithcdp/kith/loadgen"
)

// runBench implements `kith bench ingest`: the same load against a null
// server (the ceiling: it only decodes JSON), then against a real Kith at
// full speed, then at half the measured peak for latency.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "insights" {
		return benchInsights(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "import" {
		return benchImport(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "soak" {
		return benchSoak(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "destinations" {
		return benchDestinations(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "ingest" {
		return fmt.Errorf("usage: kith bench ingest|insights|import|soak|destinations [flags]")
	}
	fs := flag.NewFlagSet("kith bench ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.IntVar(&cfg.Events, "events", loadgen.DefaultEvents, "events per run")
	fs.IntVar(&cfg.BatchSize, "batch", loadgen.DefaultBatchSize, "events per request")
	fs.IntVar(&cfg.Concurrency, "concurrency", loadgen.DefaultConcurrency, "parallel senders")
	fs.IntVar(&cfg.Users, "users", loadgen.DefaultUsers, "distinct people in the generated traffic")
	fs.Float64Var(&cfg.ReadRate, "read-rate", loadgen.DefaultReadRate, "profile reads per second during ingest")
	fs.BoolVar(&cfg.Gzip, "gzip", false, "gzip request bodies")
	fs.Float64Var(&cfg.Rate, "rate", 0, "offered events/s for the Kith run (0 = as fast as possible); e.g. 50000 to check that processing keeps up")
	fs.Int64Var(&cfg.Seed, "seed", 0, "payload seed (0 = random)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "end each run's sending after this long (e.g. 10m; --events is then a cap): a sustained run bounded by time")
	pg := fs.String("postgres", "", "run Kith on this PostgreSQL database instead of a fresh embedded store")
	data := fs.String("data", "", "embedded data directory (default: a fresh temporary one)")
	skipNull := fs.Bool("skip-null", false, "skip the null-server ceiling run")
	skipHalf := fs.Bool("skip-half", false, "skip the half-rate latency run")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the Kith runs to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile (what is live, after a collection) to this file when the full-speed Kith run has processed everything")
	defs := fs.Bool("definitions", false, "define 20 computed traits and 50 audiences before the Kith runs, and report the audience engine's lag")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg.Timeout = 15 * time.Minute
	reports := map[string]loadgen.Report{}

	var ceiling loadgen.Report
	if !*skipNull {
		url, stop, err := loadgen.StartNull("")
		if err != nil {
			return err
		}
		nc := cfg
		nc.Target, nc.Null, nc.WriteKey = url, true, "null"
		ceiling, err = loadgen.Run(ctx, nc)
		stop()
		if err != nil {
			return fmt.Errorf("null server run: %w", err)
		}
		reports["null"] = ceiling
		if !*asJSON {
			fmt.Fprintf(stdout, "== null server (decode JSON, answer 200) ==\n%s\n", ceiling)
		}
	}

	dir := *data
	if dir == "" && *pg == "" {
		tmp, err := os.MkdirTemp("", "kith-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	token := "bench-admin-token"
	// The server under test runs with serve's configuration (defaults and
	// KITH_* settings), on its own address, store and token.
	sc, err := ParseServeFlags(nil, stderr)
	if err != nil {
		return err
	}
	sc.DataDir, sc.Addr, sc.PostgresURL, sc.AdminToken = dir, "127.0.0.1:0", *pg, token
	srv := &Server{Config: sc, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if err := srv.Open(ctx); err != nil {
		return err
	}
	defer srv.Close()
	target := "http://" + srv.Addr()
	c := &client{server: target, token: token, http: defaultHTTPClient()}
	var src struct{ WriteKey string }
	if err := c.do(ctx, "POST", "/v1/sources", map[string]string{"name": "bench"}, &src); err != nil {
		return err
	}
	if *defs {
		if err := defineBenchAudiences(ctx, c); err != nil {
			return err
		}
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	kc := cfg
	kc.Target, kc.WriteKey, kc.AdminToken, kc.WaitProcessed = target, src.WriteKey, token, true
	full, err := loadgen.Run(ctx, kc)
	measureRSS(&full)
	if perr := writeHeapProfile(*memProfile); perr != nil {
		return perr
	}
	reports["kith"] = full
	if !*asJSON {
		store := "embedded"
		if *pg != "" {
			store = "postgres"
		}
		pace := "full speed"
		if kc.Rate > 0 {
			pace = fmt.Sprintf("%.0f events/s offered", kc.Rate)
		}
		fmt.Fprintf(stdout, "== kith (%s store), %s ==\n%s\n", store, pace, full)
		if !*skipNull {
			fmt.Fprintf(stdout, "%s\n", loadgen.Compare(ceiling, full))
		}
	}
	if err != nil {
		return fmt.Errorf("kith run: %w", err)
	}
	if *defs {
		reportAudiences(ctx, c, stdout, *asJSON, "full speed")
	}
	if !*skipHalf && full.AckedPerSec > 0 {
		hc := kc
		hc.Rate = full.AckedPerSec / 2
		hc.Seed = 0 // fresh messageIds
		half, err := loadgen.Run(ctx, hc)
		measureRSS(&half)
		reports["kith_half_rate"] = half
		if !*asJSON {
			fmt.Fprintf(stdout, "== kith at half the peak rate (%.0f events/s) ==\n%s\n", hc.Rate, half)
		}
		if err != nil {
			return fmt.Errorf("half-rate run: %w", err)
		}
		if *defs {
			reportAudiences(ctx, c, stdout, *asJSON, "half rate")
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	return nil
}

// measureRSS records this process's resident memory in rep: the server
// runs in it, beside the load generator.
func measureRSS(rep *loadgen.Report) {
	rss, peak, err := loadgen.ProcessRSS(os.Getpid())
	if err != nil || peak == 0 {
		return // not Linux: nothing to report
	}
	rep.RSS, rep.PeakRSS, rep.RSSNote = rss, peak, "the server and the load generator share this process; peak since it started"
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.GoMemory = int64(ms.Sys - ms.HeapReleased)
}

// writeHeapProfile writes what is live on the heap, after a collection,
// to path; an empty path writes nothing.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile: %w", err)
	}
	return f.Close()
}

// startCPUProfile writes a CPU profile to path until the returned function
// is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
