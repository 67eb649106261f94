package insights

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/kithcdp/kith/btyd"
	"github.com/kithcdp/kith/chart"
)

// Validation compares the purchase-count model, fitted on a calibration
// period, with what the same customers actually did in the holdout period
// after it — the check the BG/NBD and Pareto/NBD papers report, so users
// can judge the model on their own data.
type Validation struct {
	CalibrationEnd string `json:"calibrationEnd"`
	HoldoutEnd     string `json:"holdoutEnd"`
	HoldoutDays    int    `json:"holdoutDays"`
	// Customers is the calibration cohort: customers whose first purchase
	// is on or before the calibration end.
	Customers int `json:"customers"`
	// ActualHoldout is the cohort's repeat purchase-days in the holdout;
	// ForecastHoldout the sum of each customer's conditional expectation.
	ActualHoldout   int     `json:"actualHoldout"`
	ForecastHoldout float64 `json:"forecastHoldout"`
	// ErrorPercent is (forecast − actual) / actual × 100.
	ErrorPercent float64 `json:"errorPercent"`
	// Correlation is Pearson's r between each customer's forecast and
	// actual holdout purchases; MAE their mean absolute difference.
	Correlation float64 `json:"correlation"`
	MAE         float64 `json:"mae"`
	// ByFrequency is the conditional expectation of holdout purchases by
	// calibration frequency (0, 1, …, 6, 7+): mean actual against mean
	// forecast.
	ByFrequency []FrequencyRow `json:"byFrequency"`
	// Tracking is cumulative repeat purchases week by week from the first
	// purchase in the data, actual against the model's expectation.
	Tracking []TrackingPoint `json:"tracking"`
	// Charts are the two figures as SVG documents, by file name.
	Charts map[string]string `json:"charts,omitempty"`
}

// FrequencyRow is one calibration-frequency group.
type FrequencyRow struct {
	Frequency string  `json:"frequency"`
	Customers int     `json:"customers"`
	Actual    float64 `json:"actual"`
	Forecast  float64 `json:"forecast"`
}

// TrackingPoint is the cumulative count at the end of a week.
type TrackingPoint struct {
	Week     int     `json:"week"`
	Actual   int     `json:"actual"`
	Forecast float64 `json:"forecast"`
}

// Validate fits the configured models on purchases up to calibrationEnd and
// compares the purchase-count model's forecast with the holdout up to
// holdoutEnd (both inclusive days). The report carries the fit, the
// comparison and its charts.
func Validate(ctx context.Context, src Source, cfg Config, calibrationEnd, holdoutEnd time.Time) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := btyd.Period{CalibrationEnd: btyd.DayOf(calibrationEnd), HoldoutEnd: btyd.DayOf(holdoutEnd), Unit: cfg.UnitDays}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("insights: validate: %w", err)
	}
	start := time.Now()
	a := newAnalysis(cfg, p)
	rep := newReport(cfg, calibrationEnd)
	if err := a.scan(ctx, src); err != nil {
		return rep, fmt.Errorf("insights: read orders: %w", err)
	}
	a.fillReport(rep)
	f, err := a.fit(rep)
	if err != nil {
		return rep, err
	}
	if f.model == nil {
		return rep, fmt.Errorf("insights: validate: the %s model was not fitted: %s", cfg.Model, rep.Models[cfg.Model].Skipped)
	}
	v, err := a.validation(f.model)
	if err != nil {
		return rep, err
	}
	rep.Validation = v
	rep.Seconds["total"] = time.Since(start).Seconds()
	return rep, nil
}

func (a *analysis) validation(m btyd.Model) (*Validation, error) {
	p := a.period
	horizon := float64(p.HoldoutEnd-p.CalibrationEnd) / p.Unit
	v := &Validation{
		CalibrationEnd: p.CalibrationEnd.Time().Format(time.DateOnly),
		HoldoutEnd:     p.HoldoutEnd.Time().Format(time.DateOnly),
		HoldoutDays:    int(p.HoldoutEnd - p.CalibrationEnd),
		Customers:      len(a.custs),
	}
	const groups = 8 // 0..6 and 7+
	var n [groups]int
	var act, fc [groups]float64
	var sx, sy, sxx, syy, sxy, sae float64
	firsts := map[btyd.Day]int{}
	for _, c := range a.custs {
		s := c.summary
		f := m.ConditionalExpected(s.Customer, horizon)
		y := float64(s.Holdout)
		v.ActualHoldout += s.Holdout
		v.ForecastHoldout += f
		sx, sy, sxx, syy, sxy = sx+f, sy+y, sxx+f*f, syy+y*y, sxy+f*y
		sae += math.Abs(f - y)
		g := min(int(s.X), groups-1)
		n[g]++
		act[g] += y
		fc[g] += f
		firsts[s.First]++
	}
	cnt := float64(len(a.custs))
	if cnt > 0 {
		v.MAE = sae / cnt
		if den := math.Sqrt((cnt*sxx - sx*sx) * (cnt*syy - sy*sy)); den > 0 {
			v.Correlation = (cnt*sxy - sx*sy) / den
		}
	}
	if v.ActualHoldout > 0 {
		v.ErrorPercent = (v.ForecastHoldout - float64(v.ActualHoldout)) / float64(v.ActualHoldout) * 100
	}
	for g := range groups {
		row := FrequencyRow{Frequency: strconv.Itoa(g), Customers: n[g]}
		if g == groups-1 {
			row.Frequency += "+"
		}
		if n[g] > 0 {
			row.Actual, row.Forecast = act[g]/float64(n[g]), fc[g]/float64(n[g])
		}
		v.ByFrequency = append(v.ByFrequency, row)
	}

	// Week by week from the first purchase in the data.
	if len(firsts) > 0 {
		start := p.CalibrationEnd
		for d := range firsts {
			start = min(start, d)
		}
		weeks := int(math.Ceil(float64(p.HoldoutEnd-start) / 7))
		cum := 0
		for w := 1; w <= weeks; w++ {
			end := min(start+btyd.Day(7*w), p.HoldoutEnd)
			for d := start + btyd.Day(7*(w-1)) + 1; d <= end; d++ {
				cum += a.repeatsByDay[d]
			}
			if w == 1 {
				cum += a.repeatsByDay[start]
			}
			var f float64
			for d, k := range firsts {
				if d <= end {
					f += float64(k) * m.Expected(float64(end-d)/p.Unit)
				}
			}
			v.Tracking = append(v.Tracking, TrackingPoint{Week: w, Actual: cum, Forecast: f})
		}
	}
	charts, err := v.charts(a.cfg.Model, int(math.Ceil(float64(p.CalibrationEnd-minFirst(firsts, p.CalibrationEnd))/7)))
	if err != nil {
		return nil, err
	}
	v.Charts = charts
	return v, nil
}

func minFirst(firsts map[btyd.Day]int, def btyd.Day) btyd.Day {
	m := def
	for d := range firsts {
		m = min(m, d)
	}
	return m
}

// modelNames are the models' names as the literature writes them.
var modelNames = map[string]string{ModelBGNBD: "BG/NBD", ModelParetoNBD: "Pareto/NBD"}

// charts draws the tracking and conditional-expectation figures.
func (v *Validation) charts(model string, calWeeks int) (map[string]string, error) {
	out := map[string]string{}
	if n, ok := modelNames[model]; ok {
		model = n
	}
	if len(v.Tracking) > 0 {
		xs := make([]float64, len(v.Tracking))
		ya := make([]float64, len(v.Tracking))
		yf := make([]float64, len(v.Tracking))
		for i, t := range v.Tracking {
			xs[i], ya[i], yf[i] = float64(t.Week), float64(t.Actual), t.Forecast
		}
		svg, err := chart.Line{
			Title:  "Cumulative repeat purchases: actual and " + model,
			XLabel: "Week", YLabel: "Cumulative repeat purchases",
			Series: []chart.Series{{Name: "Actual", X: xs, Y: ya}, {Name: model, X: xs, Y: yf, Dashed: true}},
			Marker: &chart.Marker{X: float64(calWeeks), Label: "end of calibration"},
		}.SVG()
		if err != nil {
			return nil, fmt.Errorf("insights: tracking chart: %w", err)
		}
		out["tracking.svg"] = string(svg)
	}
	cats := make([]string, len(v.ByFrequency))
	act := make([]float64, len(v.ByFrequency))
	fc := make([]float64, len(v.ByFrequency))
	for i, r := range v.ByFrequency {
		cats[i], act[i], fc[i] = r.Frequency, r.Actual, r.Forecast
	}
	svg, err := chart.Bars{
		Title:  "Holdout purchases by calibration frequency",
		XLabel: "Repeat purchases in calibration", YLabel: "Mean purchases in holdout",
		Categories: cats,
		Series:     []chart.BarSeries{{Name: "Actual", Values: act}, {Name: model, Values: fc}},
	}.SVG()
	if err != nil {
		return nil, fmt.Errorf("insights: conditional expectation chart: %w", err)
	}
	out["conditional_expectation.svg"] = string(svg)
	return out, nil
}

// ValidateStore validates on the store's data: the holdout is the last
// holdoutDays days up to the configured analysis date.
func (r *Runner) ValidateStore(ctx context.Context, cfg Config, holdoutDays int) (*Report, error) {
	if holdoutDays <= 0 {
		return nil, fmt.Errorf("insights: holdout must be at least one day, got %d", holdoutDays)
	}
	end := cfg.analysisDay(r.now())
	return Validate(ctx, r.Store.ScanOrders, cfg, end.AddDate(0, 0, -holdoutDays), end)
}
