package insights

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/basket"
	"github.com/kithcdp/kith/btyd"
	"github.com/kithcdp/kith/rfm"
)

// Report is what a run records about itself: its configuration, the data
// it saw, each model's fitted parameters and diagnostics (or why it was
// skipped), the RFM segments, the strongest association rules and how long
// each phase took. A validation adds its holdout comparison.
type Report struct {
	Config       Config    `json:"config"`
	AnalysisDate string    `json:"analysisDate"`
	FirstOrder   time.Time `json:"firstOrder,omitzero"`
	LastOrder    time.Time `json:"lastOrder,omitzero"`
	// Orders read, and used (on or before the analysis date).
	OrdersRead int `json:"ordersRead"`
	OrdersUsed int `json:"ordersUsed"`
	// OrdersRepeated are orders skipped because the same customer already
	// had one with the same order id (reported by two channels).
	OrdersRepeated  int `json:"ordersRepeated"`
	Customers       int `json:"customers"`
	RepeatCustomers int `json:"repeatCustomers"`
	Products        int `json:"products"`
	Baskets         int `json:"baskets"`
	// Excluded are the customers left out of the fits and predictions
	// (not counted in Customers), by reason; they get no predicted
	// traits, and the run goes on without them.
	Excluded []Exclusion `json:"excluded,omitempty"`
	// Models by name: the purchase-count model and "gammagamma".
	Models     map[string]*ModelReport `json:"models"`
	RFM        []rfm.SegmentSummary    `json:"rfm"`
	Rules      []RuleReport            `json:"rules"`
	RulesTotal int                     `json:"rulesTotal"`
	// ProfilesWritten is the number of profiles given predicted traits.
	ProfilesWritten int                `json:"profilesWritten"`
	Seconds         map[string]float64 `json:"seconds"`
	Validation      *Validation        `json:"validation,omitempty"`
}

// ModelReport is one model's fit.
type ModelReport struct {
	Params  map[string]float64 `json:"params,omitempty"`
	Fit     btyd.FitInfo       `json:"fit"`
	Seconds float64            `json:"seconds"`
	// Skipped says why the model was not used, if it was not.
	Skipped string `json:"skipped,omitempty"`
}

// RuleReport is an association rule with product ids.
type RuleReport struct {
	If         []string `json:"if"`
	Then       []string `json:"then"`
	Count      int      `json:"count"`
	Support    float64  `json:"support"`
	Confidence float64  `json:"confidence"`
	Lift       float64  `json:"lift"`
}

// Store is what a run needs from Kith's store.
type Store interface {
	ScanOrders(ctx context.Context, fn func(kith.CustomerOrders) error) error
	WriteInsights(ctx context.Context, runID string, at time.Time, ps []kith.ProfileInsights) error
	SaveInsightRun(ctx context.Context, r kith.InsightRun) error
}

// Triggers say why a run started.
const (
	TriggerAPI      = "api"
	TriggerSchedule = "schedule"
	TriggerValidate = "validate"
)

// Runner runs insights against a store, one run at a time, on demand and
// on a schedule.
type Runner struct {
	Store  Store
	Config Config
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Context, when set, bounds background runs (Start) instead of the
	// caller's context: a server's runs end when the server stops.
	Context context.Context

	mu      sync.Mutex
	running string
	wg      sync.WaitGroup
}

// Wait blocks until background runs have ended.
func (r *Runner) Wait() { r.wg.Wait() }

// ErrRunning is returned by Start while a run is in progress.
var ErrRunning = errors.New("insights: a run is in progress")

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// newRunID returns a run id that sorts by start time.
func newRunID(at time.Time) string {
	return kith.NewID("run_" + at.UTC().Format("20060102T150405") + "_")
}

// Start begins a run in the background and returns its record as first
// saved; ECONFLICT if one is already running. ctx bounds the run itself.
func (r *Runner) Start(ctx context.Context, trigger string, cfg Config) (kith.InsightRun, error) {
	if err := cfg.Validate(); err != nil {
		return kith.InsightRun{}, kith.Errorf(kith.EINVALID, "%v", err)
	}
	if r.Context != nil {
		ctx = r.Context
	}
	run, err := r.begin(ctx, trigger)
	if err != nil {
		return run, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if _, err := r.execute(ctx, run, func(ctx context.Context) (*Report, error) { return r.analyse(ctx, run, cfg) }); err != nil {
			r.logger().Error("insight run failed", "run", run.ID, "err", err)
		}
	}()
	return run, nil
}

// RunNow runs synchronously and returns the finished (or failed) record.
func (r *Runner) RunNow(ctx context.Context, trigger string, cfg Config) (kith.InsightRun, error) {
	if err := cfg.Validate(); err != nil {
		return kith.InsightRun{}, kith.Errorf(kith.EINVALID, "%v", err)
	}
	run, err := r.begin(ctx, trigger)
	if err != nil {
		return run, err
	}
	return r.execute(ctx, run, func(ctx context.Context) (*Report, error) { return r.analyse(ctx, run, cfg) })
}

// RunValidation validates the model on the store's last holdoutDays days
// (see ValidateStore) and records it as a run with trigger "validate"; it
// writes no traits.
func (r *Runner) RunValidation(ctx context.Context, cfg Config, holdoutDays int) (kith.InsightRun, error) {
	if err := cfg.Validate(); err != nil {
		return kith.InsightRun{}, kith.Errorf(kith.EINVALID, "%v", err)
	}
	if holdoutDays <= 0 {
		return kith.InsightRun{}, kith.Errorf(kith.EINVALID, "holdout must be at least one day, got %d", holdoutDays)
	}
	run, err := r.begin(ctx, TriggerValidate)
	if err != nil {
		return run, err
	}
	return r.execute(ctx, run, func(ctx context.Context) (*Report, error) { return r.ValidateStore(ctx, cfg, holdoutDays) })
}

func (r *Runner) begin(ctx context.Context, trigger string) (kith.InsightRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running != "" {
		return kith.InsightRun{}, kith.Errorf(kith.ECONFLICT, "insight run %s is in progress", r.running)
	}
	run := kith.InsightRun{ID: newRunID(r.now()), Status: kith.RunRunning, Trigger: trigger, StartedAt: r.now()}
	if err := r.Store.SaveInsightRun(ctx, run); err != nil {
		return run, err
	}
	r.running = run.ID
	return run, nil
}

// execute runs and records the outcome; the run slot is freed at the end.
func (r *Runner) execute(ctx context.Context, run kith.InsightRun, analyse func(context.Context) (*Report, error)) (kith.InsightRun, error) {
	defer func() {
		r.mu.Lock()
		r.running = ""
		r.mu.Unlock()
	}()
	rep, err := analyse(ctx)
	run.FinishedAt = r.now()
	if rep != nil {
		run.Report, _ = json.Marshal(rep)
	}
	run.Status = kith.RunFinished
	if err != nil {
		run.Status, run.Error = kith.RunFailed, err.Error()
	}
	// The outcome is recorded even when the run's context ended.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if serr := r.Store.SaveInsightRun(saveCtx, run); serr != nil && err == nil {
		err = serr
	}
	r.logger().Info("insight run", "run", run.ID, "status", run.Status, "seconds", run.FinishedAt.Sub(run.StartedAt).Seconds())
	return run, err
}

func (r *Runner) analyse(ctx context.Context, run kith.InsightRun, cfg Config) (*Report, error) {
	day := cfg.analysisDay(r.now())
	a := newAnalysis(cfg, btyd.Period{CalibrationEnd: btyd.DayOf(day), Unit: cfg.UnitDays})
	rep := newReport(cfg, day)
	t := time.Now()
	if err := a.scan(ctx, r.Store.ScanOrders); err != nil {
		return rep, fmt.Errorf("insights: read orders: %w", err)
	}
	a.fillReport(rep)
	rep.Seconds["scan"] = time.Since(t).Seconds()
	t = time.Now()
	f, err := a.fit(rep)
	if err != nil {
		return rep, err
	}
	rep.Seconds["fit"] = time.Since(t).Seconds()
	t = time.Now()
	n, err := a.write(ctx, f, r.Store, run.ID, run.StartedAt)
	rep.ProfilesWritten = n
	rep.Seconds["predict_and_write"] = time.Since(t).Seconds()
	rep.Seconds["total"] = time.Since(run.StartedAt).Seconds()
	return rep, err
}

func newReport(cfg Config, day time.Time) *Report {
	return &Report{Config: cfg, AnalysisDate: day.Format(time.DateOnly), Models: map[string]*ModelReport{}, Seconds: map[string]float64{}}
}

func (a *analysis) fillReport(rep *Report) {
	rep.FirstOrder, rep.LastOrder = a.firstOrder.UTC(), a.lastOrder.UTC()
	rep.OrdersRead, rep.OrdersUsed, rep.OrdersRepeated = a.ordersSeen, a.ordersUsed, a.ordersRepeated
	rep.Excluded = a.excluded
}

// write predicts every customer's traits on all cores and writes them in
// batches, in customer order.
func (a *analysis) write(ctx context.Context, f *fitted, st Store, runID string, at time.Time) (int, error) {
	batch := a.cfg.BatchSize
	type chunk struct {
		ps   []kith.ProfileInsights
		err  error
		slot bool // the chunk holds a slot (see below)
	}
	// What every customer's predictions share, computed once.
	memo := a.memoCounts(f)
	a.encodeProducts()
	nchunks := (len(a.custs) + batch - 1) / batch
	results := make([]chan chunk, nchunks)
	for i := range results {
		results[i] = make(chan chunk, 1)
	}
	// A chunk's slot is freed when the writer has written it, so at most
	// `ahead` chunks of predictions exist at once, however slow the store.
	ahead := runtime.GOMAXPROCS(0) + 1
	slots := make(chan struct{}, ahead)
	var failed atomic.Bool // once a write fails, no more chunks are predicted
	go func() {
		for ci := range nchunks {
			if failed.Load() {
				results[ci] <- chunk{err: errors.New("insights: stopped after an earlier failure")}
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				for cj := ci; cj < nchunks; cj++ {
					results[cj] <- chunk{err: ctx.Err()}
				}
				return
			}
			go func(ci int) {
				lo, hi := ci*batch, min((ci+1)*batch, len(a.custs))
				ps := make([]kith.ProfileInsights, 0, hi-lo)
				var purchases []basket.Purchase
				for i := lo; i < hi; i++ {
					traits, p, err := a.predict(f, memo, i, purchases)
					if err != nil {
						results[ci] <- chunk{err: err, slot: true}
						return
					}
					purchases = p
					ps = append(ps, kith.ProfileInsights{ProfileID: a.custs[i].summary.ID, Traits: traits})
				}
				results[ci] <- chunk{ps: ps, slot: true}
			}(ci)
		}
	}()
	written := 0
	var first error
	for ci := range nchunks {
		c := <-results[ci]
		if c.slot {
			<-slots
		}
		if first != nil {
			continue // drain the workers
		}
		if c.err != nil {
			first = c.err
			failed.Store(true)
			continue
		}
		if err := st.WriteInsights(ctx, runID, at, c.ps); err != nil {
			first = fmt.Errorf("insights: write predictions: %w", err)
			failed.Store(true)
			continue
		}
		written += len(c.ps)
	}
	return written, first
}

// Schedule runs insights every interval until ctx ends, the first run one
// interval after start. A run still in progress when the next is due makes
// that one skip.
func (r *Runner) Schedule(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.RunNow(ctx, TriggerSchedule, r.Config); err != nil && kith.ErrorCode(err) != kith.ECONFLICT {
				r.logger().Error("scheduled insight run failed", "err", err)
			}
		}
	}
}
