package btyd

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

// central5 is the five-point central difference, exact to O(h⁴): with the
// two-point formula, rounding in a sum of a thousand log-likelihoods
// (about 1e-11) swamps a step small enough for its O(h²) error.
var central5 = fd.Formula{
	Stencil: []fd.Point{
		{Loc: -2, Coeff: 1.0 / 12}, {Loc: -1, Coeff: -8.0 / 12},
		{Loc: 1, Coeff: 8.0 / 12}, {Loc: 2, Coeff: -1.0 / 12},
	},
	Derivative: 1,
	Step:       1e-3,
}

// TestAnalyticGradients checks each model's analytic gradient against
// finite differences of its log-likelihood on CDNOW, at the published
// optimum and away from it.
func TestAnalyticGradients(t *testing.T) {
	cs := Customers(cdnowSummaries(t))
	bg := compress(cs, false)
	var repeat []Customer
	for _, c := range cs {
		if c.X > 0 && c.Spend > 0 {
			repeat = append(repeat, c)
		}
	}
	gg := compress(repeat, true)
	ggc := make([]ggConst, len(gg))
	for i, d := range gg {
		ggc[i] = ggConst{logSpend: math.Log(d.Spend), logX: math.Log(d.X), total: d.X * d.Spend}
	}
	for _, tc := range []struct {
		name string
		ll   func(p, g []float64) float64
		at   []float64
	}{
		{"BG/NBD at optimum", func(p, g []float64) float64 { return bgnbdLL(p, bg, g) }, []float64{0.243, 4.414, 0.793, 2.426}},
		{"BG/NBD start", func(p, g []float64) float64 { return bgnbdLL(p, bg, g) }, []float64{1, 1, 1, 1}},
		{"BG/NBD far", func(p, g []float64) float64 { return bgnbdLL(p, bg, g) }, []float64{3, 0.2, 7, 0.3}},
		{"Pareto/NBD at optimum", func(p, g []float64) float64 { return paretoNBDLL(p, bg, g) }, []float64{0.553, 10.578, 0.606, 11.669}},
		{"Pareto/NBD start", func(p, g []float64) float64 { return paretoNBDLL(p, bg, g) }, []float64{1, 1, 1, 1}},
		{"Pareto/NBD alpha < beta", func(p, g []float64) float64 { return paretoNBDLL(p, bg, g) }, []float64{2.5, 0.7, 0.3, 40}},
		{"Pareto/NBD alpha > beta", func(p, g []float64) float64 { return paretoNBDLL(p, bg, g) }, []float64{0.9, 60, 1.7, 0.5}},
		{"Gamma-Gamma at optimum", func(p, g []float64) float64 { return gammaGammaLL(p, gg, ggc, g) }, []float64{6.25, 3.74, 15.44}},
		{"Gamma-Gamma start", func(p, g []float64) float64 { return gammaGammaLL(p, gg, ggc, g) }, []float64{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]float64, len(tc.at))
			v := tc.ll(tc.at, got)
			if want := tc.ll(tc.at, nil); v != want || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("log-likelihood with gradient %v, without %v", v, want)
			}
			want := fd.Gradient(nil, func(p []float64) float64 { return tc.ll(p, nil) }, tc.at,
				&fd.Settings{Formula: central5, Step: 1e-3})
			for i := range got {
				if !(math.Abs(got[i]-want[i]) <= 1e-6*math.Max(1, math.Abs(want[i]))) {
					t.Errorf("d/dp[%d] = %.10g, central difference %.10g", i, got[i], want[i])
				}
			}
		})
	}
}

// TestDigamma checks digamma against mpmath at 30 digits.
func TestDigamma(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{
		{0.243, -4.3510938644232106},
		{0.553, -1.723413959544548},
		{1, -0.57721566490153286},
		{3.74, 1.1794793534628924},
		{6.5, 1.7929113303999329},
		{7, 1.8727843350984671},
		{9.999, 2.2516474172057353},
		{10, 2.2517525890667211},
		{26.553, 3.2601942954592903},
		{128.7, 4.8535940796623882},
		{1e-3, -1000.5755719318103},
		{1e6, 13.815510057964191},
	} {
		if got := digamma(tc.x); math.Abs(got-tc.want) > 1e-15*math.Max(1, math.Abs(tc.want)) {
			t.Errorf("digamma(%v) = %.17g, want %.17g", tc.x, got, tc.want)
		}
	}
}
