package btyd

import (
	"math"
	"testing"
)

// TestFitsConvergeFromAnyStart fits each model on CDNOW from starting
// points on either side of the optimum: each must stop at its gradient
// threshold, at the same log-likelihood. From the last two, BFGS stalls
// in its line search short of the threshold on Gamma-Gamma, and
// newtonPolish finishes the fit.
func TestFitsConvergeFromAnyStart(t *testing.T) {
	cs := Customers(cdnowSummaries(t))
	data := compress(cs, false)
	var repeat []Customer
	for _, c := range cs {
		if c.X > 0 && c.Spend > 0 {
			repeat = append(repeat, c)
		}
	}
	spend := compress(repeat, true)
	consts := make([]ggConst, len(spend))
	for i, d := range spend {
		consts[i] = ggConst{logSpend: math.Log(d.Spend), logX: math.Log(d.X), total: d.X * d.Spend}
	}
	models := []struct {
		name string
		data []weighted
		ll   func(p, g []float64) float64
		k    int
		want float64 // the log-likelihood at the optimum
	}{
		{"BG/NBD", data, func(p, g []float64) float64 { return bgnbdLL(p, data, g) }, 4, -9582.429206674},
		{"Pareto/NBD", data, func(p, g []float64) float64 { return paretoNBDLL(p, data, g) }, 4, -9594.976178940},
		{"Gamma-Gamma", spend, func(p, g []float64) float64 { return gammaGammaLL(p, spend, consts, g) }, 3, -4055.917694802},
	}
	starts := [][]float64{{1, 1, 1, 1}, {0.5, 5, 0.5, 5}, {2, 20, 2, 20}, {0.1, 1, 3, 0.3}, {3, 3, 3, 3}, {0.3, 30, 0.7, 2}, {0.5, 10, 0.65, 7}, {8, 30, 10.4, 21}}
	for _, m := range models {
		for _, x0 := range starts {
			_, info, err := maximise(objective{
				ll:   func(p []float64) float64 { return m.ll(p, nil) },
				grad: m.ll,
			}, m.data, x0[:m.k])
			if err != nil {
				t.Errorf("%s from %v: %v", m.name, x0[:m.k], err)
				continue
			}
			if info.Status != "GradientThreshold" || math.Abs(info.LogLikelihood-m.want) > 1e-6 {
				t.Errorf("%s from %v: %+v, want GradientThreshold at log-likelihood %.9f", m.name, x0[:m.k], info, m.want)
			}
		}
		// Without the analytic gradient the fit differentiates numerically,
		// at some ten times the passes, to the same optimum.
		_, info, err := maximise(objective{ll: func(p []float64) float64 { return m.ll(p, nil) }}, m.data, starts[0][:m.k])
		if err != nil || !info.Converged || math.Abs(info.LogLikelihood-m.want) > 1e-6 {
			t.Errorf("%s on a numeric gradient: %+v, %v; want convergence at log-likelihood %.9f", m.name, info, err, m.want)
		}
	}
}
