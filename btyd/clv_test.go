package btyd

import (
	"math"
	"testing"
)

// TestCLV checks CLV against its undiscounted closed form, and that it
// grows with the horizon and falls with the discount rate.
func TestCLV(t *testing.T) {
	gg := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	models := []struct {
		name string
		m    Model
	}{
		{"BG/NBD", BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}},
		{"Pareto/NBD", ParetoNBD{R: 0.553, Alpha: 10.578, S: 0.606, Beta: 11.669}},
	}
	customers := []struct {
		name string
		c    Customer
	}{
		{"one-off", Customer{T: 30}},
		{"lapsed", Customer{X: 2, Tx: 4, T: 38, Spend: 20}},
		{"customer 1516", Customer{X: 26, Tx: 30.857, T: 31, Spend: 39.97}},
	}
	const month = 4.345 // weeks
	for _, mc := range models {
		for _, cc := range customers {
			t.Run(mc.name+"/"+cc.name, func(t *testing.T) {
				m, c := mc.m, cc.c
				spend := gg.ExpectedSpend(c)
				for _, horizon := range []float64{month, 26, 52, 5 * 52} {
					want := m.ConditionalExpected(c, horizon) * spend
					if got := clv(t, m, gg, c, horizon, month, 0); math.Abs(got-want) > 1e-12*want {
						t.Errorf("undiscounted CLV over %v = %v, want E[Y(%v)] × spend = %v", horizon, got, horizon, want)
					}
					// One step covering the horizon, discounted once.
					if got := clv(t, m, gg, c, horizon, horizon, 0.1); math.Abs(got-want/1.1) > 1e-12*want {
						t.Errorf("one-step CLV over %v = %v, want %v", horizon, got, want/1.1)
					}
				}
				prev := 0.0
				for _, horizon := range []float64{0, 1, month, 13, 26, 39, 52, 104, 260} {
					undiscounted := clv(t, m, gg, c, horizon, month, 0)
					v := clv(t, m, gg, c, horizon, month, 0.01)
					switch {
					case horizon == 0 && v != 0:
						t.Errorf("CLV over 0 = %v, want 0", v)
					case horizon > 0 && !(v > prev):
						t.Errorf("CLV over %v = %v, want above %v, the value over a shorter horizon", horizon, v, prev)
					case horizon > 0 && !(v < undiscounted):
						t.Errorf("CLV over %v at 1%% a step = %v, want below the undiscounted %v", horizon, v, undiscounted)
					}
					if higher := clv(t, m, gg, c, horizon, month, 0.05); horizon > 0 && !(higher < v) {
						t.Errorf("CLV over %v at 5%% a step = %v, want below %v at 1%%", horizon, higher, v)
					}
					prev = v
				}
			})
		}
	}
}

// clv is CLV for arguments it must accept.
func clv(t *testing.T, m Model, gg GammaGamma, c Customer, horizon, step, discount float64) float64 {
	t.Helper()
	v, err := CLV(m, gg, c, horizon, step, discount)
	if err != nil {
		t.Fatalf("CLV(horizon %v, step %v, discount %v): %v", horizon, step, discount, err)
	}
	return v
}

// TestCLVArguments checks what CLV accepts and rejects.
func TestCLVArguments(t *testing.T) {
	m := BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	gg := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	c := Customer{X: 2, Tx: 4, T: 38, Spend: 20}
	for _, tc := range []struct {
		name                    string
		horizon, step, discount float64
		ok                      bool
	}{
		{"monthly over a year", 52, 4.345, 0.01, true},
		{"zero horizon", 0, 4.345, 0.01, true},
		{"step longer than the horizon", 2, 4.345, 0, true},
		{"negative horizon", -1, 4.345, 0.01, false},
		{"infinite horizon", math.Inf(1), 4.345, 0.01, false},
		{"NaN horizon", math.NaN(), 4.345, 0.01, false},
		{"zero step", 52, 0, 0.01, false},
		{"negative step", 52, -1, 0.01, false},
		{"NaN step", 52, math.NaN(), 0.01, false},
		{"too many steps", 52, 1e-6, 0.01, false},
		{"negative discount", 52, 4.345, -0.01, false},
		{"infinite discount", 52, 4.345, math.Inf(1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := CLV(m, gg, c, tc.horizon, tc.step, tc.discount)
			if tc.ok && (err != nil || !(v >= 0)) {
				t.Errorf("CLV = %v, %v; want a value and no error", v, err)
			}
			if !tc.ok && err == nil {
				t.Errorf("CLV = %v, want an error", v)
			}
		})
	}
}
