package rfm

import (
	"bufio"
	"errors"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The expected values below are worked out by hand from R's definitions:
// type-7 quantile index h = 1 + (n-1)p (1-based), value
// (1-frac(h))*x[floor h] + frac(h)*x[ceil h]; breaks = quantile + 1 at
// p = k/5; intervals [lower, upper).

// fifth is a variable so that 3*fifth is float64 arithmetic, as R's
// seq(0, 1, length.out = 6) computes it, not an exact Go constant.
var fifth = 1.0 / 5

func TestQuantile7(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
		tol    float64
	}{
		// h = 1 + 4*0.2 = 1.8: 0.2*1 + 0.8*2.
		{"interpolated", []float64{1, 2, 3, 4, 10}, 0.2, 1.8, 1e-12},
		// h = 1 + 4*0.8 = 4.2: 0.8*4 + 0.2*10.
		{"interpolated upper tail", []float64{1, 2, 3, 4, 10}, 0.8, 5.2, 1e-12},
		// h = 2.5 between 2 and 3.
		{"median of even count", []float64{1, 2, 3, 4}, 0.5, 2.5, 0},
		// h = 3 exactly: the third order statistic.
		{"on an order statistic", []float64{1, 2, 3, 4, 10}, 0.5, 3, 0},
		{"p = 0 is the minimum", []float64{-3, 2, 8}, 0, -3, 0},
		{"p = 1 is the maximum", []float64{-3, 2, 8}, 1, 8, 0},
		{"single value", []float64{7}, 0.37, 7, 0},
		// h = 2.5 between two equal values: no interpolation.
		{"tied neighbours", []float64{2, 2, 2, 5}, 0.5, 2, 0},
		// R clamps an overshoot of up to 100 machine epsilons.
		{"slight overshoot is clamped", []float64{1, 9}, 1 + 1e-15, 9, 0},
		{"empty", nil, 0.5, nan, 0},
		{"p below 0", []float64{1, 2}, -0.1, nan, 0},
		{"p above 1", []float64{1, 2}, 1.1, nan, 0},
		{"p NaN", []float64{1, 2}, nan, nan, 0},
		// seq(0, 1, length.out = 6)[4] is 3*0.2 = 0.6000000000000001, so
		// with n = 11 the index is 1 + 10*0.6000000000000001 = 7 + 2^-50
		// and R interpolates 2^-50 of the way from 3 to 4: 3 + 2^-50,
		// where the literal 0.6 would give 3 exactly (next case).
		{"R's seq() probability", []float64{0, 0, 1, 2, 3, 3, 3, 4, 4, 5, 5}, 3 * fifth, 3 + 0x1p-50, 0},
		{"literal probability", []float64{0, 0, 1, 2, 3, 3, 3, 4, 4, 5, 5}, 0.6, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Quantile7(tt.sorted, tt.p)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Fatalf("Quantile7 = %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tt.want) > tt.tol {
				t.Fatalf("Quantile7 = %.17g, want %.17g (±%g)", got, tt.want, tt.tol)
			}
		})
	}
}

// TestQuantile7MatchesR compares Quantile7, bit for bit, with R 4.2.2's
// quantile(x, seq(0, 1, length.out = bins + 1)) on the 40 random vectors
// of testdata/r_quantile7.tsv (values and results in exact hex notation).
// The probabilities are built as seq() builds them: 0, k*(1/bins), 1.
func TestQuantile7MatchesR(t *testing.T) {
	f, err := os.Open("testdata/r_quantile7.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hex := func(s string) []float64 {
		var out []float64
		for _, field := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(field, 64)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	rows := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		fields := strings.Split(sc.Text(), "\t")
		sorted := hex(fields[0])
		slices.Sort(sorted)
		bins, err := strconv.Atoi(fields[1])
		if err != nil {
			t.Fatal(err)
		}
		want := hex(fields[2])
		by := 1 / float64(bins)
		for k, w := range want {
			p := float64(k) * by
			if k == bins {
				p = 1
			}
			if got := Quantile7(sorted, p); got != w {
				t.Errorf("row %d, p = %d/%d: Quantile7 = %x, R gives %x", rows+1, k, bins, got, w)
			}
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows != 40 {
		t.Fatalf("read %d rows, want 40", rows)
	}
}

func TestBreaks(t *testing.T) {
	tests := []struct {
		name         string
		values       []float64
		lower, upper []float64
	}{
		// n = 6: h = 2, 3, 4, 5 exactly, so quantiles 2, 3, 4, 5.
		{"whole numbers", []float64{6, 5, 4, 3, 2, 1},
			[]float64{1, 3, 4, 5, 6}, []float64{3, 4, 5, 6, 7}},
		// n = 10: quantiles 1, 1, 1.4, 2.2 (h = 2.8, 4.6, 6.4, 8.2).
		{"duplicate quantiles", []float64{1, 1, 1, 1, 1, 1, 2, 2, 3, 10},
			[]float64{1, 2, 2, 2.4, 3.2}, []float64{2, 2, 2.4, 3.2, 11}},
		{"single value", []float64{4},
			[]float64{4, 5, 5, 5, 5}, []float64{5, 5, 5, 5, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lower, upper := Breaks(tt.values, 5)
			if !approxEqual(lower, tt.lower, 1e-12) || !approxEqual(upper, tt.upper, 1e-12) {
				t.Fatalf("Breaks = %v, %v; want %v, %v", lower, upper, tt.lower, tt.upper)
			}
		})
	}
	if l, u := Breaks(nil, 5); l != nil || u != nil {
		t.Errorf("Breaks(nil) = %v, %v; want nil, nil", l, u)
	}
}

// TestBreaksMtcars reproduces rfm 0.3.0's own expectation
// (tests/testthat/test-utils.R): bins(mtcars, "mpg", 5) is
// c(16.20, 18.92, 22.00, 25.08), checked there with expect_equal's
// tolerance, and the outer bounds are min(mpg) = 10.4 and max(mpg)+1.
func TestBreaksMtcars(t *testing.T) {
	mpg := readMtcarsMPG(t)
	if len(mpg) != 32 {
		t.Fatalf("read %d mpg values, want 32", len(mpg))
	}
	lower, upper := Breaks(mpg, 5)
	want := []float64{16.20, 18.92, 22.00, 25.08}
	if !approxEqual(lower[1:], want, 1.5e-8) || !approxEqual(upper[:4], want, 1.5e-8) {
		t.Errorf("inner breaks = %v / %v, want %v", lower[1:], upper[:4], want)
	}
	if !approxEqual([]float64{lower[0], upper[4]}, []float64{10.4, 34.9}, 1.5e-8) {
		t.Errorf("outer bounds = %v, %v; want 10.4, 34.9", lower[0], upper[4])
	}
}

func TestScoreAll(t *testing.T) {
	// Recency sorted 0 1 3 7 10 10 14 30 45 100: quantiles 2.6, 8.8, 11.6,
	// 33, so intervals [0,3.6) [3.6,9.8) [9.8,12.6) [12.6,34) [34,101)
	// scoring 5, 4, 3, 2, 1.
	// Frequency sorted 1 1 1 1 1 1 2 2 3 10: intervals [1,2) [2,2)
	// [2,2.4) [2.4,3.2) [3.2,11): 1 scores 1, 2 scores 3 (the repeated
	// break leaves score 2 empty), 3 scores 4, 10 scores 5.
	// Monetary sorted 5 10 20 20.5 21 30 50 60 80 500: quantiles 18, 20.8,
	// 38, 64, intervals [5,19) [19,21.8) [21.8,39) [39,65) [65,501): 21
	// scores 2 although it is above the 40% quantile, because of the +1.
	cs := []Customer{
		{"c0", 3, 2, 50},
		{"c1", 10, 1, 20},
		{"c2", 10, 10, 500},
		{"c3", 0, 1, 10},
		{"c4", 45, 3, 80},
		{"c5", 7, 1, 20.5},
		{"c6", 30, 1, 21},
		{"c7", 1, 2, 60},
		{"c8", 100, 1, 5},
		{"c9", 14, 1, 30},
	}
	want := []struct {
		r, f, m int
		segment string
	}{
		{5, 3, 4, "Potential Loyalist"},
		{3, 1, 2, "About To Sleep"},
		{3, 5, 5, "Potential Loyalist"},
		{5, 1, 1, "New Customers"},
		{1, 4, 5, "Can't Lose Them"},
		{4, 1, 2, "New Customers"},
		{2, 1, 2, "About To Sleep"},
		{5, 3, 4, "Potential Loyalist"},
		{1, 1, 1, "Lost"},
		{2, 1, 3, "About To Sleep"},
	}
	got, err := ScoreAll(cs, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cs) {
		t.Fatalf("got %d scores, want %d", len(got), len(cs))
	}
	for i, s := range got {
		w := want[i]
		c := cs[i]
		if s.ID != c.ID || s.RecencyDays != c.RecencyDays || s.Orders != c.Frequency || s.Revenue != c.Monetary {
			t.Errorf("%s: raw inputs not carried: %+v", c.ID, s)
		}
		if s.Recency != w.r || s.Frequency != w.f || s.Monetary != w.m {
			t.Errorf("%s: scores R%d F%d M%d, want R%d F%d M%d", c.ID, s.Recency, s.Frequency, s.Monetary, w.r, w.f, w.m)
		}
		if combined := w.r*100 + w.f*10 + w.m; s.Combined != combined {
			t.Errorf("%s: combined %d, want %d", c.ID, s.Combined, combined)
		}
		if s.Segment != w.segment {
			t.Errorf("%s: segment %q, want %q", c.ID, s.Segment, w.segment)
		}
	}

	sum := Summarise(got, nil)
	wantSum := []SegmentSummary{
		{"Potential Loyalist", 3, 14, 610},
		{"New Customers", 2, 2, 30.5},
		{"Can't Lose Them", 1, 3, 80},
		{"About To Sleep", 3, 3, 71},
		{"Lost", 1, 1, 5},
	}
	if !slices.Equal(sum, wantSum) {
		t.Errorf("Summarise = %+v\nwant %+v", sum, wantSum)
	}
}

func TestScoreAllTiesAtBreaks(t *testing.T) {
	// Values 1..6 have quantiles 2, 3, 4, 5 exactly, so breaks 3, 4, 5, 6:
	// the value 2, equal to the 20% quantile, stays in the lowest bin, and
	// the value 3, equal to a break, opens the next one.
	var cs []Customer
	for v := 1; v <= 6; v++ {
		cs = append(cs, Customer{ID: strconv.Itoa(v), RecencyDays: float64(v), Frequency: v, Monetary: float64(v)})
	}
	got, err := ScoreAll(cs, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantAsc := []int{1, 1, 2, 3, 4, 5}
	for i, s := range got {
		if s.Frequency != wantAsc[i] || s.Monetary != wantAsc[i] {
			t.Errorf("value %d: F%d M%d, want %d", i+1, s.Frequency, s.Monetary, wantAsc[i])
		}
		// Recency is reversed: the fewest days score highest.
		if s.Recency != 6-wantAsc[i] {
			t.Errorf("value %d: R%d, want %d", i+1, s.Recency, 6-wantAsc[i])
		}
	}
}

func TestScoreAllRSeqArtifact(t *testing.T) {
	// Eleven customers with order counts 0 0 1 2 3 3 3 4 4 5 5: R puts the
	// 60% quantile at 3 + 2^-50 (see TestQuantile7), so the break is
	// 4 + 2^-50 and a count of 4 scores 3, not 4 as it would with 4 + 0.
	counts := []int{5, 3, 3, 4, 0, 4, 1, 5, 3, 2, 0}
	cs := make([]Customer, len(counts))
	for i, n := range counts {
		cs[i] = Customer{ID: strconv.Itoa(i), Frequency: n}
	}
	got, err := ScoreAll(cs, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Breaks 2, 4, 4+2^-50, 5 (quantiles 1, 3, 3+2^-50, 4): 0,1 → 1;
	// 2,3 → 2; 4 → 3; 5 → 5 (interval [4+2^-50, 5) holds nothing).
	want := map[int]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 5}
	for i, s := range got {
		if s.Frequency != want[counts[i]] {
			t.Errorf("count %d: F%d, want %d", counts[i], s.Frequency, want[counts[i]])
		}
	}
}

func TestScoreAllSingleCustomer(t *testing.T) {
	// One value: every break is value+1, so it falls in the first interval.
	got, err := ScoreAll([]Customer{{"only", 12, 3, 99}}, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := got[0]
	if s.Recency != 5 || s.Frequency != 1 || s.Monetary != 1 || s.Combined != 511 || s.Segment != "New Customers" {
		t.Errorf("got %+v, want R5 F1 M1 511 New Customers", s)
	}
}

func TestScoreAllEmpty(t *testing.T) {
	got, err := ScoreAll(nil, 0, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("ScoreAll(nil) = %v, %v; want empty, nil", got, err)
	}
	if sum := Summarise(got, nil); len(sum) != 0 {
		t.Errorf("Summarise(empty) = %v, want empty", sum)
	}
}

func TestScoreAllCustomRules(t *testing.T) {
	// Three bins: p = 1/3 and 2/3 give h = 2 and 3 exactly for n = 4, so
	// the quantiles are the 2nd and 3rd values and the breaks those +1.
	// Recency 0 10 20 30 → breaks 11, 21 → 3 3 2 1.
	// Frequency 1 2 3 4 → breaks 3, 4 → 1 1 2 3.
	// Monetary 100..400 → breaks 201, 301 → 1 1 2 3.
	rules := []Rule{
		{Name: "Best", R: [2]int{3, 3}, F: [2]int{3, 3}, M: [2]int{3, 3}},
		{Name: "Recent", R: [2]int{2, 3}, F: [2]int{1, 3}, M: [2]int{1, 3}},
		{Name: "Never", R: [2]int{1, 1}, F: [2]int{3, 3}, M: [2]int{3, 3}},
	}
	cs := []Customer{
		{"a", 0, 4, 400},
		{"b", 10, 3, 300},
		{"c", 20, 2, 200},
		{"d", 30, 1, 100},
	}
	got, err := ScoreAll(cs, 3, rules)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		combined int
		segment  string
	}{{333, "Best"}, {322, "Recent"}, {211, "Recent"}, {111, Others}}
	for i, s := range got {
		if s.Combined != want[i].combined || s.Segment != want[i].segment {
			t.Errorf("%s: %d %q, want %d %q", s.ID, s.Combined, s.Segment, want[i].combined, want[i].segment)
		}
	}
	sum := Summarise(got, rules)
	wantSum := []SegmentSummary{
		{"Best", 1, 4, 400},
		{"Recent", 2, 5, 500},
		{Others, 1, 1, 100},
	}
	if !slices.Equal(sum, wantSum) {
		t.Errorf("Summarise = %+v\nwant %+v", sum, wantSum)
	}
}

func TestScoreAllErrors(t *testing.T) {
	ok := []Customer{{"a", 1, 1, 1}, {"b", 2, 2, 2}}
	tests := []struct {
		name  string
		cs    []Customer
		bins  int
		rules []Rule
		want  error
	}{
		{"one bin", ok, 1, nil, ErrInvalidBins},
		{"negative bins", ok, -5, nil, ErrInvalidBins},
		{"default rules need 5 bins", ok, 3, nil, ErrInvalidRule},
		{"range above bins", ok, 5, []Rule{{Name: "x", R: [2]int{1, 6}, F: [2]int{1, 5}, M: [2]int{1, 5}}}, ErrInvalidRule},
		{"range below 1", ok, 5, []Rule{{Name: "x", R: [2]int{1, 5}, F: [2]int{0, 5}, M: [2]int{1, 5}}}, ErrInvalidRule},
		{"empty range", ok, 5, []Rule{{Name: "x", R: [2]int{1, 5}, F: [2]int{1, 5}, M: [2]int{4, 3}}}, ErrInvalidRule},
		{"unnamed rule", ok, 5, []Rule{{R: [2]int{1, 5}, F: [2]int{1, 5}, M: [2]int{1, 5}}}, ErrInvalidRule},
		{"bad rule with no customers", nil, 5, []Rule{{Name: "x"}}, ErrInvalidRule},
		{"NaN recency", []Customer{{"a", math.NaN(), 1, 1}}, 5, nil, ErrInvalidCustomer},
		{"NaN monetary", []Customer{{"a", 1, 1, math.NaN()}}, 5, nil, ErrInvalidCustomer},
		{"infinite monetary", []Customer{{"a", 1, 1, math.Inf(1)}}, 5, nil, ErrInvalidCustomer},
		{"negative frequency", []Customer{{"a", 1, -1, 1}}, 5, nil, ErrInvalidCustomer},
		// max + 1 == max: R would leave the score NA.
		{"too large to bin", []Customer{{"a", 1, 1, 1e17}, {"b", 1, 1, 2e17}}, 5, nil, ErrInvalidCustomer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ScoreAll(tt.cs, tt.bins, tt.rules)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ScoreAll error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("ScoreAll returned %v with an error", got)
			}
		})
	}
}

func TestDefaultSegmentsReachable(t *testing.T) {
	// One score triple per default segment that no earlier rule takes,
	// checked by hand against the table in rule order.
	tests := []struct {
		r, f, m int
		want    string
	}{
		{5, 5, 5, "Champions"},
		{3, 3, 2, "Potential Loyalist"},
		{2, 2, 2, "Loyal Customers"},
		{3, 1, 3, "Promising"},
		{4, 1, 1, "New Customers"},
		{1, 3, 4, "Can't Lose Them"},
		{1, 5, 5, "At Risk"},
		{1, 3, 3, "Need Attention"},
		{2, 1, 1, "About To Sleep"},
		{1, 1, 1, "Lost"},
	}
	rules := DefaultRules()
	seen := map[string]bool{}
	for _, tt := range tests {
		if got := Segment(rules, tt.r, tt.f, tt.m); got != tt.want {
			t.Errorf("Segment(%d,%d,%d) = %q, want %q", tt.r, tt.f, tt.m, got, tt.want)
		}
		seen[tt.want] = true
	}
	for _, rl := range rules {
		if !seen[rl.Name] {
			t.Errorf("default segment %q not covered", rl.Name)
		}
	}
}

func TestSegmentFirstMatchWins(t *testing.T) {
	tests := []struct {
		r, f, m int
		want    string
		alsoIn  string // a later rule the scores match too
	}{
		{5, 5, 5, "Champions", "Potential Loyalist"},
		{3, 3, 3, "Potential Loyalist", "Loyal Customers"},
		{4, 2, 4, "Loyal Customers", "Promising"},
		{4, 1, 3, "Promising", "New Customers"},
		{1, 3, 5, "Can't Lose Them", "At Risk"},
		{1, 5, 3, "Need Attention", "Lost"},
		{2, 1, 3, "About To Sleep", ""},
	}
	rules := DefaultRules()
	for _, tt := range tests {
		if got := Segment(rules, tt.r, tt.f, tt.m); got != tt.want {
			t.Errorf("Segment(%d,%d,%d) = %q, want %q", tt.r, tt.f, tt.m, got, tt.want)
		}
		if tt.alsoIn == "" {
			continue
		}
		i := slices.IndexFunc(rules, func(rl Rule) bool { return rl.Name == tt.alsoIn })
		if !rules[i].Matches(tt.r, tt.f, tt.m) {
			t.Errorf("(%d,%d,%d) should also match %q", tt.r, tt.f, tt.m, tt.alsoIn)
		}
	}
}

func TestSegmentOthers(t *testing.T) {
	// Each triple checked against all ten ranges by hand: none matches.
	for _, tc := range [][3]int{{5, 4, 1}, {5, 5, 1}, {3, 4, 1}, {2, 5, 1}, {4, 5, 1}} {
		if got := Segment(DefaultRules(), tc[0], tc[1], tc[2]); got != Others {
			t.Errorf("Segment(%v) = %q, want %q", tc, got, Others)
		}
	}
	if got := Segment(nil, 5, 5, 5); got != Others {
		t.Errorf("Segment with no rules = %q, want %q", got, Others)
	}
}

// TestVignetteSegments reproduces the segments the rfm 0.3.0 introduction
// vignette prints for its first ten customers from their printed scores,
// and checks the printed rfm_score is R*100 + F*10 + M as Combined is.
func TestVignetteSegments(t *testing.T) {
	rows := readTSV(t, "testdata/intro_rows.tsv")
	if len(rows) != 10 {
		t.Fatalf("read %d rows, want 10", len(rows))
	}
	for _, row := range rows {
		atoi := func(s string) int {
			v, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		rfmScore, r, f, m := atoi(row[4]), atoi(row[5]), atoi(row[6]), atoi(row[7])
		if got := Segment(DefaultRules(), r, f, m); got != row[8] {
			t.Errorf("%s: Segment(%d,%d,%d) = %q, vignette says %q", row[0], r, f, m, got, row[8])
		}
		if r*100+f*10+m != rfmScore {
			t.Errorf("%s: rfm_score %d is not R*100+F*10+M of %d %d %d", row[0], rfmScore, r, f, m)
		}
	}
}

func TestSummariseOrder(t *testing.T) {
	// Rule order, then names not in the rules, then Others; empty
	// segments are left out and repeated rule names are merged.
	rules := []Rule{
		{Name: "B", R: [2]int{1, 1}, F: [2]int{1, 1}, M: [2]int{1, 1}},
		{Name: "A", R: [2]int{2, 2}, F: [2]int{1, 1}, M: [2]int{1, 1}},
		{Name: "Empty", R: [2]int{3, 3}, F: [2]int{1, 1}, M: [2]int{1, 1}},
		{Name: "B", R: [2]int{4, 4}, F: [2]int{1, 1}, M: [2]int{1, 1}},
	}
	scores := []Score{
		{Segment: Others, Orders: 1, Revenue: 1},
		{Segment: "A", Orders: 2, Revenue: 0.5},
		{Segment: "Z", Orders: 3, Revenue: 3},
		{Segment: "B", Orders: 4, Revenue: 4},
		{Segment: "A", Orders: 5, Revenue: 0.25},
		{Segment: "B", Orders: 6, Revenue: 6},
	}
	got := Summarise(scores, rules)
	want := []SegmentSummary{
		{"B", 2, 10, 10},
		{"A", 2, 7, 0.75},
		{"Z", 1, 3, 3},
		{Others, 1, 1, 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Summarise = %+v\nwant %+v", got, want)
	}
}

func TestSummariseRevenueSum(t *testing.T) {
	// R's sum() accumulates in long double and returns 1e16 + 2 here; a
	// plain float64 loop would lose both ones (the spacing at 1e16 is 2).
	scores := []Score{
		{Segment: "Lost", Orders: 1, Revenue: 1e16},
		{Segment: "Lost", Orders: 1, Revenue: 1},
		{Segment: "Lost", Orders: 1, Revenue: 1},
	}
	got := Summarise(scores, nil)
	if len(got) != 1 || got[0].Revenue != 1e16+2 {
		t.Errorf("Summarise = %+v, want revenue %v", got, 1e16+2)
	}
}

func TestDefaultRulesFresh(t *testing.T) {
	a := DefaultRules()
	a[0].Name = "changed"
	if DefaultRules()[0].Name != "Champions" {
		t.Error("DefaultRules shares its slice between calls")
	}
}

func approxEqual(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol*math.Max(1, math.Abs(b[i])) {
			return false
		}
	}
	return true
}

// readTSV returns the data rows of a tab-separated fixture, skipping
// comment lines starting with '#' and the header line.
func readTSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	header := true
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if header {
			header = false
			continue
		}
		rows = append(rows, strings.Split(line, "\t"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func readMtcarsMPG(t *testing.T) []float64 {
	t.Helper()
	var mpg []float64
	for _, row := range readTSV(t, "testdata/mtcars_mpg.txt") {
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		mpg = append(mpg, v)
	}
	return mpg
}
