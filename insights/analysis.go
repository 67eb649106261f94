package insights

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/basket"
	"github.com/kithcdp/kith/btyd"
	"github.com/kithcdp/kith/commerce"
	"github.com/kithcdp/kith/rfm"
)

// Source yields customers' order histories, each customer once with its
// orders oldest first. kith.InsightStore's ScanOrders is one; FileSource
// makes one from an analyst's file.
type Source func(ctx context.Context, fn func(kith.CustomerOrders) error) error

// customer is what a run keeps per customer: a handful of numbers and the
// distinct products bought, never the orders themselves, so memory grows
// with customers and products rather than with order history.
type customer struct {
	id      string
	summary btyd.Summary
	// Calibration orders and revenue, and the last order day, for RFM.
	orders  int
	revenue float64
	last    btyd.Day
	// items are the distinct products bought (sorted), paid the highest
	// unit price paid for each.
	items []int32
	paid  []float64
}

// analysis is one pass over a Source: per-customer summaries, the baskets
// for cross-sell, the product catalogue, and the repeat-purchase histogram
// a validation draws.
type analysis struct {
	cfg    Config
	period btyd.Period
	custs  []customer
	// baskets are every order's products, each a slice of one of arena's
	// chunks: one allocation per chunk rather than per order. The model
	// counts co-occurrence per basket, so who bought them is not kept.
	baskets  [][]int32
	arena    []int32
	products basket.Interner
	catalog  map[int32]basket.Product
	// repeatsByDay counts repeat purchase-days by day, over calibration
	// and holdout, for the tracking chart.
	repeatsByDay map[btyd.Day]int
	firstOrder   time.Time
	lastOrder    time.Time
	days         []btyd.DayAmount // add's scratch
	ordersSeen   int
	// ordersRepeated counts orders skipped because the customer already
	// had an order with the same order id (one order reported by two
	// channels, such as a webshop event and an order-management export).
	ordersRepeated int
	orderIDs       map[string]struct{}
	ordersUsed     int
	customersOut   int // first purchase after the calibration end
	// excluded are the customers left out of the fits, by reason.
	excluded []Exclusion
}

// Exclusion counts the customers a run left out of its fits and
// predictions for one reason, with the first few of their profile ids so
// they can be looked at.
type Exclusion struct {
	Reason    string   `json:"reason"`
	Customers int      `json:"customers"`
	Examples  []string `json:"examples"`
}

// maxExclusionExamples is how many profile ids an Exclusion lists.
const maxExclusionExamples = 10

// ReasonValueOutOfRange is why a customer is left out whose order values
// are not finite, or add up to maxAmount or more (two orders of 1.7e308
// make +Inf). Kept, such a value would make the RFM scoring fail for
// every customer: it cannot rank a value v with v+1 == v.
const ReasonValueOutOfRange = "order values are not finite or add up to 2^53 (about 9e15) or more, beyond what the scores can rank"

// maxAmount bounds the amounts a customer's summary may hold: from 2^53
// on, v+1 == v, and the RFM bins (whose upper bound is the maximum plus
// one) cannot hold the maximum.
const maxAmount = 1 << 53

// exclude leaves customer id out of the run for reason.
func (a *analysis) exclude(id, reason string) {
	i := slices.IndexFunc(a.excluded, func(e Exclusion) bool { return e.Reason == reason })
	if i < 0 {
		a.excluded = append(a.excluded, Exclusion{Reason: reason})
		i = len(a.excluded) - 1
	}
	e := &a.excluded[i]
	e.Customers++
	if len(e.Examples) < maxExclusionExamples {
		e.Examples = append(e.Examples, id)
	}
}

// inRange reports whether every amount a customer's summary holds is a
// number below maxAmount in magnitude: the calibration revenue (RFM's
// monetary value, which includes the first purchase), the mean repeat
// spend, and the holdout spend. Together they cover every order the
// summary used. NaN is out of range.
func (c *customer) inRange() bool {
	for _, v := range [...]float64{c.revenue, c.summary.Spend, c.summary.HoldoutSpend} {
		if !(math.Abs(v) < maxAmount) {
			return false
		}
	}
	return true
}

func newAnalysis(cfg Config, period btyd.Period) *analysis {
	return &analysis{cfg: cfg, period: period, catalog: map[int32]basket.Product{}, repeatsByDay: map[btyd.Day]int{}}
}

// scan reads every customer from src. Reading (the store's decoding) and
// summarising run in two goroutines, so a scan uses two cores.
func (a *analysis) scan(ctx context.Context, src Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan []kith.CustomerOrders, 4)
	done := make(chan error, 1)
	go func() {
		var err error
		for part := range queue {
			for _, co := range part {
				if err == nil {
					err = a.add(co)
				}
			}
			if err != nil {
				cancel(err)
			}
		}
		done <- err
	}()
	var part []kith.CustomerOrders
	n := 0
	err := src(ctx, func(co kith.CustomerOrders) error {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		part = append(part, co)
		if n += len(co.Orders); n >= 4096 {
			queue <- part
			part, n = nil, 0
		}
		return nil
	})
	if err == nil && len(part) > 0 {
		queue <- part
	}
	close(queue)
	if aerr := <-done; aerr != nil {
		return aerr
	}
	return err
}

// add summarises one customer.
func (a *analysis) add(co kith.CustomerOrders) error {
	days := a.days[:0]
	defer func() { a.days = days[:0] }()
	var c customer
	c.id = co.ProfileID
	end := a.period.CalibrationEnd
	if a.period.HoldoutEnd != 0 {
		end = a.period.HoldoutEnd
	}
	if a.orderIDs == nil {
		a.orderIDs = map[string]struct{}{}
	}
	clear(a.orderIDs)
	for _, o := range co.Orders {
		a.ordersSeen++
		if o.OrderID != "" {
			if _, dup := a.orderIDs[o.OrderID]; dup {
				a.ordersRepeated++
				continue
			}
			a.orderIDs[o.OrderID] = struct{}{}
		}
		d := btyd.DayOf(o.Timestamp.UTC())
		if d > end {
			continue // after the data the run looks at
		}
		a.ordersUsed++
		if a.firstOrder.IsZero() || o.Timestamp.Before(a.firstOrder) {
			a.firstOrder = o.Timestamp
		}
		if o.Timestamp.After(a.lastOrder) {
			a.lastOrder = o.Timestamp
		}
		days = append(days, btyd.DayAmount{Day: d, Amount: o.Revenue})
		if d > a.period.CalibrationEnd {
			continue // holdout: counted by the summary only
		}
		c.orders++
		c.revenue += o.Revenue
		c.last = max(c.last, d)
		if len(o.Items) > 0 {
			if cap(a.arena)-len(a.arena) < len(o.Items) {
				a.arena = make([]int32, 0, max(1<<16, len(o.Items)))
			}
			start := len(a.arena)
			for _, it := range o.Items {
				key := commerce.ItemKey(it)
				if key == "" {
					continue
				}
				id := a.products.ID(key)
				a.arena = append(a.arena, id)
				if it.Category != "" {
					// The catalogue keeps each product's latest
					// category and price.
					a.catalog[id] = basket.Product{ID: key, Category: it.Category, Price: it.Price}
				}
				c.addItem(id, it.Price)
			}
			if b := a.arena[start:len(a.arena):len(a.arena)]; len(b) > 0 {
				a.baskets = append(a.baskets, b)
			}
		}
	}
	if len(days) == 0 {
		return nil
	}
	merged := btyd.MergeDays(days)
	s, ok := a.period.Summarise(c.id, merged)
	if !ok {
		a.customersOut++
		return nil
	}
	c.summary = s
	if !c.inRange() {
		// Checked here, in the one pass every run and validation
		// makes, so no fit, score or prediction ever sees the value.
		a.exclude(c.id, ReasonValueOutOfRange)
		return nil
	}
	for _, d := range merged[1:] {
		a.repeatsByDay[d.Day]++
	}
	a.custs = append(a.custs, c)
	return nil
}

// addItem records a purchased product and the highest price paid for it.
func (c *customer) addItem(id int32, price float64) {
	i, found := slices.BinarySearch(c.items, id)
	if found {
		c.paid[i] = max(c.paid[i], price)
		return
	}
	c.items = slices.Insert(c.items, i, id)
	c.paid = slices.Insert(c.paid, i, price)
}

// fitted holds what a run fitted; nil members were skipped.
type fitted struct {
	model Model
	gg    *btyd.GammaGamma
	rfm   []rfm.Score
	rec   *basket.Recommender
	up    *basket.Upseller
	rules []basket.Rule
}

// Model is the purchase-count model a run uses.
type Model = btyd.Model

// fit fits every model the data supports, recording each in the report.
func (a *analysis) fit(rep *Report) (*fitted, error) {
	f := &fitted{}
	t0 := time.Now()
	summaries := make([]btyd.Customer, len(a.custs))
	repeat := 0
	for i, c := range a.custs {
		summaries[i] = c.summary.Customer
		if c.summary.X > 0 {
			repeat++
		}
	}
	rep.Customers = len(a.custs)
	rep.RepeatCustomers = repeat

	// Purchase-count model.
	mr := &ModelReport{}
	rep.Models[a.cfg.Model] = mr
	switch {
	case len(a.custs) < a.cfg.MinCustomers:
		mr.Skipped = fmt.Sprintf("%d customers, fewer than the %d a fit needs", len(a.custs), a.cfg.MinCustomers)
	case repeat == 0:
		mr.Skipped = "no customer has a repeat purchase yet"
	default:
		start := time.Now()
		var err error
		var info btyd.FitInfo
		switch a.cfg.Model {
		case ModelParetoNBD:
			var m btyd.ParetoNBD
			m, info, err = btyd.FitParetoNBD(summaries)
			f.model = m
		default:
			var m btyd.BGNBD
			m, info, err = btyd.FitBGNBD(summaries)
			f.model = m
		}
		mr.Seconds = time.Since(start).Seconds()
		mr.Fit = info
		if err != nil {
			f.model = nil
			mr.Skipped = "fit failed: " + err.Error()
		} else {
			mr.Params = f.model.Params()
		}
	}

	// Spend model, on repeat buyers.
	gr := &ModelReport{}
	rep.Models["gammagamma"] = gr
	if repeat < a.cfg.MinCustomers {
		gr.Skipped = fmt.Sprintf("%d repeat customers, fewer than the %d a fit needs", repeat, a.cfg.MinCustomers)
	} else {
		start := time.Now()
		m, info, err := btyd.FitGammaGamma(summaries)
		gr.Seconds = time.Since(start).Seconds()
		gr.Fit = info
		if err != nil {
			gr.Skipped = "fit failed: " + err.Error()
		} else {
			f.gg = &m
			gr.Params = m.Params()
		}
	}

	rep.Seconds["fit_models"] = time.Since(t0).Seconds()
	t0 = time.Now()

	// RFM over every customer.
	rcs := make([]rfm.Customer, len(a.custs))
	for i, c := range a.custs {
		rcs[i] = rfm.Customer{ID: c.id, RecencyDays: float64(a.period.CalibrationEnd - c.last), Frequency: c.orders, Monetary: c.revenue}
	}
	scores, err := rfm.ScoreAll(rcs, a.cfg.RFMBins, a.cfg.RFMRules)
	if err != nil {
		return nil, fmt.Errorf("insights: rfm: %w", err)
	}
	f.rfm = scores
	rep.RFM = rfm.Summarise(scores, a.cfg.RFMRules)

	rep.Seconds["rfm"] = time.Since(t0).Seconds()
	t0 = time.Now()

	// Cross-sell and up-sell.
	rep.Products = a.products.Len()
	flat := a.baskets
	rep.Baskets = len(flat)
	if len(flat) > 0 {
		rules, err := basket.Mine(flat, basket.Options{MinSupport: a.cfg.MinSupport, MinConfidence: a.cfg.MinConfidence, MinLift: a.cfg.MinLift})
		if err != nil {
			return nil, fmt.Errorf("insights: association rules: %w", err)
		}
		f.rules = rules
		rep.RulesTotal = len(rules)
		rep.Seconds["rules"] = time.Since(t0).Seconds()
		t0 = time.Now()
		for _, r := range rules[:min(len(rules), 25)] {
			rep.Rules = append(rep.Rules, RuleReport{
				If: a.products.Names(r.Antecedent), Then: a.products.Names(r.Consequent), Count: r.Count,
				Support: r.Support, Confidence: r.Confidence, Lift: r.Lift,
			})
		}
		if f.rec, err = basket.NewRecommender([][][]int32{flat}, basket.RecommenderOptions{MinCoCount: a.cfg.MinCoCount}); err != nil {
			return nil, fmt.Errorf("insights: recommender: %w", err)
		}
		catalog := make([]basket.Product, 0, len(a.catalog))
		for _, p := range a.catalog {
			catalog = append(catalog, p)
		}
		f.up = basket.NewUpseller(catalog)
		// Predictions use each customer's distinct products, not the
		// baskets: let them go before the predictions are made.
		a.baskets, a.arena, flat = nil, nil, nil
		rep.Seconds["recommender"] = time.Since(t0).Seconds()
	}
	return f, nil
}

// predict returns customer i's predicted traits.
func (a *analysis) predict(f *fitted, i int) map[string]any {
	c := &a.custs[i]
	out := map[string]any{}
	unit := a.cfg.UnitDays
	if f.model != nil {
		palive := f.model.PAlive(c.summary.Customer)
		out["p_alive"] = round(palive)
		out["churn_risk"] = round(1 - palive)
		out[fmt.Sprintf("expected_purchases_%dd", a.cfg.HorizonDays)] = round(f.model.ConditionalExpected(c.summary.Customer, float64(a.cfg.HorizonDays)/unit))
	}
	if f.gg != nil {
		out["expected_order_value"] = round(f.gg.ExpectedSpend(c.summary.Customer))
		if f.model != nil {
			month := 365.25 / 12 / unit
			monthly := math.Pow(1+a.cfg.AnnualDiscount, 1.0/12) - 1
			clv, err := btyd.CLV(f.model, *f.gg, c.summary.Customer, float64(a.cfg.CLVDays)/unit, month, monthly)
			if err == nil {
				out[fmt.Sprintf("clv_%dd", a.cfg.CLVDays)] = round(clv)
			}
		}
	}
	s := f.rfm[i]
	out["rfm_recency"], out["rfm_frequency"], out["rfm_monetary"] = s.Recency, s.Frequency, s.Monetary
	out["rfm_score"] = s.Combined
	out["rfm_segment"] = s.Segment
	if f.rec != nil {
		recs := f.rec.NextBest(c.items, a.cfg.TopN)
		ids := make([]string, len(recs))
		for j, r := range recs {
			ids[j] = a.products.Name(r.Item)
		}
		out["next_best_products"] = ids
	}
	if f.up != nil {
		var ps []basket.Purchase
		for j, id := range c.items {
			if p, ok := a.catalog[id]; ok {
				ps = append(ps, basket.Purchase{Product: p.ID, Category: p.Category, Price: c.paid[j]})
			}
		}
		ups := f.up.Upsell(ps, a.cfg.TopN)
		if ups == nil {
			ups = []string{}
		}
		out["upsell_products"] = ups
	}
	return out
}

// round keeps 6 significant digits: predictions are estimates, and short
// numbers keep the traits readable.
func round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, 5-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
