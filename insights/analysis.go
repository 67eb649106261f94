package insights

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
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

// customer is what a run keeps per customer: a handful of numbers and
// where its distinct products are in the analysis's flat item lists,
// never the orders themselves, so memory grows with customers and
// products rather than with order history. Its profile id is summary.ID.
type customer struct {
	summary btyd.Summary
	// Calibration orders and revenue, and the last order day, for RFM.
	orders  int
	revenue float64
	last    btyd.Day
	// The distinct products bought (sorted) are analysis.items[itemsAt:
	// itemsAt+nItems], each paid the highest unit price in analysis.paid.
	itemsAt, nItems uint32
}

// analysis is one pass over a Source: per-customer summaries, the baskets
// for cross-sell, the product catalogue, and the repeat-purchase histogram
// a validation draws.
type analysis struct {
	cfg    Config
	period btyd.Period
	custs  []customer
	// items and paid are the customers' distinct products and the highest
	// price paid for each, all customers in one pair of flat slices (see
	// customer), so a million customers are not two million allocations
	// for the collector to trace.
	items []int32
	paid  []float64
	// baskets are every order's products. The model counts co-occurrence
	// per basket, so who bought them is not kept.
	baskets  basket.Baskets
	products basket.Interner
	// productJSON is each product's id as a JSON string (encodeProducts).
	productJSON [][]byte
	keys        traitKeys
	catalog     map[int32]basket.Product
	// repeatsByDay counts repeat purchase-days by day, over calibration
	// and holdout, for the tracking chart.
	repeatsByDay map[btyd.Day]int
	firstOrder   time.Time
	lastOrder    time.Time
	// add's scratch: the customer's purchase days, distinct products and
	// prices paid, and one order's products.
	days      []btyd.DayAmount
	custItems []int32
	custPaid  []float64
	order     []int32

	ordersSeen int
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
	return &analysis{cfg: cfg, period: period, keys: newTraitKeys(cfg), catalog: map[int32]basket.Product{}, repeatsByDay: map[btyd.Day]int{}}
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
	a.custItems, a.custPaid = a.custItems[:0], a.custPaid[:0]
	defer func() { a.days = days[:0] }()
	var c customer
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
		a.order = a.order[:0]
		for _, it := range o.Items {
			key := commerce.ItemKey(it)
			if key == "" {
				continue
			}
			id := a.products.ID(key)
			a.order = append(a.order, id)
			if it.Category != "" {
				// The catalogue keeps each product's latest category
				// and price.
				a.catalog[id] = basket.Product{ID: key, Category: it.Category, Price: it.Price}
			}
			a.addItem(id, it.Price)
		}
		if len(a.order) > 0 {
			if err := a.baskets.Add(a.order); err != nil {
				return fmt.Errorf("insights: baskets: %w", err)
			}
		}
	}
	if len(days) == 0 {
		return nil
	}
	merged := btyd.MergeDays(days)
	s, ok := a.period.Summarise(co.ProfileID, merged)
	if !ok {
		a.customersOut++
		return nil
	}
	c.summary = s
	if !c.inRange() {
		// Checked here, in the one pass every run and validation
		// makes, so no fit, score or prediction ever sees the value.
		a.exclude(co.ProfileID, ReasonValueOutOfRange)
		return nil
	}
	for _, d := range merged[1:] {
		a.repeatsByDay[d.Day]++
	}
	if uint64(len(a.items))+uint64(len(a.custItems)) > math.MaxUint32 {
		return errors.New("insights: more than 4,294,967,295 distinct products across customers")
	}
	c.itemsAt, c.nItems = uint32(len(a.items)), uint32(len(a.custItems))
	a.items = append(a.items, a.custItems...)
	a.paid = append(a.paid, a.custPaid...)
	a.custs = append(a.custs, c)
	return nil
}

// addItem records a product the customer being added bought and the
// highest price paid for it.
func (a *analysis) addItem(id int32, price float64) {
	i, found := slices.BinarySearch(a.custItems, id)
	if found {
		a.custPaid[i] = max(a.custPaid[i], price)
		return
	}
	a.custItems = slices.Insert(a.custItems, i, id)
	a.custPaid = slices.Insert(a.custPaid, i, price)
}

// itemsOf returns customer c's distinct products and the highest price
// paid for each.
func (a *analysis) itemsOf(c *customer) ([]int32, []float64) {
	lo, hi := c.itemsAt, c.itemsAt+c.nItems
	return a.items[lo:hi:hi], a.paid[lo:hi:hi]
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
// The purchase-count model, the spend model, the RFM scores and the
// basket models do not depend on each other, so they are fitted side by
// side; each records its own time.
func (a *analysis) fit(rep *Report) (*fitted, error) {
	f := &fitted{}
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
	mr, gr := &ModelReport{}, &ModelReport{}
	rep.Models[a.cfg.Model] = mr
	rep.Models["gammagamma"] = gr

	var wg sync.WaitGroup
	var rfmErr, basketErr error
	var countSecs, spendSecs, rfmSecs, rulesSecs, recSecs float64
	t0 := time.Now()
	wg.Go(func() {
		f.model = a.fitCount(summaries, repeat, mr)
		countSecs = time.Since(t0).Seconds()
	})
	wg.Go(func() {
		f.gg = a.fitSpend(summaries, repeat, gr)
		spendSecs = time.Since(t0).Seconds()
	})
	wg.Go(func() {
		start := time.Now()
		f.rfm, rep.RFM, rfmErr = a.scoreRFM()
		rfmSecs = time.Since(start).Seconds()
	})
	// Cross-sell and up-sell.
	rep.Products = a.products.Len()
	rep.Baskets = a.baskets.Len()
	if a.baskets.Len() > 0 {
		wg.Go(func() {
			start := time.Now()
			rules, err := a.baskets.Mine(basket.Options{MinSupport: a.cfg.MinSupport, MinConfidence: a.cfg.MinConfidence, MinLift: a.cfg.MinLift})
			if err != nil {
				basketErr = fmt.Errorf("insights: association rules: %w", err)
				return
			}
			f.rules = rules
			rep.RulesTotal = len(rules)
			rulesSecs = time.Since(start).Seconds()
			start = time.Now()
			for _, r := range rules[:min(len(rules), 25)] {
				rep.Rules = append(rep.Rules, RuleReport{
					If: a.products.Names(r.Antecedent), Then: a.products.Names(r.Consequent), Count: r.Count,
					Support: r.Support, Confidence: r.Confidence, Lift: r.Lift,
				})
			}
			if f.rec, err = a.baskets.Recommender(basket.RecommenderOptions{MinCoCount: a.cfg.MinCoCount}); err != nil {
				basketErr = fmt.Errorf("insights: recommender: %w", err)
				return
			}
			catalog := make([]basket.Product, 0, len(a.catalog))
			for _, p := range a.catalog {
				catalog = append(catalog, p)
			}
			f.up = basket.NewUpseller(catalog)
			// Predictions use each customer's distinct products, not the
			// baskets: let them go before the predictions are made.
			a.baskets = basket.Baskets{}
			recSecs = time.Since(start).Seconds()
		})
	}
	wg.Wait()
	if rfmErr != nil {
		return nil, rfmErr
	}
	if basketErr != nil {
		return nil, basketErr
	}
	rep.Seconds["fit_models"] = max(countSecs, spendSecs) // until both models were fitted
	rep.Seconds["rfm"] = rfmSecs
	if rep.Baskets > 0 {
		rep.Seconds["rules"] = rulesSecs
		rep.Seconds["recommender"] = recSecs
	}
	return f, nil
}

// fitCount fits the purchase-count model, or says in mr why not.
func (a *analysis) fitCount(summaries []btyd.Customer, repeat int, mr *ModelReport) Model {
	switch {
	case len(a.custs) < a.cfg.MinCustomers:
		mr.Skipped = fmt.Sprintf("%d customers, fewer than the %d a fit needs", len(a.custs), a.cfg.MinCustomers)
		return nil
	case repeat == 0:
		mr.Skipped = "no customer has a repeat purchase yet"
		return nil
	}
	start := time.Now()
	var m Model
	var err error
	var info btyd.FitInfo
	switch a.cfg.Model {
	case ModelParetoNBD:
		m, info, err = btyd.FitParetoNBD(summaries)
	default:
		m, info, err = btyd.FitBGNBD(summaries)
	}
	if !mr.record(start, info, err, m) {
		return nil
	}
	return m
}

// fitSpend fits the spend model on repeat buyers, or says in gr why not.
func (a *analysis) fitSpend(summaries []btyd.Customer, repeat int, gr *ModelReport) *btyd.GammaGamma {
	if repeat < a.cfg.MinCustomers {
		gr.Skipped = fmt.Sprintf("%d repeat customers, fewer than the %d a fit needs", repeat, a.cfg.MinCustomers)
		return nil
	}
	start := time.Now()
	m, info, err := btyd.FitGammaGamma(summaries)
	if !gr.record(start, info, err, m) {
		return nil
	}
	return &m
}

// record notes a fit that started at start: its time and diagnostics, and
// its parameters or why it failed. It reports whether the fit can be used.
func (r *ModelReport) record(start time.Time, info btyd.FitInfo, err error, m interface{ Params() map[string]float64 }) bool {
	r.Seconds = time.Since(start).Seconds()
	r.Fit = info
	if err != nil {
		r.Skipped = "fit failed: " + err.Error()
		return false
	}
	r.Params = m.Params()
	return true
}

// scoreRFM scores every customer and summarises the segments.
func (a *analysis) scoreRFM() ([]rfm.Score, []rfm.SegmentSummary, error) {
	rcs := make([]rfm.Customer, len(a.custs))
	for i, c := range a.custs {
		rcs[i] = rfm.Customer{ID: c.summary.ID, RecencyDays: float64(a.period.CalibrationEnd - c.last), Frequency: c.orders, Monetary: c.revenue}
	}
	scores, err := rfm.ScoreAll(rcs, a.cfg.RFMBins, a.cfg.RFMRules)
	if err != nil {
		return nil, nil, fmt.Errorf("insights: rfm: %w", err)
	}
	return scores, rfm.Summarise(scores, a.cfg.RFMRules), nil
}

// predict returns customer i's predicted traits, encoded. One buffer holds
// every value's JSON; product names are encoded once per run (see
// encodeProducts).
func (a *analysis) predict(f *fitted, memo *countMemo, i int, ps []basket.Purchase) (map[string]json.RawMessage, []basket.Purchase, error) {
	c := &a.custs[i]
	out := make(map[string]json.RawMessage, 14)
	e := traitEncoder{out: out, buf: make([]byte, 0, 512)}
	if f.model != nil {
		v := &memo.values[memo.index[i]]
		e.number("p_alive", round(v.palive))
		e.number("churn_risk", round(1-v.palive))
		e.number(a.keys.expected, round(v.expected))
		if f.gg != nil {
			spend := f.gg.ExpectedSpend(c.summary.Customer)
			e.number("expected_order_value", round(spend))
			if memo.clv {
				e.number(a.keys.clv, round(spend*v.discounted))
			}
		}
	} else if f.gg != nil {
		e.number("expected_order_value", round(f.gg.ExpectedSpend(c.summary.Customer)))
	}
	s := f.rfm[i]
	e.integer("rfm_recency", s.Recency)
	e.integer("rfm_frequency", s.Frequency)
	e.integer("rfm_monetary", s.Monetary)
	e.integer("rfm_score", s.Combined)
	e.value("rfm_segment", s.Segment)
	items, paid := a.itemsOf(c)
	if f.rec != nil {
		recs := f.rec.NextBest(items, a.cfg.TopN)
		e.list("next_best_products", len(recs), func(j int) []byte { return a.productJSON[recs[j].Item] })
	}
	if f.up != nil {
		ps = ps[:0]
		for j, id := range items {
			if p, ok := a.catalog[id]; ok {
				ps = append(ps, basket.Purchase{Product: p.ID, Category: p.Category, Price: paid[j]})
			}
		}
		ups := f.up.Upsell(ps, a.cfg.TopN)
		e.list("upsell_products", len(ups), func(j int) []byte {
			if id, ok := a.products.Lookup(ups[j]); ok {
				return a.productJSON[id]
			}
			b, _ := json.Marshal(ups[j]) // a string always encodes
			return b
		})
	}
	if e.err != nil {
		return nil, ps, fmt.Errorf("insights: encode predictions of %s: %w", c.summary.ID, e.err)
	}
	return out, ps, nil
}

// countMemo holds the purchase-count model's predictions once per
// distinct purchase history (repeat purchases, last repeat, age): they do
// not depend on the spend, and a million customers have about half as many
// distinct histories, each prediction costing over a dozen evaluations of
// a hypergeometric function.
type countMemo struct {
	index  []int32 // per customer, into values
	values []countValues
	// clv says whether the configuration gives a CLV horizon, step and
	// discount btyd can value (see btyd.CLV); it is the same for every
	// customer.
	clv bool
}

type countValues struct {
	palive, expected float64
	// discounted is btyd.DiscountedPurchases over the CLV horizon; CLV is
	// it times the expected spend.
	discounted float64
}

// memoCounts computes the count model's predictions for every distinct
// history, on all cores. It returns nil without a count model.
func (a *analysis) memoCounts(f *fitted) *countMemo {
	if f.model == nil {
		return nil
	}
	type history struct{ x, tx, t float64 }
	at := make(map[history]int32, len(a.custs)/2)
	m := &countMemo{index: make([]int32, len(a.custs))}
	var distinct []btyd.Customer
	for i := range a.custs {
		c := a.custs[i].summary.Customer
		h := history{c.X, c.Tx, c.T}
		j, ok := at[h]
		if !ok {
			j = int32(len(distinct))
			at[h] = j
			distinct = append(distinct, btyd.Customer{X: c.X, Tx: c.Tx, T: c.T})
		}
		m.index[i] = j
	}
	clear(at)
	m.values = make([]countValues, len(distinct))
	unit := a.cfg.UnitDays
	horizon, month := float64(a.cfg.CLVDays)/unit, 365.25/12/unit
	monthly := math.Pow(1+a.cfg.AnnualDiscount, 1.0/12) - 1
	_, err := btyd.DiscountedPurchases(f.model, btyd.Customer{}, horizon, month, monthly)
	m.clv = err == nil
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for j := w; j < len(distinct); j += workers {
				c := distinct[j]
				v := &m.values[j]
				v.palive = f.model.PAlive(c)
				v.expected = f.model.ConditionalExpected(c, float64(a.cfg.HorizonDays)/unit)
				if m.clv {
					v.discounted, _ = btyd.DiscountedPurchases(f.model, c, horizon, month, monthly) // the arguments were checked above
				}
			}
		})
	}
	wg.Wait()
	return m
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
