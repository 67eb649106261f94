package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/postgres"
	"github.com/kithcdp/kith/sqlite"
)

// benchInsights measures a whole insight run (scan, fits, RFM, rules,
// predictions written back) over a synthetic shop, on a store it fills
// directly through the indexer's apply path (generating the orders is not
// what is measured). The data directory can be kept and reused with
// --data, so the fill is paid once.
func benchInsights(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith bench insights", flag.ContinueOnError)
	fs.SetOutput(stderr)
	customers := fs.Int("customers", 100_000, "customers in the synthetic shop")
	orders := fs.Int("orders", 1_000_000, "orders in total (about; customers churn at random)")
	products := fs.Int("products", 2000, "products in the catalogue")
	data := fs.String("data", "", "embedded data directory; reused if it already holds the data (default: a fresh temporary one)")
	pg := fs.String("postgres", "", "use this PostgreSQL database instead (it must be empty or hold this benchmark's data)")
	runs := fs.Int("runs", 3, "insight runs to time")
	seed := fs.Uint64("seed", 1, "data seed")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Memory is part of what is measured: collect as Go does by default
	// (serve's GOGC=400 would let garbage inflate the peak). The soft
	// memory limit serve sets (1 GiB unless GOMEMLIMIT says otherwise)
	// stays, as in a server, so the peak heap is bounded near it once
	// the live heap grows; the live heap after each collection is the
	// figure that says how much a run needs.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(100)
	}
	var st kith.Store
	var err error
	if *pg != "" {
		st, err = postgres.Open(ctx, *pg)
	} else {
		dir := *data
		if dir == "" {
			if dir, err = os.MkdirTemp("", "kith-bench-insights-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		}
		st, err = sqlite.Open(ctx, dir, sqlite.Options{})
	}
	if err != nil {
		return err
	}
	defer st.Close()
	cur, err := st.IndexCursor(ctx)
	if err != nil {
		return err
	}
	if cur == 0 {
		start := time.Now()
		n, err := fillShop(ctx, st, *customers, *orders, *products, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "filled %d customers, %d orders in %.1fs\n", *customers, n, time.Since(start).Seconds())
	} else {
		fmt.Fprintf(stderr, "reusing the store's data (cursor %d)\n", cur)
	}

	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	cfg := insights.DefaultConfig()
	cfg.AnalysisDate = shopEnd
	r := &insights.Runner{Store: st, Config: cfg}
	type result struct {
		Seconds    float64                          `json:"seconds"`
		Phases     map[string]float64               `json:"phases"`
		PeakHeapMB float64                          `json:"peakHeapMB"`
		PeakLiveMB float64                          `json:"peakLiveMB"`
		Customers  int                              `json:"customers"`
		Orders     int                              `json:"orders"`
		Written    int                              `json:"written"`
		Models     map[string]*insights.ModelReport `json:"models"`
	}
	var results []result
	var times []float64
	for range *runs {
		runtime.GC()
		var peak, peakLive atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // sample the heap while the run goes
			defer close(done)
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			var ms runtime.MemStats
			live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				metrics.Read(live)
				if v := live[0].Value.Uint64(); v > peakLive.Load() {
					peakLive.Store(v)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		start := time.Now()
		run, err := r.RunNow(ctx, "bench", cfg)
		secs := time.Since(start).Seconds()
		close(stop)
		<-done
		if err != nil {
			return err
		}
		var rep insights.Report
		if err := json.Unmarshal(run.Report, &rep); err != nil {
			return err
		}
		res := result{Seconds: secs, Phases: rep.Seconds, PeakHeapMB: float64(peak.Load()) / (1 << 20), PeakLiveMB: float64(peakLive.Load()) / (1 << 20), Customers: rep.Customers, Orders: rep.OrdersUsed, Written: rep.ProfilesWritten, Models: rep.Models}
		results = append(results, res)
		times = append(times, secs)
		fmt.Fprintf(stdout, "run: %.1fs (scan %.1fs, fit %.1fs, predict+write %.1fs), peak heap %.0f MiB (live after a collection %.0f MiB), %d customers, %d orders, %d profiles written; BG/NBD fit %.3fs\n",
			secs, rep.Seconds["scan"], rep.Seconds["fit"], rep.Seconds["predict_and_write"], res.PeakHeapMB, res.PeakLiveMB, rep.Customers, rep.OrdersUsed, rep.ProfilesWritten, rep.Models[cfg.Model].Seconds)
	}
	slices.Sort(times)
	fmt.Fprintf(stdout, "median of %d runs: %.1fs\n", len(times), times[len(times)/2])
	if len(results) > 0 {
		b, _ := json.Marshal(results)
		fmt.Fprintf(stderr, "%s\n", b)
	}
	return nil
}

// The synthetic shop's year.
var (
	shopStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	shopEnd   = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
)

// fillShop writes a synthetic shop straight into the derived state: each
// customer arrives during the year, buys at a gamma-distributed rate and
// may drop out after any purchase (the BG/NBD story), each order holding
// one to three products from a Zipf-popular catalogue in 50 categories.
func fillShop(ctx context.Context, st kith.Store, customers, orders, products int, seed uint64) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(products-1))
	meanPerCustomer := float64(orders) / float64(customers)
	days := shopEnd.Sub(shopStart).Hours() / 24
	catalog := make([]kith.OrderItem, products)
	for i := range catalog {
		catalog[i] = kith.OrderItem{ProductID: fmt.Sprintf("sku-%05d", i), Category: fmt.Sprintf("cat-%02d", i%50), Price: float64(2 + rng.IntN(200))}
	}
	var b kith.IndexBatch
	var seq, from int64
	total := 0
	flush := func() error {
		if len(b.Profiles) == 0 && len(b.Orders) == 0 {
			return nil
		}
		b.Cursor = seq
		if err := st.ApplyIndexBatch(ctx, from, b); err != nil {
			return err
		}
		from = seq
		b = kith.IndexBatch{}
		return nil
	}
	for c := range customers {
		seq++
		id := fmt.Sprintf("p_%08d", c)
		b.Profiles = append(b.Profiles, kith.NewProfile{ID: id, CreatedAt: shopStart})
		first := rng.Float64() * days * 0.9
		// Rate so that the cohort averages meanPerCustomer orders.
		rate := rng.ExpFloat64() * meanPerCustomer * 3 / days
		churn := 0.01 + 0.06*rng.Float64()
		// Customers differ in how much they spend per order, as the
		// Gamma-Gamma model assumes.
		spend := 0.25 + rng.ExpFloat64()
		t := first
		for t < days {
			seq++
			n := 1 + rng.IntN(3)
			items := make([]kith.OrderItem, n)
			rev := 0.0
			for i := range items {
				items[i] = catalog[zipf.Uint64()]
				items[i].Quantity = float64(1 + int(spend*rng.Float64()*3))
				rev += items[i].Price * items[i].Quantity
			}
			at := shopStart.Add(time.Duration(t * 24 * float64(time.Hour)))
			b.Orders = append(b.Orders, kith.Order{ProfileID: id, Seq: seq, Timestamp: at, SourceID: "shop", OrderID: fmt.Sprint(seq), Revenue: rev, Currency: "EUR", Items: items})
			total++
			if rng.Float64() < churn || rate <= 0 {
				break
			}
			t += rng.ExpFloat64() / rate
		}
		if len(b.Orders) >= 20000 {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	return total, flush()
}
