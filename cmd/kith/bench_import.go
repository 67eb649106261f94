package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/mappings"
)

// benchImport implements `kith bench import`: it writes an orders file of
// the ready-made orders mapping's shape, maps it once with a sink that
// stores nothing (the mapping's own ceiling), then imports it into a fresh
// embedded Kith through the admin API exactly as `kith import` does, and
// reports rows per second acknowledged and processed.
func benchImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith bench import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rows := fs.Int("rows", 1_000_000, "order line rows to import (about 3 per order)")
	batch := fs.Int("batch", 500, "messages per request")
	seed := fs.Uint64("seed", 1, "data seed")
	data := fs.String("data", "", "embedded data directory (default: a fresh temporary one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kith-bench-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "orders.csv")
	orders, err := writeBenchOrders(path, *rows, *seed)
	if err != nil {
		return err
	}
	st, _ := os.Stat(path)
	fmt.Fprintf(stdout, "input: %d rows, %d orders, %.1f MB\n", *rows, orders, float64(st.Size())/1e6)

	mb, _ := mappings.Mapping("orders")
	m, err := imports.ParseMapping(mb)
	if err != nil {
		return err
	}
	in, err := imports.FileInput(path)
	if err != nil {
		return err
	}
	start := time.Now()
	sum, err := (&imports.Runner{Source: "pos", Mapping: m, Sink: nullSink{}, BatchSize: *batch}).Run(ctx, []imports.Input{in})
	if err != nil {
		return err
	}
	mapOnly := time.Since(start)
	fmt.Fprintf(stdout, "mapping only (no server):   %8.0f rows/s  (%s)\n", float64(sum.Read)/mapOnly.Seconds(), mapOnly.Round(time.Millisecond))

	dir := *data
	if dir == "" {
		dir = filepath.Join(tmp, "data")
	}
	srv := &Server{Config: ServeConfig{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "bench-import-admin-token",
		DedupWindow: 7 * 24 * time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 2_000_000, BatchSize: 20000},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := srv.Open(ctx); err != nil {
		return err
	}
	defer srv.Close()
	c := &client{server: "http://" + srv.Addr(), token: srv.Config.AdminToken, http: defaultHTTPClient()}
	var out strings.Builder
	start = time.Now()
	if err := runImport(ctx, []string{"--server", c.server, "--token", c.token, "--source", "pos", "--mapping", "orders",
		"--rejects", filepath.Join(tmp, "rejects.csv"), "--progress", "none", "--batch", strconv.Itoa(*batch), path}, &out, stderr); err != nil {
		return err
	}
	acked := time.Since(start)
	for {
		var st struct {
			Totals struct{ Accepted, Processed int64 } `json:"totals"`
		}
		if err := c.do(ctx, "GET", "/v1/stats", nil, &st); err != nil {
			return err
		}
		if st.Totals.Processed >= st.Totals.Accepted {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	processed := time.Since(start)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	fmt.Fprintf(stdout, "kith import, acknowledged:  %8.0f rows/s  (%s)\n", float64(*rows)/acked.Seconds(), acked.Round(time.Millisecond))
	fmt.Fprintf(stdout, "kith import, processed:     %8.0f rows/s  (%s, identity and profiles applied)\n", float64(*rows)/processed.Seconds(), processed.Round(time.Millisecond))
	fmt.Fprintln(stdout, lines[len(lines)-1])
	return nil
}

// nullSink accepts every message and stores nothing.
type nullSink struct{}

func (nullSink) Send(_ context.Context, msgs []json.RawMessage, _ map[string]int64) ([]imports.Outcome, error) {
	out := make([]imports.Outcome, len(msgs))
	for i := range out {
		out[i].Status = imports.StatusAccepted
	}
	return out, nil
}

// writeBenchOrders writes rows order lines in the orders mapping's shape:
// 100,000 customers (webshop accounts or loyalty cards), 1 to 5 lines per
// order, a catalogue of 500 products.
func writeBenchOrders(path string, rows int, seed uint64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	w.WriteString("order_id,ordered_at,channel,store_id,customer_id,email,loyalty_card,currency,product_id,sku,product_name,category,price,quantity\n")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	orders := 0
	for n := 0; n < rows; orders++ {
		lines := min(1+rng.IntN(5), rows-n)
		cust := rng.IntN(100_000)
		at := base.Add(time.Duration(rng.Int64N(int64(700 * 24 * time.Hour)))).Format("2006-01-02 15:04:05")
		var head string
		if cust%3 == 0 {
			head = fmt.Sprintf("W-%08d,%s,web,,u-%06d,customer%06d@example.com,,EUR", orders, at, cust, cust)
		} else {
			head = fmt.Sprintf("P-%08d,%s,pos,store-%03d,,,LC-%06d,EUR", orders, at, cust%40, cust)
		}
		for range lines {
			p := rng.IntN(500)
			fmt.Fprintf(w, "%s,p-%03d,SKU-%03d,Product %d,Category %d,%d.%02d,%d\n", head, p, p, p, p%12, 2+p%97, p%100, 1+rng.IntN(3))
			n++
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return orders, f.Close()
}
