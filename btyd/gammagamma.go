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
	p, info, err := maximise(gammaGammaLL, compress(repeat, true), []float64{1, 1, 1})
	if err != nil {
		return GammaGamma{}, info, err
	}
	return GammaGamma{P: p[0], Q: p[1], Gamma: p[2]}, info, nil
}

// gammaGammaLL is the log-likelihood of the customers' mean repeat spends.
func gammaGammaLL(p []float64, data []weighted) float64 {
	pp, q, g := p[0], p[1], p[2]
	var sum float64
	for _, d := range data {
		px := pp * d.X
		sum += d.w * (lgamma(px+q) - lgamma(px) - lgamma(q) + q*math.Log(g) +
			(px-1)*math.Log(d.Spend) + px*math.Log(d.X) - (px+q)*math.Log(g+d.X*d.Spend))
	}
	return sum
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
