package btyd

import "math"

// ParetoNBD is a fitted Pareto/NBD model (Schmittlein, Morrison & Colombo
// 1987): while alive a customer purchases as a Poisson process with a
// gamma(r, α) distributed rate λ, and their lifetime is exponential with a
// gamma(s, β) distributed rate μ, independent of λ. Unlike BG/NBD, a
// customer can drop out before their first repeat purchase.
type ParetoNBD struct {
	R, Alpha, S, Beta float64
}

// FitParetoNBD fits the Pareto/NBD model to calibration summaries by
// maximum likelihood (Fader & Hardie 2005, "A Note on Deriving the
// Pareto/NBD Model and Related Expressions", section 3).
func FitParetoNBD(cs []Customer) (ParetoNBD, FitInfo, error) {
	data := compress(cs, false)
	p, info, err := maximise(objective{
		ll:   func(p []float64) float64 { return paretoNBDLL(p, data, nil) },
		grad: func(p, g []float64) float64 { return paretoNBDLL(p, data, g) },
	}, data, []float64{1, 1, 1, 1})
	if err != nil {
		return ParetoNBD{}, info, fitError("Pareto/NBD", err)
	}
	return ParetoNBD{R: p[0], Alpha: p[1], S: p[2], Beta: p[3]}, info, nil
}

// The Pareto/NBD likelihood of a customer (x, t_x, T) is
//
//	L = Γ(r+x) α^r β^s / Γ(r) · [ e^ℓ(T) + s ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ ],
//	ℓ(y) = −(r+x) ln(α+y) − s ln(β+y),
//
// the first term for a customer alive throughout (0, T], the second for
// one who died at some τ between the last purchase and T. The note writes
// the integral with A₀, a difference of two Gauss hypergeometric
// functions ₂F₁(r+s+x, ·; r+s+x+1; z). Here the integral from y to ∞ is
// written e^ℓ(y)·K(y), with
//
//	K(y) = ∫₀^∞ (1+κv)^−(r+x) (1+v)^−(s+1) dv,  κ = (β+y)/(α+y),
//
// so the bracket is e^ℓ(T)·C(T) + s·e^ℓ(t_x)·K(t_x) with C(T) = 1 − s·K(T),
// a sum of two positive terms kept in log space however large x is. With
// m = r+x, q = r+s+x+1 and F(p; z) = ₂F₁(1, p; q; z):
//
//	α ≥ β, z = (α−β)/(α+y), 1−z = (β+y)/(α+y):
//	  K(y) = F(m; z)/(m+s),           C(T) = m(1−z)/(m+s) · F(m+1; z)
//	α < β, z = (β−α)/(β+y), 1−z = (α+y)/(β+y):
//	  K(y) = (1−z) F(s+1; z)/(m+s),   C(T) = m/(m+s) · F(s; z)
//
// (Euler and Pfaff transformations of the note's ₂F₁, and for C an
// integration by parts, so that neither C nor K is a difference). The
// probability that the customer is alive at T is e^ℓ(T) over the bracket.

// lnGrad is a log-scale quantity and its gradient with respect to r, α, s
// and β.
type lnGrad struct {
	v float64
	d [4]float64
}

// add returns a + b.
func (a lnGrad) add(b lnGrad) lnGrad {
	a.v += b.v
	for i := range a.d {
		a.d[i] += b.d[i]
	}
	return a
}

// ell is ℓ(y) = −(r+x) ln(α+y) − s ln(β+y).
func (m ParetoNBD) ell(x, y float64) lnGrad {
	la, lb := math.Log(m.Alpha+y), math.Log(m.Beta+y)
	rx := m.R + x
	return lnGrad{
		v: -rx*la - m.S*lb,
		d: [4]float64{-la, -rx / (m.Alpha + y), -lb, -m.S / (m.Beta + y)},
	}
}

// lnK is ln K(y) for a customer with x repeat purchases.
func (m ParetoNBD) lnK(x, y float64) lnGrad {
	rx := m.R + x
	sum := rx + m.S
	if m.Alpha >= m.Beta {
		den := m.Alpha + y
		eps := (m.Beta + y) / den
		h := logHyp2F1(rx, sum+1, (m.Alpha-m.Beta)/den, eps)
		return lnGrad{
			v: h.v - math.Log(sum),
			d: [4]float64{h.dp + h.dq - 1/sum, h.dz * eps / den, h.dq - 1/sum, -h.dz / den},
		}
	}
	den := m.Beta + y
	eps := (m.Alpha + y) / den
	h := logHyp2F1(m.S+1, sum+1, (m.Beta-m.Alpha)/den, eps)
	return lnGrad{
		v: math.Log(eps) + h.v - math.Log(sum),
		d: [4]float64{h.dq - 1/sum, 1/(m.Alpha+y) - h.dz/den, h.dp + h.dq - 1/sum, -1/(m.Beta+y) + h.dz*eps/den},
	}
}

// lnC is ln C(T) = ln(1 − s·K(T)) for a customer with x repeat purchases.
func (m ParetoNBD) lnC(x, T float64) lnGrad {
	rx := m.R + x
	sum := rx + m.S
	if m.Alpha >= m.Beta {
		den := m.Alpha + T
		eps := (m.Beta + T) / den
		h := logHyp2F1(rx+1, sum+1, (m.Alpha-m.Beta)/den, eps)
		return lnGrad{
			v: math.Log(rx) + math.Log(eps) - math.Log(sum) + h.v,
			d: [4]float64{1/rx - 1/sum + h.dp + h.dq, -1/den + h.dz*eps/den, -1/sum + h.dq, 1/(m.Beta+T) - h.dz/den},
		}
	}
	den := m.Beta + T
	eps := (m.Alpha + T) / den
	h := logHyp2F1(m.S, sum+1, (m.Beta-m.Alpha)/den, eps)
	return lnGrad{
		v: math.Log(rx) - math.Log(sum) + h.v,
		d: [4]float64{1/rx - 1/sum + h.dq, -h.dz / den, -1/sum + h.dp + h.dq, h.dz * eps / den},
	}
}

// dropout is ln(s·e^ℓ(t_x)·K(t_x)), the log of the dropped-out term of the
// bracket.
func (m ParetoNBD) dropout(x, tx float64) lnGrad {
	d := m.ell(x, tx).add(m.lnK(x, tx))
	d.v += math.Log(m.S)
	d.d[2] += 1 / m.S
	return d
}

// bracket returns the log of the bracket, ln(e^alive + e^dropout) with
// alive = ℓ(T) + ln C(T), and its gradient when grad is set. dropout is
// the customer's dropout term.
func (m ParetoNBD) bracket(x, T float64, dropout lnGrad, grad bool) (lb float64, ell lnGrad, d [4]float64) {
	ell = m.ell(x, T)
	alive := ell.add(m.lnC(x, T))
	lb = logAddExp(alive.v, dropout.v)
	if grad {
		wa, wd := math.Exp(alive.v-lb), math.Exp(dropout.v-lb)
		for i := range d {
			d[i] = wa*alive.d[i] + wd*dropout.d[i]
		}
	}
	return lb, ell, d
}

// paretoNBDLL is the Pareto/NBD log-likelihood of weighted summaries,
// ordered as compress orders them. If g is not nil it also stores the
// gradient with respect to r, α, s and β in g. The gamma functions depend
// on x alone, and the dropout term on (x, t_x) alone — the same for every
// customer without repeat purchases — so each is computed once per
// distinct value.
func paretoNBDLL(p []float64, data []weighted, g []float64) float64 {
	m := ParetoNBD{R: p[0], Alpha: p[1], S: p[2], Beta: p[3]}
	grad := g != nil
	var psiR float64
	if grad {
		psiR = digamma(m.R)
		clear(g)
	}
	var (
		sum      accurateSum
		sumW     float64
		x, tx    = math.NaN(), math.NaN()
		gx, psiX float64
		drop     lnGrad
		gs       [4]float64
	)
	for _, d := range data {
		if d.X != x {
			x, tx = d.X, math.NaN()
			gx = lgamma(m.R+x) - lgamma(m.R)
			if grad {
				psiX = digamma(m.R+x) - psiR
			}
		}
		if d.Tx != tx {
			tx = d.Tx
			drop = m.dropout(x, tx)
		}
		lb, _, db := m.bracket(x, d.T, drop, grad)
		sum.add(d.w * (gx + lb))
		sumW += d.w
		if grad {
			gs[0] += d.w * (psiX + db[0])
			for i := 1; i < 4; i++ {
				gs[i] += d.w * db[i]
			}
		}
	}
	if grad {
		g[0] = gs[0] + sumW*math.Log(m.Alpha)
		g[1] = gs[1] + sumW*m.R/m.Alpha
		g[2] = gs[2] + sumW*math.Log(m.Beta)
		g[3] = gs[3] + sumW*m.S/m.Beta
	}
	sum.add(sumW * (m.R*math.Log(m.Alpha) + m.S*math.Log(m.Beta)))
	return sum.value()
}

// LogLikelihood returns the model's log-likelihood of cs.
func (m ParetoNBD) LogLikelihood(cs []Customer) float64 {
	return paretoNBDLL([]float64{m.R, m.Alpha, m.S, m.Beta}, compress(cs, false), nil)
}

// Params returns r, alpha, s and beta.
func (m ParetoNBD) Params() map[string]float64 {
	return map[string]float64{"r": m.R, "alpha": m.Alpha, "s": m.S, "beta": m.Beta}
}

// PAlive is P(alive at T | x, t_x, T) (Fader & Hardie 2005, section 5):
// the alive term of the likelihood over the whole. Unlike BG/NBD it is
// below 1 for a customer without repeat purchases, and it falls as T
// grows with x and t_x fixed.
func (m ParetoNBD) PAlive(c Customer) float64 {
	lb, ell, _ := m.bracket(c.X, c.T, m.dropout(c.X, c.Tx), false)
	return math.Exp(ell.v - lb)
}

// ConditionalExpected is E[Y(t) | x, t_x, T] (Fader & Hardie 2005,
// section 6): P(alive) times the expected purchases in the next t of a
// customer alive at T, (r+x)/(α+T) · (β+T)/(s−1) · [1 − ((β+T)/(β+T+t))^(s−1)].
func (m ParetoNBD) ConditionalExpected(c Customer, t float64) float64 {
	if t <= 0 {
		return 0
	}
	return m.PAlive(c) * (m.R + c.X) / (m.Alpha + c.T) * lifetimeIntegral(m.S, m.Beta+c.T, t)
}

// Expected is E[X(t)] for a new customer (Fader & Hardie 2005, section
// 4): rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)].
func (m ParetoNBD) Expected(t float64) float64 {
	if t <= 0 {
		return 0
	}
	return m.R / m.Alpha * lifetimeIntegral(m.S, m.Beta, t)
}

// lifetimeIntegral is ∫₀^t (b/(b+τ))^s dτ = b/(s−1) · [1 − (b/(b+t))^(s−1)],
// the expected time alive in the next t of someone alive now whose dropout
// rate is gamma(s, b) distributed; it is b·ln(1+t/b) at s = 1.
func lifetimeIntegral(s, b, t float64) float64 {
	u := math.Log1p(t / b)
	if s == 1 {
		return b * u
	}
	return -b * math.Expm1(-(s-1)*u) / (s - 1)
}
