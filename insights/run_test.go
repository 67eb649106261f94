package insights

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/btyd"
	"github.com/kithcdp/kith/sqlite"
)

// catalogue of the synthetic shop: two categories with price tiers.
var testProducts = []kith.OrderItem{
	{ProductID: "mug-basic", Category: "Kitchen", Price: 5},
	{ProductID: "mug-stone", Category: "Kitchen", Price: 12},
	{ProductID: "mug-artisan", Category: "Kitchen", Price: 30},
	{ProductID: "pen", Category: "Office", Price: 2},
	{ProductID: "notebook", Category: "Office", Price: 6},
	{ProductID: "fountain-pen", Category: "Office", Price: 45},
}

// synthOrders makes a seeded shop history: customers arrive over a year,
// buy at their own rate, and may stop for good after any purchase.
func synthOrders(customers int, start time.Time, days int, seed uint64) kith.IndexBatch {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := kith.IndexBatch{}
	seq := int64(0)
	for c := range customers {
		id := fmt.Sprintf("p_%05d", c)
		b.Profiles = append(b.Profiles, kith.NewProfile{ID: id, CreatedAt: start})
		t := start.Add(time.Duration(rng.IntN(days/2*24)) * time.Hour)
		rate := rng.ExpFloat64() / 20 // purchases per day
		for t.Before(start.AddDate(0, 0, days)) {
			seq++
			p := testProducts[rng.IntN(3)+3*(c%2)]
			items := []kith.OrderItem{p}
			if rng.IntN(2) == 0 { // mugs and pens go together in half the baskets
				items = append(items, testProducts[(slices.Index(testProducts, p)+3)%6])
			}
			rev := 0.0
			for _, it := range items {
				rev += it.Price
			}
			b.Orders = append(b.Orders, kith.Order{ProfileID: id, Seq: seq, Timestamp: t, SourceID: "shop", OrderID: fmt.Sprint(seq), Revenue: rev, Currency: "EUR", Items: items})
			if rng.Float64() < 0.15 {
				break // churned
			}
			t = t.Add(time.Duration((rng.ExpFloat64()/rate + 1) * 24 * float64(time.Hour)))
		}
	}
	b.Cursor = seq
	return b
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRunWritesPredictedTraits(t *testing.T) {
	for _, model := range []string{ModelBGNBD, ModelParetoNBD} {
		t.Run(model, func(t *testing.T) { testRunWritesPredictedTraits(t, model) })
	}
}

func testRunWritesPredictedTraits(t *testing.T, model string) {
	ctx := t.Context()
	db := openStore(t)
	start := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	b := synthOrders(400, start, 365, 7)
	if err := db.ApplyIndexBatch(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Model = model
	cfg.AnalysisDate = start.AddDate(0, 0, 300) // later orders are ignored
	clock := time.Date(2026, 1, 5, 3, 0, 0, 0, time.UTC)
	r := &Runner{Store: db, Config: cfg, Now: func() time.Time { return clock }}
	run, err := r.RunNow(ctx, TriggerAPI, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != kith.RunFinished || run.Trigger != TriggerAPI || !run.StartedAt.Equal(clock) {
		t.Fatalf("run = %+v", run)
	}
	var rep Report
	if err := json.Unmarshal(run.Report, &rep); err != nil {
		t.Fatal(err)
	}
	cutoff := cfg.analysisDay(clock).AddDate(0, 0, 1)
	used, cust := 0, map[string]bool{}
	for _, o := range b.Orders {
		if o.Timestamp.Before(cutoff) {
			used++
			cust[o.ProfileID] = true
		}
	}
	if rep.OrdersRead != len(b.Orders) || rep.OrdersUsed != used || rep.Customers != len(cust) || rep.ProfilesWritten != len(cust) {
		t.Errorf("report counts read %d used %d customers %d written %d; want %d %d %d %d",
			rep.OrdersRead, rep.OrdersUsed, rep.Customers, rep.ProfilesWritten, len(b.Orders), used, len(cust), len(cust))
	}
	for _, name := range []string{model, "gammagamma"} {
		m := rep.Models[name]
		if m == nil || m.Skipped != "" || len(m.Params) == 0 || !m.Fit.Converged {
			t.Errorf("model %s = %+v, want fitted and converged", name, m)
		}
	}
	if len(rep.Rules) == 0 {
		t.Error("no association rules in the report")
	}
	stored, err := db.InsightRun(ctx, run.ID)
	if err != nil || stored.Status != kith.RunFinished || len(stored.Report) == 0 {
		t.Errorf("stored run = %+v, %v", stored, err)
	}

	// Every customer with orders before the cutoff has a full set of
	// predicted traits from this run.
	for id := range cust {
		traits, err := db.Traits(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]json.RawMessage{}
		for _, tr := range traits {
			if tr.Provenance != kith.ProvenancePredicted || tr.RunID != run.ID {
				t.Fatalf("trait %+v: want provenance predicted from %s", tr, run.ID)
			}
			got[tr.Key] = tr.Value
		}
		for _, k := range []string{"p_alive", "churn_risk", "expected_purchases_90d", "expected_order_value", "clv_365d",
			"rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_segment", "next_best_products", "upsell_products"} {
			if _, ok := got[k]; !ok {
				t.Fatalf("profile %s lacks %s: %v", id, k, got)
			}
		}
		var palive, churn, clv, exp float64
		json.Unmarshal(got["p_alive"], &palive)
		json.Unmarshal(got["churn_risk"], &churn)
		json.Unmarshal(got["clv_365d"], &clv)
		json.Unmarshal(got["expected_purchases_90d"], &exp)
		if palive < 0 || palive > 1 || math.Abs(palive+churn-1) > 1e-5 || clv < 0 || exp < 0 {
			t.Fatalf("profile %s: p_alive %v churn %v clv %v expected %v", id, palive, churn, clv, exp)
		}
		// Recommendations never name what the customer already bought
		// (before the cutoff).
		bought := map[string]bool{}
		for _, o := range b.Orders {
			if o.ProfileID == id && o.Timestamp.Before(cutoff) {
				for _, it := range o.Items {
					bought[it.ProductID] = true
				}
			}
		}
		var next, up []string
		json.Unmarshal(got["next_best_products"], &next)
		json.Unmarshal(got["upsell_products"], &up)
		for _, p := range append(next, up...) {
			if bought[p] {
				t.Fatalf("profile %s: recommended %s which they bought", id, p)
			}
		}
	}
}

// A fixed history checks the predictions against the models directly.
func TestRunPredictionsMatchModels(t *testing.T) {
	ctx := t.Context()
	db := openStore(t)
	b := synthOrders(300, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), 400, 3)
	if err := db.ApplyIndexBatch(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AnalysisDate = time.Date(2025, 7, 5, 0, 0, 0, 0, time.UTC)
	r := &Runner{Store: db, Config: cfg}
	run, err := r.RunNow(ctx, TriggerAPI, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	json.Unmarshal(run.Report, &rep)
	p := rep.Models[ModelBGNBD].Params
	if p == nil {
		t.Fatalf("BG/NBD not fitted: %+v", rep.Models[ModelBGNBD])
	}
	// Profile p_00000's own summary, computed here from its orders.
	var days []time.Time
	for _, o := range b.Orders {
		if o.ProfileID == "p_00000" && o.Timestamp.Before(cfg.AnalysisDate.AddDate(0, 0, 1)) {
			d := o.Timestamp.Truncate(24 * time.Hour)
			if len(days) == 0 || !days[len(days)-1].Equal(d) {
				days = append(days, d)
			}
		}
	}
	if len(days) == 0 {
		t.Fatal("fixture customer has no order before the analysis date")
	}
	x := float64(len(days) - 1)
	tx := days[len(days)-1].Sub(days[0]).Hours() / 24 / 7
	T := cfg.AnalysisDate.Sub(days[0]).Hours() / 24 / 7
	// P(alive) by the BG/NBD formula.
	want := 1.0
	if x > 0 {
		want = 1 / (1 + p["a"]/(p["b"]+x-1)*math.Pow((p["alpha"]+T)/(p["alpha"]+tx), p["r"]+x))
	}
	traits, err := db.Traits(ctx, "p_00000")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range traits {
		if tr.Key == "p_alive" {
			var got float64
			json.Unmarshal(tr.Value, &got)
			within(t, "p_alive of p_00000", got, want, 1e-5)
			return
		}
	}
	t.Fatal("no p_alive trait")
}

func TestRunnerOneAtATime(t *testing.T) {
	db := openStore(t)
	block := make(chan struct{})
	gate := &gatedStore{Store: db, gate: block}
	r := &Runner{Store: gate, Config: DefaultConfig()}
	first, err := r.Start(t.Context(), TriggerAPI, r.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(t.Context(), TriggerAPI, r.Config); kith.ErrorCode(err) != kith.ECONFLICT {
		t.Errorf("second Start while running = %v, want ECONFLICT", err)
	}
	close(block)
	r.Wait()
	got, err := db.InsightRun(t.Context(), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	// No orders: the run finishes, with every model skipped and saying why.
	if got.Status != kith.RunFinished {
		t.Fatalf("run = %+v", got)
	}
	var rep Report
	json.Unmarshal(got.Report, &rep)
	if rep.Models[ModelBGNBD].Skipped == "" || rep.ProfilesWritten != 0 {
		t.Errorf("empty store report = %+v", rep)
	}
	if _, err := r.Start(t.Context(), TriggerAPI, Config{}); kith.ErrorCode(err) != kith.EINVALID {
		t.Errorf("Start with an invalid config = %v, want EINVALID", err)
	}
}

// gatedStore holds ScanOrders until gate closes.
type gatedStore struct {
	Store
	gate chan struct{}
}

func (g *gatedStore) ScanOrders(ctx context.Context, fn func(kith.CustomerOrders) error) error {
	<-g.gate
	return g.Store.ScanOrders(ctx, fn)
}

// TestRepeatedOrderIDsCountOnce: one order reported by two channels (a
// webshop event and an order-management export, same order id) is one
// purchase, not two.
func TestRepeatedOrderIDsCountOnce(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	a := newAnalysis(DefaultConfig(), btyd.Period{CalibrationEnd: btyd.DayOf(day(400))})
	co := kith.CustomerOrders{ProfileID: "p1", Orders: []kith.Order{
		{OrderID: "W-1", Timestamp: day(0), Revenue: 50},
		{OrderID: "W-1", Timestamp: day(0).Add(time.Minute), Revenue: 50},
		{OrderID: "W-2", Timestamp: day(30), Revenue: 20},
		{Timestamp: day(60), Revenue: 10},
		{Timestamp: day(60), Revenue: 10},
	}}
	if err := a.add(co); err != nil {
		t.Fatal(err)
	}
	if a.ordersSeen != 5 || a.ordersRepeated != 1 || a.ordersUsed != 4 {
		t.Fatalf("seen %d repeated %d used %d, want 5, 1, 4 (orders without an id are never merged)", a.ordersSeen, a.ordersRepeated, a.ordersUsed)
	}
}
