package btyd

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/optimize"
)

// FitInfo describes a maximum-likelihood fit: the log-likelihood at the
// optimum, how the optimiser stopped, and what it cost. Runs record it so a
// poor fit is visible rather than silently used.
type FitInfo struct {
	LogLikelihood float64 `json:"log_likelihood"`
	Converged     bool    `json:"converged"`
	Status        string  `json:"status"`
	Iterations    int     `json:"iterations"`
	Evaluations   int     `json:"evaluations"`
	// Customers is the number of customers fitted on; Distinct the number
	// of distinct summaries the likelihood was evaluated over.
	Customers int `json:"customers"`
	Distinct  int `json:"distinct"`
}

// ErrNoData is returned when a fit has nothing to fit on.
var ErrNoData = errors.New("btyd: no customers to fit")

// weighted is a distinct customer summary and how many customers share it.
// Customers with no repeat purchase differ only in T, so compressing them
// makes a likelihood evaluation cost distinct summaries, not customers.
type weighted struct {
	Customer
	w float64
}

// compress groups identical summaries. Spend is part of the key only when
// the model uses it.
func compress(cs []Customer, withSpend bool) []weighted {
	idx := make(map[Customer]int, len(cs)/2)
	out := make([]weighted, 0, len(cs)/2)
	for _, c := range cs {
		if !withSpend {
			c.Spend = 0
		}
		if i, ok := idx[c]; ok {
			out[i].w++
			continue
		}
		idx[c] = len(out)
		out = append(out, weighted{c, 1})
	}
	// A fixed order makes the floating-point sum, and so the fit,
	// reproducible whatever order the customers came in.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Customer, out[j].Customer
		if a.X != b.X {
			return a.X < b.X
		}
		if a.Tx != b.Tx {
			return a.Tx < b.Tx
		}
		if a.T != b.T {
			return a.T < b.T
		}
		return a.Spend < b.Spend
	})
	return out
}

// maximise finds the positive parameters maximising the summed
// log-likelihood ll over data. It searches in log-parameter space (so every
// parameter stays positive) with BFGS on central-difference gradients, and
// polishes with Nelder-Mead when BFGS stops short.
func maximise(ll func(p []float64, data []weighted) float64, data []weighted, x0 []float64) ([]float64, FitInfo, error) {
	var n float64
	for _, d := range data {
		n += d.w
	}
	if len(data) == 0 {
		return nil, FitInfo{}, ErrNoData
	}
	params := make([]float64, len(x0))
	f := func(logp []float64) float64 {
		for i, v := range logp {
			params[i] = math.Exp(v)
		}
		v := -ll(params, data)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return math.Inf(1)
		}
		return v / n
	}
	grad := func(g, x []float64) {
		fd.Gradient(g, f, x, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	}
	start := make([]float64, len(x0))
	for i, v := range x0 {
		start[i] = math.Log(v)
	}
	settings := &optimize.Settings{
		GradientThreshold: 1e-9,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 50},
		MajorIterations:   2000,
	}
	res, err := optimize.Minimize(optimize.Problem{Func: f, Grad: grad}, start, settings, &optimize.BFGS{})
	info := FitInfo{}
	if res != nil {
		info.Iterations += res.Stats.MajorIterations
		info.Evaluations += res.Stats.FuncEvaluations + res.Stats.GradEvaluations*2*len(x0)
	}
	if err != nil || res == nil || res.Status != optimize.GradientThreshold {
		from := start
		if res != nil && !math.IsInf(res.F, 0) {
			from = res.X
		}
		nm, nmErr := optimize.Minimize(optimize.Problem{Func: f}, from, &optimize.Settings{
			Converger:       &optimize.FunctionConverge{Absolute: 1e-13, Iterations: 200},
			FuncEvaluations: 20000,
		}, &optimize.NelderMead{})
		if nmErr != nil && nm == nil {
			return nil, info, fmt.Errorf("btyd: optimiser failed: %w", nmErr)
		}
		res = nm
		err = nmErr
		info.Iterations += res.Stats.MajorIterations
		info.Evaluations += res.Stats.FuncEvaluations
	}
	out := make([]float64, len(x0))
	for i, v := range res.X {
		out[i] = math.Exp(v)
	}
	info.LogLikelihood = ll(out, data)
	info.Status = res.Status.String()
	info.Converged = err == nil && (res.Status == optimize.GradientThreshold || res.Status == optimize.FunctionConvergence)
	info.Customers = int(n)
	info.Distinct = len(data)
	if math.IsNaN(info.LogLikelihood) || math.IsInf(info.LogLikelihood, 0) {
		return nil, info, fmt.Errorf("btyd: fit ended at a non-finite log-likelihood (%s)", info.Status)
	}
	return out, info, nil
}

// logAddExp returns log(exp(a) + exp(b)) without overflow.
func logAddExp(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// lgamma is the log of the absolute gamma function.
func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}
