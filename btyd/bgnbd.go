package btyd

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// Model is a fitted purchase-count model (BG/NBD or Pareto/NBD): what the
// insights engine asks of either.
type Model interface {
	// PAlive is the probability that a customer with summary c is still
	// active at the end of calibration; churn risk is 1 − PAlive.
	PAlive(c Customer) float64
	// ConditionalExpected is the expected number of purchases in the next
	// t time units by a customer with summary c.
	ConditionalExpected(c Customer, t float64) float64
	// Expected is the expected number of repeat purchases of a new customer
	// in their first t time units.
	Expected(t float64) float64
	// Params returns the parameters by their usual names.
	Params() map[string]float64
}

// BGNBD is a fitted beta-geometric/NBD model: purchases follow a Poisson
// process with gamma(r, α) distributed rates while alive, and after each
// purchase a customer drops out with a beta(a, b) distributed probability.
type BGNBD struct {
	R, Alpha, A, B float64
}

// FitBGNBD fits the BG/NBD model to calibration summaries by maximum
// likelihood (Fader, Hardie & Lee 2005, equation 6).
func FitBGNBD(cs []Customer) (BGNBD, FitInfo, error) {
	data := compress(cs, false)
	p, info, err := maximise(objective{
		ll:   func(p []float64) float64 { return bgnbdLL(p, data, nil) },
		grad: func(p, g []float64) float64 { return bgnbdLL(p, data, g) },
	}, data, []float64{1, 1, 1, 1})
	if err != nil {
		return BGNBD{}, info, fitError("BG/NBD", err)
	}
	return BGNBD{R: p[0], Alpha: p[1], A: p[2], B: p[3]}, info, nil
}

// bgnbdLL is the BG/NBD log-likelihood of weighted summaries, ordered by
// X as compress orders them. If g is not nil it also stores the gradient
// with respect to r, α, a and b in g.
//
// Each customer's log-likelihood is base + C(x) + log(e^A + e^D) with
//
//	base = −ln Γ(r) + r ln α + ln Γ(a+b) − ln Γ(b)
//	C(x) = ln Γ(r+x) + ln Γ(b+x) − ln Γ(a+b+x)
//	A    = −(r+x) ln(α+T)
//	D    = ln a − ln(b+x−1) − (r+x) ln(α+t_x)   (x > 0 only)
//
// The gamma terms, and their digamma derivatives, depend on x alone, so
// they are computed once per distinct x.
func bgnbdLL(p []float64, data []weighted, g []float64) float64 {
	r, alpha, a, b := p[0], p[1], p[2], p[3]
	base := -lgamma(r) + r*math.Log(alpha) + lgamma(a+b) - lgamma(b)
	var psiR, psiAB, psiB float64
	if g != nil {
		psiR, psiAB, psiB = digamma(r), digamma(a+b), digamma(b)
		clear(g)
	}
	logA := math.Log(a)
	var (
		sum                  accurateSum
		sumW                 float64
		x                    = math.NaN()
		cx, logBX1           float64
		psiRX, psiBX, psiABX float64
		gr, galpha, ga, gb   float64
	)
	for _, d := range data {
		if d.X != x {
			x = d.X
			cx = lgamma(r+x) + lgamma(b+x) - lgamma(a+b+x)
			if x > 0 {
				logBX1 = math.Log(b + x - 1)
			}
			if g != nil {
				psiRX, psiBX, psiABX = digamma(r+x), digamma(b+x), digamma(a+b+x)
			}
		}
		logT := math.Log(alpha + d.T)
		l := -(r + x) * logT
		var w, logTx float64 // w: the weight of the dropped-out term D
		if x > 0 {
			logTx = math.Log(alpha + d.Tx)
			dd := logA - logBX1 - (r+x)*logTx
			if dd > l {
				e := math.Exp(l - dd)
				l = dd + math.Log1p(e)
				w = 1 / (1 + e)
			} else {
				e := math.Exp(dd - l)
				l += math.Log1p(e)
				w = e / (1 + e)
			}
		}
		sum.add(d.w * (cx + l))
		sumW += d.w
		if g != nil {
			gr += d.w * (psiRX - (1-w)*logT - w*logTx)
			galpha -= d.w * (r + x) * ((1-w)/(alpha+d.T) + w/(alpha+d.Tx))
			ga += d.w * (w/a - psiABX)
			gb += d.w * (psiBX - psiABX)
			if x > 0 {
				gb -= d.w * w / (b + x - 1)
			}
		}
	}
	if g != nil {
		g[0] = gr + sumW*(-psiR+math.Log(alpha))
		g[1] = galpha + sumW*r/alpha
		g[2] = ga + sumW*psiAB
		g[3] = gb + sumW*(psiAB-psiB)
	}
	sum.add(sumW * base)
	return sum.value()
}

// LogLikelihood returns the model's log-likelihood of cs.
func (m BGNBD) LogLikelihood(cs []Customer) float64 {
	return bgnbdLL([]float64{m.R, m.Alpha, m.A, m.B}, compress(cs, false), nil)
}

// Params returns r, alpha, a and b.
func (m BGNBD) Params() map[string]float64 {
	return map[string]float64{"r": m.R, "alpha": m.Alpha, "a": m.A, "b": m.B}
}

// deadOdds is a/(b+x−1)·((α+T)/(α+t_x))^(r+x), the odds that a customer
// with repeat purchases dropped out after the last one.
func (m BGNBD) deadOdds(c Customer) float64 {
	if c.X == 0 {
		return 0
	}
	return m.A / (m.B + c.X - 1) * math.Exp((m.R+c.X)*(math.Log(m.Alpha+c.T)-math.Log(m.Alpha+c.Tx)))
}

// PAlive is P(alive | x, t_x, T) (Fader, Hardie & Lee 2005, appendix).
func (m BGNBD) PAlive(c Customer) float64 { return 1 / (1 + m.deadOdds(c)) }

// ConditionalExpected is E[Y(t) | x, t_x, T] (equation 10).
func (m BGNBD) ConditionalExpected(c Customer, t float64) float64 {
	if t <= 0 {
		return 0
	}
	r, a, b := m.R+c.X, m.A, m.B
	at := m.Alpha + c.T
	z := t / (at + t)
	hyp := mathext.Hypergeo(r, b+c.X, a+b+c.X-1, z)
	num := (a + b + c.X - 1) / (a - 1) * (1 - math.Exp(r*math.Log(at/(at+t)))*hyp)
	return num / (1 + m.deadOdds(c))
}

// Expected is E[X(t)] for a new customer (equation 9).
func (m BGNBD) Expected(t float64) float64 {
	if t <= 0 {
		return 0
	}
	z := t / (m.Alpha + t)
	hyp := mathext.Hypergeo(m.R, m.B, m.A+m.B-1, z)
	return (m.A + m.B - 1) / (m.A - 1) * (1 - math.Exp(m.R*math.Log(m.Alpha/(m.Alpha+t)))*hyp)
}
