package btyd

import (
	"math"

	"gonum.org/v1/gonum/integrate/quad"
)

// logHyp is ln F and its partial derivatives, where F = ₂F₁(1, p; q; z).
type logHyp struct {
	v, dp, dq, dz float64
}

// seriesMaxZ is the largest z summed as a power series. Up to it the series
// needs at most about 450 terms; beyond it the terms fall off too slowly
// and logHyp2F1 integrates instead.
const seriesMaxZ = 0.9

// maxSeriesTerms and maxPanels stop a sum that cannot converge, as with NaN
// arguments or parameters at the edge of the floating-point range; it
// then returns NaN, which the fit treats as an impossible point.
const (
	maxSeriesTerms = 2000
	maxPanels      = 1000
)

// logHyp2F1 returns ln ₂F₁(1, p; q; z) and its partial derivatives with
// respect to p, q and z, for 0 < p < q, q > 1 and 0 ≤ z < 1. eps is 1 − z,
// which callers compute without cancellation: the Pareto/NBD arguments are
// z = |α−β|/(max(α,β)+y) with 1 − z = (min(α,β)+y)/(max(α,β)+y).
//
// Every Pareto/NBD hypergeometric function is of this form after an Euler
// or Pfaff transformation, and it has no cancellation in it: the series
// terms (p)ₙ/(q)ₙ zⁿ and the integrand below are all positive. Cephes'
// ₂F₁ (mathext.Hypergeo) is not safe here: for z > 0.9, when its power
// series does not converge, it switches to the 1−z connection formula
// (Abramowitz & Stegun 15.3.6), whose two terms cancel when q−p−1 is close
// to an integer, and loses up to all its digits there (₂F₁(1, 0.2; 1.199999; z)
// is off by 6e-6 relative at z = 0.9999, and by 54 times its value at
// z = 1−1e-9). Here q−p−1 is s, s−1, r+x−1 or r+x, and z near 1 when α
// and β are far apart, so a fit can well pass through such points.
func logHyp2F1(p, q, z, eps float64) logHyp {
	if z <= seriesMaxZ {
		return logHyp2F1Series(p, q, z)
	}
	return logHyp2F1Integral(p, q, z, eps)
}

// logHyp2F1Series sums F = Σ tₙ, tₙ = (p)ₙ/(q)ₙ zⁿ, and the derivative
// series ∂tₙ/∂p = tₙ Σ_{k<n} 1/(p+k), ∂tₙ/∂q = −tₙ Σ_{k<n} 1/(q+k) and
// ∂tₙ/∂z = n tₙ/z. Since p < q the term ratio is below z, so the tail
// after tₙ is at most tₙ z/(1−z) (and that of Σ n tₙ at most tₙ(n/(1−z) +
// 1/(1−z)²)), which bounds where to stop.
func logHyp2F1Series(p, q, z float64) logHyp {
	t, f := 1.0, 1.0
	var sp, sq, fp, fq, fz float64
	tail := 1 / (1 - z)
	for n := 1; ; n++ {
		if n > maxSeriesTerms {
			return logHyp{v: math.NaN(), dp: math.NaN(), dq: math.NaN(), dz: math.NaN()}
		}
		k := float64(n - 1)
		ip, iq := 1/(p+k), 1/(q+k)
		u := t * (p + k) * iq // tₙ/z, finite at z = 0
		sp += ip
		sq += iq
		t = u * z
		f += t
		fp += t * sp
		fq -= t * sq
		fz += float64(n) * u
		if t*(float64(n)+tail)*tail < 0x1p-56*f {
			break
		}
	}
	return logHyp{v: math.Log(f), dp: fp / f, dq: fq / f, dz: fz / f}
}

// Gauss-Legendre nodes and weights on [0, 1] for the panels of
// logHyp2F1Integral.
var glX, glW = func() (x, w []float64) {
	x, w = make([]float64, 12), make([]float64, 12)
	quad.Legendre{}.FixedLocations(x, w, 0, 1)
	return x, w
}()

// logHyp2F1Integral evaluates F for z close to 1 from Euler's integral,
// F = (q−1) ∫₀¹ w^(q−2) (ε + zw)^(−p) dw with ε = 1 − z. Substituting
// w = (ε/z)eᵛ gives
//
//	F = (q−1) (ε/z)^(q−1) ε^(−p) ∫_{−∞}^{L} e^φ(v) dv,
//	φ(v) = (q−1)v − p ln(1+eᵛ),  L = ln(z/ε),
//
// an integrand that is smooth (its nearest singularities are at v ± iπ)
// and log-concave, with a single peak at logit((q−1)/p) or at L. It is
// integrated by 12-point Gauss-Legendre panels marched outwards from the
// peak, each short enough that φ changes by at most 4 across it, until the
// concave bound on what is left, e^φ(b)/φ'(b), is negligible. Far from
// v = 0, where φ is linear to within p·e^(−|v|) < 1e-17, panels may be as
// wide as |v|. The derivatives are weighted means over the same integrand:
// ∂/∂p of ln F is −ln ε − ⟨ln(1+eᵛ)⟩, ∂/∂q is 1/(q−1) + ln(ε/z) + ⟨v⟩, and
// differentiating Euler's integral under the sign gives ∂/∂z =
// (p/ε) ⟨(1 − e^(v−L))/(1+eᵛ)⟩, a mean of a positive quantity, free of the
// cancellation differentiating the prefactor would bring.
func logHyp2F1Integral(p, q, z, eps float64) logHyp {
	nan := logHyp{v: math.NaN(), dp: math.NaN(), dq: math.NaN(), dz: math.NaN()}
	L := math.Log(z) - math.Log(eps)
	if !(q > 1 && p > 0 && L < math.MaxFloat64) {
		return nan
	}
	phi := func(v float64) float64 { return (q-1)*v - p*softplus(v) }
	dphi := func(v float64) float64 { return (q - 1) - p*logistic(v) }
	peak := L
	if q-1 < p {
		if v := math.Log((q - 1) / (p - (q - 1))); v < L {
			peak = v
		}
	}
	top := phi(peak)
	linear := 40 + math.Log(math.Max(p, 1)) // beyond ±linear, φ is linear
	width := func(v float64) float64 {
		h := 2.0
		if math.Abs(v) > linear {
			h = math.Abs(v)
		}
		if d := math.Abs(dphi(v)); d*h > 4 {
			h = 4 / d
		}
		return h
	}
	var i0, iv, is, iz float64
	panel := func(a, b float64) {
		for k, x := range glX {
			v := a + (b-a)*x
			e := math.Exp(phi(v)-top) * glW[k] * (b - a)
			sp := softplus(v)
			i0 += e
			iv += e * v
			is += e * sp
			iz += e * -math.Expm1(v-L) * math.Exp(-sp) // (1 − e^(v−L))/(1+eᵛ)
		}
	}
	panels := 0
	for a := peak; a < L; panels++ {
		b := math.Min(a+width(a), L)
		panel(a, b)
		a = b
	}
	for b := peak; ; panels++ {
		if panels > maxPanels {
			return nan
		}
		a := b - width(b)
		panel(a, b)
		b = a
		// What is left is at most e^φ(b)/φ'(b) by concavity, and its
		// v-weighted part at most e^φ(b)(|b|/φ'(b) + 1/φ'(b)²); iz ≤ i0 is
		// the smallest of the sums it must not disturb.
		if d := dphi(b); d > 0 && math.Exp(phi(b)-top)/d*(1+math.Abs(b)+1/d) <= 0x1p-56*iz {
			break
		}
	}
	logEps := math.Log(eps)
	return logHyp{
		v:  math.Log(q-1) + (q-1)*(logEps-math.Log(z)) - p*logEps + top + math.Log(i0),
		dp: -logEps - is/i0,
		dq: 1/(q-1) + logEps - math.Log(z) + iv/i0,
		dz: p / eps * iz / i0,
	}
}

// softplus is ln(1 + eᵛ) without overflow.
func softplus(v float64) float64 {
	if v > 0 {
		return v + math.Log1p(math.Exp(-v))
	}
	return math.Log1p(math.Exp(v))
}

// logistic is 1/(1 + e^(−v)).
func logistic(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
