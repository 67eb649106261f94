package insights

import (
	"fmt"
	"sort"
	"time"

	"github.com/kithcdp/kith/btyd"
	"github.com/kithcdp/kith/rfm"
)

// Model names FitRows accepts beyond the purchase-count models.
const ModelGammaGamma = "gammagamma"

// FitResult is what `kith insights fit` prints: the fitted parameters by
// their usual names and the fit's diagnostics.
type FitResult struct {
	Model  string             `json:"model"`
	Params map[string]float64 `json:"-"`
	btyd.FitInfo
	// Calibration describes the data the model was fitted on.
	CalibrationEnd string  `json:"calibration_end"`
	UnitDays       float64 `json:"unit_days"`
}

// FitRows fits one model to an analyst's orders the way the literature
// prepares them: same-day purchases merged into one, purchases up to and
// including calibrationEnd, the time unit unitDays long. Gamma-Gamma needs
// amounts and uses the mean value of each customer's repeat purchases.
func FitRows(rows []Row, model string, calibrationEnd time.Time, unitDays float64) (FitResult, error) {
	p := btyd.Period{CalibrationEnd: btyd.DayOf(calibrationEnd), Unit: unitDays}
	if err := p.Validate(); err != nil {
		return FitResult{}, err
	}
	purchases := make([]btyd.Purchase, len(rows))
	for i, r := range rows {
		purchases[i] = btyd.Purchase{Customer: r.Customer, At: r.At, Amount: r.Amount}
	}
	ss, err := btyd.SummariseAll(purchases, p)
	if err != nil {
		return FitResult{}, err
	}
	cs := btyd.Customers(ss)
	res := FitResult{Model: model, CalibrationEnd: calibrationEnd.Format(time.DateOnly), UnitDays: unitDays}
	switch model {
	case ModelBGNBD:
		m, info, err := btyd.FitBGNBD(cs)
		if err != nil {
			return res, err
		}
		res.Params, res.FitInfo = m.Params(), info
	case ModelParetoNBD:
		m, info, err := btyd.FitParetoNBD(cs)
		if err != nil {
			return res, err
		}
		res.Params, res.FitInfo = m.Params(), info
	case ModelGammaGamma:
		m, info, err := btyd.FitGammaGamma(cs)
		if err != nil {
			return res, err
		}
		res.Params, res.FitInfo = m.Params(), info
	default:
		return res, fmt.Errorf("insights: unknown model %q (want bgnbd, paretonbd or gammagamma)", model)
	}
	return res, nil
}

// Object returns the result as one flat JSON object: the parameters at the
// top level next to the diagnostics.
func (r FitResult) Object() map[string]any {
	out := map[string]any{
		"model": r.Model, "log_likelihood": r.LogLikelihood, "converged": r.Converged, "status": r.Status,
		"iterations": r.Iterations, "customers": r.Customers, "calibration_end": r.CalibrationEnd, "unit_days": r.UnitDays,
	}
	for k, v := range r.Params {
		out[k] = v
	}
	return out
}

// SegmentTotals is one RFM segment's totals as `kith insights rfm` prints
// them.
type SegmentTotals struct {
	Customers int     `json:"customers"`
	Orders    int     `json:"orders"`
	Revenue   float64 `json:"revenue"`
}

// RFMRows scores an analyst's orders as R's rfm_table_order does: per
// customer, recency in whole days from the last order's date to the
// analysis date, frequency the number of rows, monetary their amount sum.
// It returns the totals per segment name, and the scores by customer.
func RFMRows(rows []Row, analysisDate time.Time, bins int, rules []rfm.Rule) (map[string]SegmentTotals, []rfm.Score, error) {
	type acc struct {
		last    btyd.Day
		orders  int
		revenue float64
	}
	by := map[string]*acc{}
	for _, r := range rows {
		a := by[r.Customer]
		d := btyd.DayOf(r.At)
		if a == nil {
			a = &acc{last: d}
			by[r.Customer] = a
		}
		a.last = max(a.last, d)
		a.orders++
		a.revenue += r.Amount
	}
	ids := make([]string, 0, len(by))
	for id := range by {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	day := btyd.DayOf(analysisDate)
	cs := make([]rfm.Customer, len(ids))
	for i, id := range ids {
		a := by[id]
		cs[i] = rfm.Customer{ID: id, RecencyDays: float64(day - a.last), Frequency: a.orders, Monetary: a.revenue}
	}
	scores, err := rfm.ScoreAll(cs, bins, rules)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]SegmentTotals{}
	for _, s := range rfm.Summarise(scores, rules) {
		out[s.Segment] = SegmentTotals{Customers: s.Customers, Orders: s.Orders, Revenue: s.Revenue}
	}
	return out, scores, nil
}
