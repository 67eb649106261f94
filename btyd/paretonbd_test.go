package btyd

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// paretoNBDReference holds the log-likelihood, P(alive) and E[Y(52)] of
// single customers, computed with mpmath at 50 digits from Fader & Hardie's
// A₀ form of the likelihood (the ₂F₁(r+s+x, ·; r+s+x+1; ·) difference).
// The parameter sets cover α > β, α < β, α = β with s = 1, and ratios
// α/β of 86 and 1/57 where z reaches 0.98–0.99 and the ₂F₁ is integrated;
// the customers run from x = 0 to x = 200, where (α+T)^(r+x) overflows
// outside log space.
var paretoNBDReference = []struct {
	m                  ParetoNBD
	c                  Customer
	ll, pAlive, cond52 float64
}{
	{ParetoNBD{0.553, 10.578, 0.606, 11.669}, Customer{X: 0, Tx: 0, T: 38.857}, -0.52103638449823234, 0.29530421279419599, 0.13621594838587978},
	{ParetoNBD{0.553, 10.578, 0.606, 11.669}, Customer{X: 26, Tx: 30.857, T: 31}, -39.131624745690632, 0.99787203492776153, 25.457281659934511},
	{ParetoNBD{0.553, 10.578, 0.606, 11.669}, Customer{X: 3, Tx: 5.5, T: 30.2}, -9.8610827410265693, 0.13550913406136252, 0.46989219061280253},
	{ParetoNBD{0.553, 10.578, 0.606, 11.669}, Customer{X: 200, Tx: 35.0, T: 38.0}, 89.027882892014515, 0.00091681768359242292, 0.15559865524914079},
	{ParetoNBD{0.553, 10.578, 0.606, 11.669}, Customer{X: 1, Tx: 0.143, T: 39}, -4.1995980544357743, 0.12997124308672279, 0.16796415439411556},
	{ParetoNBD{0.553, 11.669, 0.606, 10.578}, Customer{X: 0, Tx: 0, T: 38.857}, -0.47992531071967069, 0.28226588772856254, 0.12689111375824315},
	{ParetoNBD{0.553, 11.669, 0.606, 10.578}, Customer{X: 26, Tx: 30.857, T: 31}, -39.808839497059884, 0.99781875182791004, 24.677968050286609},
	{ParetoNBD{0.553, 11.669, 0.606, 10.578}, Customer{X: 3, Tx: 5.5, T: 30.2}, -9.9671077674669478, 0.13866376655489323, 0.46583071691668438},
	{ParetoNBD{0.553, 11.669, 0.606, 10.578}, Customer{X: 200, Tx: 35.0, T: 38.0}, 84.340120537278713, 0.0011674733712168559, 0.19300629578579878},
	{ParetoNBD{0.553, 11.669, 0.606, 10.578}, Customer{X: 1, Tx: 0.143, T: 39}, -4.2042942750282263, 0.12725507690557985, 0.16028531119798588},
	{ParetoNBD{2.5, 0.7, 0.3, 40.0}, Customer{X: 0, Tx: 0, T: 38.857}, -5.6794212739635805, 0.0099493331556082938, 0.030141211177018242},
	{ParetoNBD{2.5, 0.7, 0.3, 40.0}, Customer{X: 26, Tx: 30.857, T: 31}, -33.633713423232666, 0.9993547027054476, 42.749920022657612},
	{ParetoNBD{2.5, 0.7, 0.3, 40.0}, Customer{X: 3, Tx: 5.5, T: 30.2}, -12.025727443232508, 0.01454179316682471, 0.12305252468656799},
	{ParetoNBD{2.5, 0.7, 0.3, 40.0}, Customer{X: 200, Tx: 35.0, T: 38.0}, 138.60077803310642, 0.00011208994321653149, 0.028093531139737608},
	{ParetoNBD{2.5, 0.7, 0.3, 40.0}, Customer{X: 1, Tx: 0.143, T: 39}, -5.3789556890953871, 0.00045951424511565784, 0.0019421382277196604},
	{ParetoNBD{0.9, 60.0, 1.7, 0.5}, Customer{X: 0, Tx: 0, T: 38.857}, -0.0095490841435684301, 0.00038520169153278396, 8.7816717439466953e-5},
	{ParetoNBD{0.9, 60.0, 1.7, 0.5}, Customer{X: 26, Tx: 30.857, T: 31}, -63.824845023364289, 0.99213050776285172, 6.5274667041713987},
	{ParetoNBD{0.9, 60.0, 1.7, 0.5}, Customer{X: 3, Tx: 5.5, T: 30.2}, -15.51243904589954, 0.02330800941130657, 0.02211059723944224},
	{ParetoNBD{0.9, 60.0, 1.7, 0.5}, Customer{X: 200, Tx: 35.0, T: 38.0}, -59.545491370426177, 0.071469832632248914, 3.6281818621898588},
	{ParetoNBD{0.9, 60.0, 1.7, 0.5}, Customer{X: 1, Tx: 0.143, T: 39}, -4.6564757737015874, 0.00036239937790086858, 0.00017448283915410373},
	{ParetoNBD{0.5, 5.0, 1.0, 5.0}, Customer{X: 0, Tx: 0, T: 38.857}, -0.3864008329301203, 0.056651103625999003, 0.022148404880525549},
	{ParetoNBD{0.5, 5.0, 1.0, 5.0}, Customer{X: 26, Tx: 30.857, T: 31}, -37.072935485116763, 0.99581149554029594, 23.58696407034869},
	{ParetoNBD{0.5, 5.0, 1.0, 5.0}, Customer{X: 3, Tx: 5.5, T: 30.2}, -9.0274790725606464, 0.019168963905613109, 0.060862493014926826},
	{ParetoNBD{0.5, 5.0, 1.0, 5.0}, Customer{X: 200, Tx: 35.0, T: 38.0}, 113.80909008492193, 9.4499315992458823e-5, 0.015018936331826563},
	{ParetoNBD{0.5, 5.0, 1.0, 5.0}, Customer{X: 1, Tx: 0.143, T: 39}, -3.2823903962013813, 0.011596244300371776, 0.013570363839555789},
}

// TestParetoNBDAgainstReference checks the log-likelihood, P(alive) and
// conditional expectation against paretoNBDReference to 1e-12 relative.
func TestParetoNBDAgainstReference(t *testing.T) {
	for _, tc := range paretoNBDReference {
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"log-likelihood", tc.m.LogLikelihood([]Customer{tc.c}), tc.ll},
			{"P(alive)", tc.m.PAlive(tc.c), tc.pAlive},
			{"E[Y(52)]", tc.m.ConditionalExpected(tc.c, 52), tc.cond52},
		} {
			if !(math.Abs(c.got-c.want) <= 1e-12*math.Abs(c.want)) {
				t.Errorf("%+v %+v: %s = %.17g, want %.17g", tc.m, tc.c, c.name, c.got, c.want)
			}
		}
	}
}

// TestParetoNBDOnCDNOW fits CDNOW and checks the fit and customer 1516
// against the paper and BTYD.
func TestParetoNBDOnCDNOW(t *testing.T) {
	ss := cdnowSummaries(t)
	m, info, err := FitParetoNBD(Customers(ss))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Pareto/NBD %+v %+v", m, info)
	if !info.Converged {
		t.Errorf("fit did not converge: %+v", info)
	}
	// The paper has r, α, s, β = 0.553, 10.578, 0.606, 11.669 and BTYD
	// 0.553, 10.580, 0.606, 11.656: the likelihood is flat along α and β
	// together, and the two agree on r and s to 3 decimals, on α to 2 and
	// on β to 1. We hold the fit to that; it also rounds to the paper's
	// values in all four (10.5777, 11.6687).
	near(t, "r", m.R, "0.553")
	near(t, "alpha", m.Alpha, "10.58")
	near(t, "s", m.S, "0.606")
	near(t, "beta", m.Beta, "11.7")
	near(t, "log-likelihood", info.LogLikelihood, "-9595.0")
	near(t, "log-likelihood (BTYD)", info.LogLikelihood, "-9594.976")
	if ll := m.LogLikelihood(Customers(ss)); ll != info.LogLikelihood {
		t.Errorf("LogLikelihood = %v, fit reported %v", ll, info.LogLikelihood)
	}

	// Customer 1516's figures from the BTYD vignette, 25.45647 purchases
	// in 52 weeks and P(alive) 0.997874, were evaluated at BTYD's unrounded
	// fit, which is known only to the 3 decimals printed. So evaluate at
	// the printed parameters, BTYD's and the paper's, and accept anything
	// within the range the formulas take over the rounding box (each
	// parameter ± 0.0005), widened by half a unit in the figure's last
	// printed digit. That box moves E[Y(52)] by ±6.2e-3 and P(alive) by
	// ±1.8e-6; the figures land 1.9e-3 and 3.8e-7 (BTYD's parameters) and
	// 8.7e-4 and 2.6e-7 (the paper's) from ours.
	c1516 := ss[1515].Customer
	for _, printed := range []ParetoNBD{{0.553, 10.580, 0.606, 11.656}, {0.553, 10.578, 0.606, 11.669}} {
		for _, tc := range []struct {
			name string
			f    func(ParetoNBD) float64
			want string
		}{
			{"customer 1516 E[Y(52)]", func(m ParetoNBD) float64 { return m.ConditionalExpected(c1516, 52) }, "25.45647"},
			{"customer 1516 P(alive)", func(m ParetoNBD) float64 { return m.PAlive(c1516) }, "0.997874"},
		} {
			lo, hi := roundingRange(tc.f, printed, 0.0005)
			w, _ := strconv.ParseFloat(tc.want, 64)
			half := 0.5 * math.Pow10(-(len(tc.want) - strings.IndexByte(tc.want, '.') - 1))
			if got := tc.f(printed); w < lo-half || w > hi+half {
				t.Errorf("%s at %+v = %.8g, within [%.8g, %.8g] over the rounding box; want %s", tc.name, printed, got, lo, hi, tc.want)
			}
		}
	}
	// And at our own fit, to the precision that the flat ridge between
	// our optimum and BTYD's leaves (our α and β are 0.002 and 0.013 from
	// BTYD's, which moves E[Y(52)] by 1.3e-3).
	near(t, "customer 1516 E[Y(52)] (our fit)", m.ConditionalExpected(c1516, 52), "25.5")
	near(t, "customer 1516 P(alive) (our fit)", m.PAlive(c1516), "0.998")

	// The holdout, as for BG/NBD: the conditional forecast of the 1,882
	// repeat purchases in weeks 40–78.
	holdoutWeeks := float64(cdnowPeriod.HoldoutEnd-cdnowPeriod.CalibrationEnd) / 7
	var cond float64
	for _, s := range ss {
		cond += m.ConditionalExpected(s.Customer, holdoutWeeks)
	}
	if cond < 1882*0.85 || cond > 1882 {
		t.Errorf("conditional holdout forecast %.1f, want within 15%% below the actual 1882", cond)
	}
	t.Logf("conditional holdout forecast %.1f (actual 1882)", cond)
}

// roundingRange returns the least and greatest f over the corners of the
// box of parameters that print as m with ± half in each.
func roundingRange(f func(ParetoNBD) float64, m ParetoNBD, half float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for corner := range 16 {
		d := func(bit int) float64 {
			if corner>>bit&1 == 1 {
				return half
			}
			return -half
		}
		v := f(ParetoNBD{R: m.R + d(0), Alpha: m.Alpha + d(1), S: m.S + d(2), Beta: m.Beta + d(3)})
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}

// TestParetoNBDProperties checks what must hold whatever the parameters:
// expectations start at 0 and grow, within the bounds of a customer who
// never dies, and P(alive) is below 1 and falls with T.
func TestParetoNBDProperties(t *testing.T) {
	m := ParetoNBD{R: 0.553, Alpha: 10.578, S: 0.606, Beta: 11.669}
	if got := m.Expected(0); got != 0 {
		t.Errorf("Expected(0) = %v, want 0", got)
	}
	prev := 0.0
	for _, tt := range []float64{0.5, 1, 4, 13, 26, 39, 52, 78, 104, 520} {
		e := m.Expected(tt)
		// Never more than a customer who never dies would buy, r/α per unit.
		if !(e > prev && e < m.R/m.Alpha*tt) {
			t.Errorf("Expected(%v) = %v, want above Expected of a shorter time %v and below rt/α %v", tt, e, prev, m.R/m.Alpha*tt)
		}
		prev = e
	}
	for _, tc := range []struct {
		name string
		c    Customer
	}{
		{"no repeat purchases", Customer{T: 20}},
		{"lapsed", Customer{X: 3, Tx: 5, T: 20}},
		{"recent", Customer{X: 3, Tx: 19, T: 20}},
		{"frequent", Customer{X: 40, Tx: 19.5, T: 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := m.PAlive(tc.c)
			if !(p > 0 && p < 1) {
				t.Errorf("PAlive = %v, want in (0, 1): even a customer seen at T can have died since", p)
			}
			// P(alive) falls with T at fixed x and t_x, and rises with t_x
			// at fixed x and T.
			older := tc.c
			older.T += 10
			if po := m.PAlive(older); !(po < p) {
				t.Errorf("PAlive at T+10 = %v, want below %v", po, p)
			}
			if tc.c.X > 0 && tc.c.Tx > 1 {
				earlier := tc.c
				earlier.Tx--
				if pe := m.PAlive(earlier); !(pe < p) {
					t.Errorf("PAlive with t_x−1 = %v, want below %v", pe, p)
				}
			}
			if got := m.ConditionalExpected(tc.c, 0); got != 0 {
				t.Errorf("ConditionalExpected(0) = %v, want 0", got)
			}
			prev := 0.0
			for _, tt := range []float64{1, 4, 13, 52, 104} {
				e := m.ConditionalExpected(tc.c, tt)
				// Below P(alive) × the posterior mean rate (r+x)/(α+T) × t.
				if bound := p * (m.R + tc.c.X) / (m.Alpha + tc.c.T) * tt; !(e > prev && e < bound) {
					t.Errorf("ConditionalExpected(%v) = %v, want above %v and below %v", tt, e, prev, bound)
				}
				prev = e
			}
		})
	}
	// s = 1 is the limit of the closed form, not a special case.
	for _, s := range []float64{1 - 1e-9, 1, 1 + 1e-9} {
		m := ParetoNBD{R: 0.5, Alpha: 5, S: s, Beta: 5}
		if got, want := m.Expected(52), 0.5/5*5*math.Log1p(52.0/5); math.Abs(got-want) > 1e-8 {
			t.Errorf("s = %v: Expected(52) = %v, want %v", s, got, want)
		}
	}
	want := map[string]float64{"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
	for k, v := range m.Params() {
		if want[k] != v {
			t.Errorf("Params()[%q] = %v, want %v", k, v, want[k])
		}
	}
	if len(m.Params()) != len(want) {
		t.Errorf("Params() = %v, want %v", m.Params(), want)
	}
	if _, _, err := FitParetoNBD(nil); !errors.Is(err, ErrNoData) {
		t.Errorf("FitParetoNBD(nil) error = %v, want ErrNoData", err)
	}
}
