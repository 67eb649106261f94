package btyd

import (
	"fmt"
	"math"
)

// GammaGamma is a fitted Gamma-Gamma spend model: a customer's transaction
// values are gamma(p, ν) distributed around their own mean, and ν varies
// across customers as gamma(q, γ). It assumes spend is independent of
// purchase frequency.
type GammaGamma struct {
	P, Q, Gamma float64
}

// FitGammaGamma fits the model by maximum likelihood on the customers with
// at least one repeat purchase and a positive mean repeat spend (Fader,
// Hardie & Lee 2005, "RFM and CLV", equation 3); the others carry no spend
// information and are skipped.
func FitGammaGamma(cs []Customer) (GammaGamma, FitInfo, error) {
	var repeat []Customer
	for _, c := range cs {
		if c.X > 0 && c.Spend > 0 {
			repeat = append(repeat, c)
		}
	}
	if len(repeat) == 0 {
		return GammaGamma{}, FitInfo{}, fmt.Errorf("%w: Gamma-Gamma needs customers with repeat purchases and positive spend", ErrNoData)
	}
	data := compress(repeat, true)
	consts := make([]ggConst, len(data))
	for i, d := range data {
		consts[i] = ggConst{logSpend: math.Log(d.Spend), logX: math.Log(d.X), total: d.X * d.Spend}
	}
	p, info, err := maximise(objective{
		ll:   func(p []float64) float64 { return gammaGammaLL(p, data, consts, nil) },
		grad: func(p, g []float64) float64 { return gammaGammaLL(p, data, consts, g) },
	}, data, []float64{1, 1, 1})
	if err != nil {
		return GammaGamma{}, info, fitError("Gamma-Gamma", err)
	}
	return GammaGamma{P: p[0], Q: p[1], Gamma: p[2]}, info, nil
}

// ggConst holds what the Gamma-Gamma likelihood needs of one summary that
// does not depend on the parameters.
type ggConst struct {
	logSpend, logX, total float64 // ln z̄, ln x, x·z̄
}

// gammaGammaLL is the log-likelihood of the customers' mean repeat spends,
// ordered by X as compress orders them. If g is not nil it also stores the
// gradient with respect to p, q and γ in g. The gamma functions depend on
// x alone and are computed once per distinct x.
func gammaGammaLL(p []float64, data []weighted, consts []ggConst, g []float64) float64 {
	pp, q, gam := p[0], p[1], p[2]
	logGam := math.Log(gam)
	base := -lgamma(q) + q*logGam
	var psiQ float64
	if g != nil {
		psiQ = digamma(q)
		clear(g)
	}
	var (
		sum                   accurateSum
		sumW                  float64
		x                     = math.NaN()
		px, cx, psiPXQ, psiPX float64
		gp, gq, gg            float64
	)
	for i, d := range data {
		if d.X != x {
			x = d.X
			px = pp * x
			cx = lgamma(px+q) - lgamma(px)
			if g != nil {
				psiPXQ, psiPX = digamma(px+q), digamma(px)
			}
		}
		c := consts[i]
		logTot := math.Log(gam + c.total)
		sum.add(d.w * (cx + (px-1)*c.logSpend + px*c.logX - (px+q)*logTot))
		sumW += d.w
		if g != nil {
			gp += d.w * x * (psiPXQ - psiPX + c.logSpend + c.logX - logTot)
			gq += d.w * (psiPXQ - logTot)
			gg -= d.w * (px + q) / (gam + c.total)
		}
	}
	if g != nil {
		g[0] = gp
		g[1] = gq + sumW*(logGam-psiQ)
		g[2] = gg + sumW*q/gam
	}
	sum.add(sumW * base)
	return sum.value()
}

// Params returns p, q and gamma.
func (m GammaGamma) Params() map[string]float64 {
	return map[string]float64{"p": m.P, "q": m.Q, "gamma": m.Gamma}
}

// ExpectedSpend is the expected average transaction value of a customer
// with summary c (equation 5): a weighted mean of the population mean and
// the customer's own mean repeat spend. A customer with no repeat purchase
// gets the population mean pγ/(q−1).
func (m GammaGamma) ExpectedSpend(c Customer) float64 {
	if c.X == 0 {
		return m.P * m.Gamma / (m.Q - 1)
	}
	return m.P * (m.Gamma + c.X*c.Spend) / (m.P*c.X + m.Q - 1)
}
