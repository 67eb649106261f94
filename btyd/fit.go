package btyd

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/mathext"
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
	// Evaluations is the number of passes over the data, each computing
	// the log-likelihood and, when the model has one, its gradient.
	Evaluations int `json:"evaluations"`
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

// objective is a log-likelihood over positive parameters, and optionally
// its gradient.
type objective struct {
	// ll returns the log-likelihood at p.
	ll func(p []float64) float64
	// grad, if set, returns the log-likelihood at p and stores its
	// gradient with respect to p in g. Without it the fit differentiates
	// ll numerically.
	grad func(p, g []float64) float64
}

// maximise finds the positive parameters maximising obj over data, the
// distinct summaries obj was built on. It searches in log-parameter space
// (so every parameter stays positive) with BFGS, on obj's analytic gradient
// when it has one and on central differences otherwise, until the gradient
// is below gradientThreshold. When BFGS stops short it finishes with
// Newton steps on the analytic gradient (see newtonPolish) or, failing
// that, with Nelder-Mead.
func maximise(obj objective, data []weighted, x0 []float64) ([]float64, FitInfo, error) {
	var n float64
	for _, d := range data {
		n += d.w
	}
	if len(data) == 0 {
		return nil, FitInfo{}, ErrNoData
	}
	var passes int
	params := make([]float64, len(x0))
	setParams := func(logp []float64) {
		for i, v := range logp {
			params[i] = math.Exp(v)
		}
	}
	f := func(logp []float64) float64 {
		setParams(logp)
		passes++
		return negMean(obj.ll(params), n)
	}
	grad := func(g, x []float64) {
		fd.Gradient(g, f, x, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	}
	if obj.grad != nil {
		// The line search asks for the value and then, at the same point,
		// usually for the gradient: one pass computes both, and the
		// gradient waits for the request.
		pg := make([]float64, len(x0))
		cachedAt := make([]float64, len(x0))
		cachedGrad := make([]float64, len(x0))
		cached := false
		eval := func(logp []float64) float64 {
			setParams(logp)
			passes++
			v := negMean(obj.grad(params, pg), n)
			copy(cachedAt, logp)
			for i := range pg {
				// d/d log p = p · d/dp, and the objective is −ll/n.
				cachedGrad[i] = -params[i] * pg[i] / n
			}
			cached = true
			return v
		}
		f = eval
		grad = func(g, x []float64) {
			if !cached || !slices.Equal(x, cachedAt) {
				eval(x)
			}
			copy(g, cachedGrad)
		}
	}
	start := make([]float64, len(x0))
	for i, v := range x0 {
		start[i] = math.Log(v)
	}
	settings := &optimize.Settings{
		GradientThreshold: gradientThreshold,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 50},
		MajorIterations:   2000,
	}
	res, err := optimize.Minimize(optimize.Problem{Func: f, Grad: grad}, start, settings,
		&optimize.BFGS{Linesearcher: &boundedLinesearch{}})
	info := FitInfo{}
	if res != nil {
		info.Iterations += res.Stats.MajorIterations
	}
	converged := err == nil && res != nil && res.Status == optimize.GradientThreshold
	if !converged && obj.grad != nil && res != nil && !math.IsInf(res.F, 0) {
		x, iterations, ok := newtonPolish(grad, res.X)
		info.Iterations += iterations
		if ok {
			res.X, res.Status, err, converged = x, optimize.GradientThreshold, nil, true
		}
	}
	if !converged {
		from := start
		if res != nil && !math.IsInf(res.F, 0) {
			from = res.X
		}
		nm, nmErr := optimize.Minimize(optimize.Problem{Func: f}, from, &optimize.Settings{
			Converger:       &optimize.FunctionConverge{Absolute: 1e-13, Iterations: 200},
			FuncEvaluations: 20000,
		}, &optimize.NelderMead{})
		if nmErr != nil && nm == nil {
			info.Evaluations = passes
			return nil, info, fmt.Errorf("optimiser failed: %w", nmErr)
		}
		res = nm
		err = nmErr
		info.Iterations += res.Stats.MajorIterations
	}
	info.Evaluations = passes
	out := make([]float64, len(x0))
	for i, v := range res.X {
		out[i] = math.Exp(v)
	}
	info.LogLikelihood = obj.ll(out)
	info.Status = res.Status.String()
	info.Converged = err == nil && (res.Status == optimize.GradientThreshold || res.Status == optimize.FunctionConvergence)
	info.Customers = int(n)
	info.Distinct = len(data)
	if math.IsNaN(info.LogLikelihood) || math.IsInf(info.LogLikelihood, 0) {
		return nil, info, fmt.Errorf("fit ended at a non-finite log-likelihood (%s)", info.Status)
	}
	return out, info, nil
}

// boundedLinesearch is gonum's bisection line search, given up after
// maxLinesearchSteps evaluations. A line search that long is one at the
// limit of the objective's rounding, near the optimum, where bisection
// would otherwise go on halving its step some fifty times and BFGS then
// fail anyway; newtonPolish takes over sooner. Twenty evaluations still
// let a search far from the optimum double or halve its first step until
// it is a million times longer or shorter (fewer sent some CDNOW fits
// from far-off starting points to Nelder-Mead).
type boundedLinesearch struct {
	optimize.Bisection
	steps int
}

// maxLinesearchSteps is the most evaluations a line search may take.
const maxLinesearchSteps = 20

// Init starts a line search.
func (b *boundedLinesearch) Init(f, g, step float64) optimize.Operation {
	b.steps = 0
	return b.Bisection.Init(f, g, step)
}

// Iterate takes a line search step, or fails after maxLinesearchSteps.
func (b *boundedLinesearch) Iterate(f, g float64) (optimize.Operation, float64, error) {
	if b.steps++; b.steps > maxLinesearchSteps {
		return optimize.NoOperation, 0, optimize.ErrLinesearcherFailure
	}
	return b.Bisection.Iterate(f, g)
}

// gradientThreshold is where a fit has converged: no partial derivative
// of the mean negative log-likelihood per customer with respect to a
// log-parameter is larger. Much below it the objective's rounding (1e-16
// of a value near 4) hides the decreases a line search looks for. On
// CDNOW the flattest direction of the Pareto/NBD likelihood has curvature
// 1.1e-3 in these units, so the threshold puts the parameters within 1e-5
// (relative) of the optimum.
const gradientThreshold = 1e-8

// newtonPolish finishes a fit that BFGS left just short of
// gradientThreshold. Near the optimum the objective changes by less than
// its rounding along the stiff directions, so the line search fails while
// the gradient — which is still exact — is above the threshold; Newton
// steps need no function values. Each step solves H·δ = −g, with the
// Hessian H from central differences of the gradient, and must shrink the
// gradient. It reports false, and x as it got it, if the gradient is not
// small to begin with (the fit is not near an optimum), if H is not
// positive definite, or if a step does not help.
func newtonPolish(grad func(g, x []float64), x []float64) (_ []float64, iterations int, ok bool) {
	const (
		maxStart = 1e-4 // the largest gradient to start from
		maxSteps = 5
		h        = 1e-5 // the difference step in log-parameters
	)
	k := len(x)
	g, gNext := make([]float64, k), make([]float64, k)
	gp, gm := make([]float64, k), make([]float64, k)
	probe, next := make([]float64, k), make([]float64, k)
	cols := mat.NewDense(k, k, nil)
	hess := mat.NewSymDense(k, nil)
	rhs, step := mat.NewVecDense(k, nil), mat.NewVecDense(k, nil)
	var chol mat.Cholesky
	grad(g, x)
	if !(maxAbs(g) <= maxStart) {
		return x, 0, false
	}
	for iterations < maxSteps && maxAbs(g) > gradientThreshold {
		iterations++
		for j := range k {
			copy(probe, x)
			probe[j] = x[j] + h
			grad(gp, probe)
			probe[j] = x[j] - h
			grad(gm, probe)
			for i := range k {
				cols.Set(i, j, (gp[i]-gm[i])/(2*h))
			}
		}
		for i := range k {
			for j := i; j < k; j++ {
				hess.SetSym(i, j, (cols.At(i, j)+cols.At(j, i))/2)
			}
			rhs.SetVec(i, -g[i])
		}
		if !chol.Factorize(hess) || chol.SolveVecTo(step, rhs) != nil {
			return x, iterations, false
		}
		for i := range k {
			next[i] = x[i] + step.AtVec(i)
		}
		grad(gNext, next)
		if !(maxAbs(gNext) < maxAbs(g)) {
			return x, iterations, false
		}
		x = slices.Clone(next)
		g, gNext = gNext, g
	}
	return x, iterations, maxAbs(g) <= gradientThreshold
}

// maxAbs is the largest |v[i]|, NaN if any is.
func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		if math.IsNaN(x) {
			return math.NaN()
		}
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// fitError puts the model's name on an error from maximise. ErrNoData
// says all there is to say and is returned as it is.
func fitError(model string, err error) error {
	if errors.Is(err, ErrNoData) {
		return err
	}
	return fmt.Errorf("btyd: %s fit: %w", model, err)
}

// negMean turns a summed log-likelihood into the objective minimised: the
// mean negative log-likelihood per customer, +Inf where it is not finite so
// the line search backs away.
func negMean(ll, n float64) float64 {
	v := -ll / n
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return math.Inf(1)
	}
	return v
}

// accurateSum is a compensated (Neumaier) sum. A log-likelihood is the
// sum of a thousand terms; added plainly, each addition rounds at the
// running total's last place, and the total wobbles by about 1e-10 as the
// parameters move — enough to hide from the line search the decreases
// left near the optimum. Compensated, the total is as smooth as its terms.
type accurateSum struct{ hi, lo float64 }

// add adds x to the sum.
func (s *accurateSum) add(x float64) {
	t := s.hi + x
	if math.Abs(s.hi) >= math.Abs(x) {
		s.lo += (s.hi - t) + x
	} else {
		s.lo += (x - t) + s.hi
	}
	s.hi = t
}

// value returns the sum.
func (s accurateSum) value() float64 { return s.hi + s.lo }

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

// digamma is ψ(x) = d/dx ln Γ(x) for x > 0, to within about 1e-15 of
// max(1, |ψ(x)|): it recurs up to x ≥ 10 and sums the asymptotic series to
// x⁻¹⁴. (mathext.Digamma stops its series at x ≥ 7 after the x⁻⁸ term and
// is off by up to 5e-11, which would leave the analytic gradients a
// little inconsistent with the log-likelihoods they differentiate.) For
// x ≤ 0 it defers to mathext.Digamma.
func digamma(x float64) float64 {
	if !(x > 0) {
		return mathext.Digamma(x)
	}
	var shift float64
	for ; x < 10; x++ {
		shift += 1 / x
	}
	u := 1 / (x * x)
	// Bernoulli terms B₂ₖ/(2k x²ᵏ), k = 1..7.
	series := u * (1.0/12 - u*(1.0/120-u*(1.0/252-u*(1.0/240-u*(1.0/132-u*(691.0/32760-u/12))))))
	return math.Log(x) - 0.5/x - series - shift
}

// lgamma is the log of the absolute gamma function.
func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}
