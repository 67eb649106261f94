// Package insights turns customers' orders into per-customer predictions —
// churn risk and P(alive), expected purchases, expected order value and
// lifetime value (BG/NBD or Pareto/NBD with Gamma-Gamma), RFM scores and
// segments, next-best and up-sell products — and writes them back to the
// profiles as traits with provenance "predicted".
//
// The models live in btyd, rfm and basket; this package feeds them, from
// the store (every unified profile's Order Completed events) or from an
// analyst's file, records each run with its fitted parameters and
// diagnostics, validates the models on a holdout period and draws the
// validation charts.
package insights

import (
	"fmt"
	"math"
	"time"

	"github.com/kithcdp/kith/rfm"
)

// Model names for the purchase-count model.
const (
	ModelBGNBD     = "bgnbd"
	ModelParetoNBD = "paretonbd"
)

// Config says how a run analyses the orders. The zero value is not valid;
// start from DefaultConfig.
type Config struct {
	// Model is the purchase-count model: ModelBGNBD or ModelParetoNBD.
	Model string `json:"model"`
	// AnalysisDate is the last day of data the run uses (inclusive); zero
	// means today (UTC). Recency and customer age are measured to its end.
	AnalysisDate time.Time `json:"analysisDate,omitzero"`
	// UnitDays is the models' time unit in days (7: weeks, as the
	// literature fits them). Predictions are reported per day horizon
	// whatever the unit.
	UnitDays float64 `json:"unitDays"`
	// HorizonDays is the horizon of expected_purchases_<N>d.
	HorizonDays int `json:"horizonDays"`
	// CLVDays is the horizon of clv_<N>d, summed month by month.
	CLVDays int `json:"clvDays"`
	// AnnualDiscount is the yearly discount rate applied to future value
	// (0.1 = 10%).
	AnnualDiscount float64 `json:"annualDiscount"`
	// RFMBins is the number of score bins (5 = quintiles).
	RFMBins int `json:"rfmBins"`
	// RFMRules are the named segments, first match wins; nil means the
	// rfm package's defaults.
	RFMRules []rfm.Rule `json:"rfmRules,omitempty"`
	// MinSupport, MinConfidence and MinLift select the association rules
	// reported by a run.
	MinSupport    float64 `json:"minSupport"`
	MinConfidence float64 `json:"minConfidence"`
	MinLift       float64 `json:"minLift"`
	// MinCoCount is the fewest baskets a product pair must share to drive
	// a next-best recommendation.
	MinCoCount int `json:"minCoCount"`
	// TopN is how many next-best and up-sell products each customer gets.
	TopN int `json:"topN"`
	// MinCustomers is the fewest customers (and repeat customers) a model
	// needs before it is fitted; below it the model is skipped and the
	// report says why.
	MinCustomers int `json:"minCustomers"`
	// BatchSize is how many profiles' predictions are written per
	// transaction.
	BatchSize int `json:"batchSize"`
}

// DefaultConfig is what `kith serve` and `kith insights run` use unless
// told otherwise.
func DefaultConfig() Config {
	return Config{
		Model:          ModelBGNBD,
		UnitDays:       7,
		HorizonDays:    90,
		CLVDays:        365,
		AnnualDiscount: 0.10,
		RFMBins:        rfm.DefaultBins,
		MinSupport:     0.01,
		MinConfidence:  0.1,
		MinLift:        1,
		MinCoCount:     2,
		TopN:           10,
		MinCustomers:   20,
		BatchSize:      5000,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Model != ModelBGNBD && c.Model != ModelParetoNBD:
		return fmt.Errorf("insights: unknown model %q (want %s or %s)", c.Model, ModelBGNBD, ModelParetoNBD)
	case !(c.UnitDays > 0):
		return fmt.Errorf("insights: unit must be a positive number of days, got %v", c.UnitDays)
	case c.HorizonDays <= 0 || c.CLVDays <= 0:
		return fmt.Errorf("insights: horizons must be positive (expected purchases %d days, CLV %d days)", c.HorizonDays, c.CLVDays)
	case c.AnnualDiscount < 0 || math.IsNaN(c.AnnualDiscount):
		return fmt.Errorf("insights: discount rate %v must not be negative", c.AnnualDiscount)
	case c.RFMBins < 2:
		return fmt.Errorf("insights: RFM needs at least 2 bins, got %d", c.RFMBins)
	case !(c.MinSupport > 0 && c.MinSupport <= 1):
		return fmt.Errorf("insights: min support %v must be in (0, 1]", c.MinSupport)
	case c.MinConfidence < 0 || c.MinConfidence > 1:
		return fmt.Errorf("insights: min confidence %v must be in [0, 1]", c.MinConfidence)
	case c.MinLift < 0:
		return fmt.Errorf("insights: min lift %v must not be negative", c.MinLift)
	case c.TopN <= 0:
		return fmt.Errorf("insights: top N %d must be positive", c.TopN)
	case c.BatchSize <= 0:
		return fmt.Errorf("insights: batch size %d must be positive", c.BatchSize)
	}
	if c.RFMRules != nil {
		if len(c.RFMRules) == 0 {
			return fmt.Errorf("insights: the RFM segment list is empty")
		}
		// Scoring one customer checks the rules against the bins.
		if _, err := rfm.ScoreAll([]rfm.Customer{{ID: "check", Frequency: 1}}, c.RFMBins, c.RFMRules); err != nil {
			return fmt.Errorf("insights: RFM segments: %w", err)
		}
	}
	return nil
}

// analysisDay returns the last day of data, defaulting to today.
func (c Config) analysisDay(now time.Time) time.Time {
	d := c.AnalysisDate
	if d.IsZero() {
		d = now
	}
	y, m, day := d.UTC().Date()
	return time.Date(y, m, day, 0, 0, 0, 0, time.UTC)
}
