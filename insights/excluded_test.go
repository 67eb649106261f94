package insights

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/btyd"
)

// TestRunExcludesCustomerWithNonFiniteValue: one customer whose order
// values add up beyond float64's range (issue 14: every later run failed
// for all customers with "monetary value is +Inf"), or beyond what the RFM
// scores can rank (2^53: "too large to bin"), is left out of the run,
// counted in the run record with the reason, and gets no predictions; the
// run finishes, fits its models and predicts for everyone else. Each case
// poisons the store differently.
func TestRunExcludesCustomerWithNonFiniteValue(t *testing.T) {
	start := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	order := func(id string, seq int64, day int, revenue float64) kith.Order {
		return kith.Order{ProfileID: id, Seq: seq, Timestamp: start.AddDate(0, 0, day), SourceID: "shop", Revenue: revenue, Currency: "EUR",
			Items: []kith.OrderItem{{ProductID: "pen", Category: "Office", Price: 2}}}
	}
	tests := []struct {
		name   string
		orders func(id string, seq int64) []kith.Order
	}{
		{"two finite orders overflow on the same day", func(id string, seq int64) []kith.Order {
			return []kith.Order{order(id, seq, 10, 1.7e308), order(id, seq+1, 10, 1.7e308), order(id, seq+2, 50, 3)}
		}},
		{"repeat spend overflows", func(id string, seq int64) []kith.Order {
			return []kith.Order{order(id, seq, 10, 3), order(id, seq+1, 20, 1.7e308), order(id, seq+2, 50, 1.7e308)}
		}},
		{"finite but too large to rank", func(id string, seq int64) []kith.Order {
			return []kith.Order{order(id, seq, 10, 1e16), order(id, seq+1, 50, 3)}
		}},
		{"an infinite order stored before ingest refused them", func(id string, seq int64) []kith.Order {
			return []kith.Order{order(id, seq, 10, math.Inf(1)), order(id, seq+1, 50, 3)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db := openStore(t)
			b := synthOrders(300, start, 365, 11)
			const poisoned = "p_poisoned"
			b.Profiles = append(b.Profiles, kith.NewProfile{ID: poisoned, CreatedAt: start})
			b.Orders = append(b.Orders, tt.orders(poisoned, b.Cursor+1)...)
			b.Cursor += 10
			if err := db.ApplyIndexBatch(ctx, 0, b); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.AnalysisDate = start.AddDate(0, 0, 300)
			r := &Runner{Store: db, Config: cfg, Now: func() time.Time { return start.AddDate(1, 0, 0) }}
			run, err := r.RunNow(ctx, TriggerAPI, cfg)
			if err != nil || run.Status != kith.RunFinished {
				t.Fatalf("run = %s %q, %v; want finished", run.Status, run.Error, err)
			}
			var rep Report
			if err := json.Unmarshal(run.Report, &rep); err != nil {
				t.Fatal(err)
			}
			want := []Exclusion{{Reason: ReasonValueOutOfRange, Customers: 1, Examples: []string{poisoned}}}
			if !slices.EqualFunc(rep.Excluded, want, func(a, b Exclusion) bool {
				return a.Reason == b.Reason && a.Customers == b.Customers && slices.Equal(a.Examples, b.Examples)
			}) {
				t.Errorf("excluded = %+v, want %+v", rep.Excluded, want)
			}
			for _, name := range []string{cfg.Model, "gammagamma"} {
				if m := rep.Models[name]; m == nil || m.Skipped != "" {
					t.Errorf("model %s = %+v, want fitted", name, m)
				}
			}
			if rep.ProfilesWritten != rep.Customers || rep.Customers == 0 {
				t.Errorf("customers %d, written %d", rep.Customers, rep.ProfilesWritten)
			}
			traits, err := db.Traits(ctx, poisoned)
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range traits {
				if tr.Provenance == kith.ProvenancePredicted {
					t.Errorf("excluded customer has predicted trait %s", tr.Key)
				}
			}
		})
	}
}

// TestNaNOrderValueExcluded: a NaN revenue (PostgreSQL kept one before
// ingest refused non-finite order values) excludes its customer too.
func TestNaNOrderValueExcluded(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	a := newAnalysis(cfg, btyd.Period{CalibrationEnd: btyd.DayOf(start.AddDate(0, 0, 100)), Unit: cfg.UnitDays})
	for _, id := range []string{"nan", "ok"} {
		v := 4.0
		if id == "nan" {
			v = math.NaN()
		}
		err := a.add(kith.CustomerOrders{ProfileID: id, Orders: []kith.Order{
			{Timestamp: start, Revenue: 3}, {Timestamp: start.AddDate(0, 0, 5), Revenue: v},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(a.custs) != 1 || a.custs[0].summary.ID != "ok" || len(a.excluded) != 1 || a.excluded[0].Examples[0] != "nan" {
		t.Errorf("customers %+v, excluded %+v; want ok kept and nan excluded", a.custs, a.excluded)
	}
}
