// Package rfm owns RFM (recency, frequency, monetary) scoring and the named
// customer segments built on it. It reproduces the R package rfm 0.3.0
// (rfm_table_order, rfm_segment, rfm_segment_summary): each of recency,
// frequency and monetary value is cut into bins at R's type-7 sample
// quantiles, the three scores are combined as R*100 + F*10 + M, and an
// ordered list of score ranges names each customer's segment, first match
// winning and "Others" for no match.
//
// The binning rule, as read in rfm 0.3.0 (R/utils.R: bins, bins_lower,
// bins_upper; R/rfm-table-transaction.R: rfm_prep_bins), for n bins over
// the values x of one measure:
//
//	probs  = seq(0, 1, length.out = n+1)          // k*(1/n), k = 0..n
//	breaks = quantile(x, probs)[2..n] + 1         // type 7, inner n-1 only
//	lower  = c(min(x), breaks)
//	upper  = c(breaks, max(x) + 1)
//	for i in 1..n: score[lower[i] <= x & x < upper[i]] <- i
//
// Frequency and monetary take score i; recency takes n+1-i, so the fewest
// days since the last order score highest. The package does not call cut():
// the intervals are half-open [lower, upper), and the "+ 1" shifts every
// inner break one unit up, so for whole-number data (days, order counts) a
// value equal to a quantile falls in the lower bin. When quantiles tie, the
// repeated break makes an empty interval and its score is simply never
// given (for example frequency scores 1, 3, 4, 5 with no 2). The
// probabilities are float64 products k*(1/n), as seq() makes them, so the
// 60% point is 0.6000000000000001; with 11 values that moves a quantile
// between 3 and 4 up to 3 + 2^-50, and a value of 4 then scores one lower
// than with an exact 0.6. This package keeps R's arithmetic, artifacts
// included.
//
// Where this differs from a plain reading of "quantile breaks plus one,
// half-open intervals": there is no cut() call and no renumbering of empty
// bins (above); the outer bounds are min(x) and max(x)+1; ScoreAll returns
// an error where R would stop or leave a score NA (NaN or infinite input,
// values past 2^53 where max(x)+1 == max(x)); and Summarise lists segments
// in rule order rather than rfm_segment_summary's alphabetical order.
//
// Recency days are the caller's to compute: rfm 0.3.0 uses
// as.numeric(analysis_date - date_most_recent, units = "days"), which is a
// whole number for R Date values and may be fractional for date-times.
package rfm

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// DefaultBins is the number of bins per score that rfm 0.3.0 uses by
// default, and the value ScoreAll uses when it is passed 0.
const DefaultBins = 5

// Others is the segment of a customer whose scores match no rule.
const Others = "Others"

// Errors returned by ScoreAll, wrapped with the offending detail; test for
// them with errors.Is.
var (
	// ErrInvalidBins reports a bin count below 2.
	ErrInvalidBins = errors.New("rfm: invalid number of bins")
	// ErrInvalidRule reports a segment rule without a name or with a
	// score range that is empty or outside 1..bins.
	ErrInvalidRule = errors.New("rfm: invalid segment rule")
	// ErrInvalidCustomer reports a customer whose inputs cannot be scored:
	// a NaN or infinite recency or monetary value, or a negative frequency.
	ErrInvalidCustomer = errors.New("rfm: invalid customer")
)

// Customer is one customer's order history summary, the input to scoring.
type Customer struct {
	// ID identifies the customer; it is carried through to the Score.
	ID string
	// RecencyDays is the number of days from the customer's last order to
	// the analysis date; it may be fractional.
	RecencyDays float64
	// Frequency is the number of orders. rfm_table_order counts the input
	// rows of the customer (dplyr::n()), so pass one row per order.
	Frequency int
	// Monetary is the customer's revenue sum.
	Monetary float64
}

// Score is a customer's RFM scores and segment, with the raw inputs they
// were computed from.
type Score struct {
	// ID is the customer's ID.
	ID string
	// RecencyDays is the customer's raw recency in days.
	RecencyDays float64
	// Orders is the customer's raw order count (Customer.Frequency).
	Orders int
	// Revenue is the customer's raw revenue sum (Customer.Monetary).
	Revenue float64
	// Recency is the recency score: bins for the most recent customers
	// down to 1 for the least recent.
	Recency int
	// Frequency is the frequency score, 1 for the fewest orders up to bins.
	Frequency int
	// Monetary is the monetary score, 1 for the least revenue up to bins.
	Monetary int
	// Combined is Recency*100 + Frequency*10 + Monetary, rfm 0.3.0's
	// rfm_score; it reads as three digits only when bins is at most 9.
	Combined int
	// Segment is the name of the first rule the scores match, or Others.
	Segment string
}

// Rule names a segment by inclusive score ranges: a customer is in the
// segment when each of its scores lies within [min, max] of the matching
// range, as dplyr::between does in rfm_segment.
type Rule struct {
	// Name is the segment's name. Several rules may share a name; their
	// customers are summarised together.
	Name string `json:"name"`
	// R is the inclusive {min, max} range of the recency score.
	R [2]int `json:"r"`
	// F is the inclusive {min, max} range of the frequency score.
	F [2]int `json:"f"`
	// M is the inclusive {min, max} range of the monetary score.
	M [2]int `json:"m"`
}

// Matches reports whether recency, frequency and monetary scores r, f and
// m all lie within the rule's inclusive ranges.
func (rl Rule) Matches(r, f, m int) bool {
	return rl.R[0] <= r && r <= rl.R[1] &&
		rl.F[0] <= f && f <= rl.F[1] &&
		rl.M[0] <= m && m <= rl.M[1]
}

// DefaultRules returns, in matching order, the ten segments of rfm
// 0.3.0's introduction vignette (vignettes/rfm-introduction.Rmd), which
// are meant for 5 bins. The slice is new on every call and may be changed.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "Champions", R: [2]int{5, 5}, F: [2]int{5, 5}, M: [2]int{5, 5}},
		{Name: "Potential Loyalist", R: [2]int{3, 5}, F: [2]int{3, 5}, M: [2]int{2, 5}},
		{Name: "Loyal Customers", R: [2]int{2, 4}, F: [2]int{2, 4}, M: [2]int{2, 4}},
		{Name: "Promising", R: [2]int{3, 4}, F: [2]int{1, 3}, M: [2]int{3, 5}},
		{Name: "New Customers", R: [2]int{4, 5}, F: [2]int{1, 3}, M: [2]int{1, 5}},
		{Name: "Can't Lose Them", R: [2]int{1, 2}, F: [2]int{3, 4}, M: [2]int{4, 5}},
		{Name: "At Risk", R: [2]int{1, 2}, F: [2]int{2, 5}, M: [2]int{4, 5}},
		{Name: "Need Attention", R: [2]int{1, 3}, F: [2]int{3, 5}, M: [2]int{3, 5}},
		{Name: "About To Sleep", R: [2]int{2, 3}, F: [2]int{1, 3}, M: [2]int{1, 4}},
		{Name: "Lost", R: [2]int{1, 1}, F: [2]int{1, 5}, M: [2]int{1, 5}},
	}
}

// Segment returns the name of the first rule in rules that the scores r, f
// and m match, or Others when none does. Like rfm_segment, it assigns each
// customer at most once, so earlier rules take precedence.
func Segment(rules []Rule, r, f, m int) string {
	for _, rl := range rules {
		if rl.Matches(r, f, m) {
			return rl.Name
		}
	}
	return Others
}

// Quantile7 returns R's type-7 sample quantile (the default of
// stats::quantile) of sorted, which must be in ascending order, at
// probability p: with h = 1 + (n-1)p, the linear interpolation between the
// order statistics at floor(h) and ceil(h), 1-based. The arithmetic
// follows R's quantile.default step by step (no fused multiply-add), so
// results agree with R's bit for bit wherever R does not fuse either, as on
// x86-64. Like R, p may overshoot [0, 1] by 100 machine epsilons and
// is then clamped; Quantile7 returns NaN for an empty slice, a NaN p or a
// p further outside [0, 1].
func Quantile7(sorted []float64, p float64) float64 {
	const eps = 100 * 2.220446049250313e-16 // 100 * .Machine$double.eps
	n := len(sorted)
	if n == 0 || math.IsNaN(p) || p < -eps || p > 1+eps {
		return math.NaN()
	}
	p = math.Max(0, math.Min(1, p))
	// index <- 1 + (n - 1) * probs; the float64 conversion keeps the
	// product rounded on its own (no fused multiply-add), as R computes it.
	index := 1 + float64(float64(n-1)*p)
	lo := math.Floor(index)
	hi := math.Ceil(index)
	qs := sorted[int(lo)-1]
	if x := sorted[int(hi)-1]; index > lo && x != qs {
		h := index - lo
		qs = float64((1-h)*qs) + float64(h*x)
	}
	return qs
}

// ScoreAll scores every customer against the others with bins bins per
// score (0 means DefaultBins) and names its segment by rules (nil means
// DefaultRules, which suit 5 bins only). The scores are in the order of
// cs; empty input gives empty output. It returns an error wrapping
// ErrInvalidBins, ErrInvalidRule or ErrInvalidCustomer for bad input.
func ScoreAll(cs []Customer, bins int, rules []Rule) ([]Score, error) {
	if bins == 0 {
		bins = DefaultBins
	}
	if bins < 2 {
		return nil, fmt.Errorf("%w: %d, need at least 2", ErrInvalidBins, bins)
	}
	if rules == nil {
		rules = DefaultRules()
	}
	if err := checkRules(rules, bins); err != nil {
		return nil, err
	}
	recency := make([]float64, len(cs))
	frequency := make([]float64, len(cs))
	monetary := make([]float64, len(cs))
	for i, c := range cs {
		switch {
		case math.IsNaN(c.RecencyDays) || math.IsInf(c.RecencyDays, 0):
			return nil, fmt.Errorf("%w: customer %d (%q): recency days is %v", ErrInvalidCustomer, i, c.ID, c.RecencyDays)
		case math.IsNaN(c.Monetary) || math.IsInf(c.Monetary, 0):
			return nil, fmt.Errorf("%w: customer %d (%q): monetary value is %v", ErrInvalidCustomer, i, c.ID, c.Monetary)
		case c.Frequency < 0:
			return nil, fmt.Errorf("%w: customer %d (%q): frequency is negative (%d)", ErrInvalidCustomer, i, c.ID, c.Frequency)
		}
		recency[i] = c.RecencyDays
		frequency[i] = float64(c.Frequency)
		monetary[i] = c.Monetary
	}
	rs, err := scoreValues(recency, bins, true)
	if err != nil {
		return nil, fmt.Errorf("recency: %w", err)
	}
	fs, err := scoreValues(frequency, bins, false)
	if err != nil {
		return nil, fmt.Errorf("frequency: %w", err)
	}
	ms, err := scoreValues(monetary, bins, false)
	if err != nil {
		return nil, fmt.Errorf("monetary: %w", err)
	}
	out := make([]Score, len(cs))
	for i, c := range cs {
		out[i] = Score{
			ID:          c.ID,
			RecencyDays: c.RecencyDays,
			Orders:      c.Frequency,
			Revenue:     c.Monetary,
			Recency:     rs[i],
			Frequency:   fs[i],
			Monetary:    ms[i],
			Combined:    rs[i]*100 + fs[i]*10 + ms[i],
			Segment:     Segment(rules, rs[i], fs[i], ms[i]),
		}
	}
	return out, nil
}

// checkRules rejects rules without a name or with a range that is empty or
// reaches outside 1..bins.
func checkRules(rules []Rule, bins int) error {
	for i, rl := range rules {
		if rl.Name == "" {
			return fmt.Errorf("%w: rule %d has no name", ErrInvalidRule, i)
		}
		for _, rg := range []struct {
			score string
			r     [2]int
		}{{"R", rl.R}, {"F", rl.F}, {"M", rl.M}} {
			if rg.r[0] < 1 || rg.r[1] > bins || rg.r[0] > rg.r[1] {
				return fmt.Errorf("%w: rule %d (%q): %s range %d..%d is not within 1..%d",
					ErrInvalidRule, i, rl.Name, rg.score, rg.r[0], rg.r[1], bins)
			}
		}
	}
	return nil
}

// Breaks returns the lower and upper bounds of the bins intervals that
// rfm 0.3.0 cuts values into (bins_lower and bins_upper of R/utils.R):
// lower is the minimum followed by the type-7 quantiles at k/bins,
// k = 1..bins-1, each plus one; upper is those same inner breaks followed
// by the maximum plus one. Interval i is [lower[i], upper[i]). values need
// not be sorted; Breaks returns nil slices for empty values or bins < 2.
func Breaks(values []float64, bins int) (lower, upper []float64) {
	if len(values) == 0 || bins < 2 {
		return nil, nil
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	// seq(0, 1, length.out = bins+1) is c(0, (1:(bins-1)) * by, 1) with
	// by = (1 - 0) / bins; only the inner probabilities are kept.
	by := 1 / float64(bins)
	inner := make([]float64, bins-1)
	for k := range inner {
		inner[k] = Quantile7(sorted, float64(float64(k+1)*by)) + 1
	}
	lower = append([]float64{sorted[0]}, inner...)
	upper = append(inner, sorted[len(sorted)-1]+1)
	return lower, upper
}

// scoreValues bins values as rfm_prep_bins does: value v gets score i+1
// (or bins-i when descending) for the last interval i with
// lower[i] <= v < upper[i]. Every finite value is covered unless it is so
// large that adding one to the maximum does not change it.
func scoreValues(values []float64, bins int, descending bool) ([]int, error) {
	lower, upper := Breaks(values, bins)
	scores := make([]int, len(values))
	for j, v := range values {
		for i := range bins {
			if v >= lower[i] && v < upper[i] {
				if descending {
					scores[j] = bins - i
				} else {
					scores[j] = i + 1
				}
			}
		}
		if scores[j] == 0 {
			// R leaves the score NA here; refuse rather than return it.
			return nil, fmt.Errorf("%w: value %v is too large to bin (max + 1 == max)", ErrInvalidCustomer, v)
		}
	}
	return scores, nil
}

// SegmentSummary is the rfm_segment_summary row of one segment: how many
// customers it holds and their orders and revenue.
type SegmentSummary struct {
	// Segment is the segment's name.
	Segment string
	// Customers is the number of customers in the segment.
	Customers int
	// Orders is the sum of the customers' order counts.
	Orders int
	// Revenue is the sum of the customers' revenue.
	Revenue float64
}

// Summarise totals scores by segment. Segments come in the order their
// names first appear in rules (nil means DefaultRules), then any other
// names found in scores in order of appearance, then Others; segments
// with no customer are left out, as rfm_segment_summary leaves them out.
// Unlike rfm_segment_summary it does not sort segments alphabetically and
// does not add the rounded average order value (Revenue / Orders).
func Summarise(scores []Score, rules []Rule) []SegmentSummary {
	if rules == nil {
		rules = DefaultRules()
	}
	type acc struct {
		SegmentSummary
		comp float64 // Neumaier compensation for Revenue
	}
	byName := map[string]*acc{}
	var order []string
	add := func(name string) {
		if _, ok := byName[name]; !ok && name != Others {
			byName[name] = &acc{SegmentSummary: SegmentSummary{Segment: name}}
			order = append(order, name)
		}
	}
	for _, rl := range rules {
		add(rl.Name)
	}
	for _, s := range scores {
		add(s.Segment)
	}
	byName[Others] = &acc{SegmentSummary: SegmentSummary{Segment: Others}}
	order = append(order, Others)
	for _, s := range scores {
		a := byName[s.Segment]
		a.Customers++
		a.Orders += s.Orders
		// R's sum() accumulates in long double; compensated summation
		// keeps float64 totals as close to the exact sum.
		t := a.Revenue + s.Revenue
		if math.Abs(a.Revenue) >= math.Abs(s.Revenue) {
			a.comp += (a.Revenue - t) + s.Revenue
		} else {
			a.comp += (s.Revenue - t) + a.Revenue
		}
		a.Revenue = t
	}
	out := make([]SegmentSummary, 0, len(order))
	for _, name := range order {
		if a := byName[name]; a.Customers > 0 {
			a.Revenue += a.comp
			out = append(out, a.SegmentSummary)
		}
	}
	return out
}
