package btyd

import (
	"fmt"
	"math"
)

// maxCLVSteps bounds the number of steps CLV sums.
const maxCLVSteps = 1_000_000

// validateCLV reports whether CLV can value a customer over horizon time
// units in steps of step at a discount rate of discount per step.
func validateCLV(horizon, step, discount float64) error {
	switch {
	case !(horizon >= 0 && horizon <= math.MaxFloat64):
		return fmt.Errorf("btyd: CLV horizon must be finite and not negative, got %v", horizon)
	case !(step > 0 && step <= math.MaxFloat64):
		return fmt.Errorf("btyd: CLV step must be positive and finite, got %v", step)
	case !(discount >= 0 && discount <= math.MaxFloat64):
		return fmt.Errorf("btyd: CLV discount rate must be finite and not negative, got %v", discount)
	case horizon/step > maxCLVSteps:
		return fmt.Errorf("btyd: CLV step %v cuts the horizon %v into more than %d steps", step, horizon, maxCLVSteps)
	}
	return nil
}

// CLV is customer c's lifetime value over the next horizon time units, as
// lifetimes' customer_lifetime_value defines it: the horizon is cut into
// steps of length step (the last one shorter if step does not divide it),
// the purchases m expects of c in step i, ConditionalExpected(c, t_i) −
// ConditionalExpected(c, t_{i−1}) with t_i = min(i·step, horizon), are
// valued at the spend gg expects of c, and step i is discounted by
// (1+discount)^i, so discount is the rate per step: with weeks as the time
// unit, step 4.345 and discount 0.01 value a year month by month at 1% a
// month. With discount 0 it is ConditionalExpected(c, horizon) times the
// expected spend.
//
// The horizon must be finite and not negative, the step positive and no
// shorter than a millionth of the horizon, and the discount rate finite
// and not negative; otherwise CLV returns an error.
func CLV(m Model, gg GammaGamma, c Customer, horizon, step, discount float64) (float64, error) {
	n, err := DiscountedPurchases(m, c, horizon, step, discount)
	if err != nil {
		return 0, err
	}
	return gg.ExpectedSpend(c) * n, nil
}

// DiscountedPurchases is CLV without the spend: the purchases m expects of
// c in each step of the horizon, each discounted as CLV discounts it, and
// summed. It depends on c's purchase counts and times only, not on its
// spend, so customers with the same history share it (a million customers
// have about half as many distinct histories), and CLV is it times the
// expected spend.
func DiscountedPurchases(m Model, c Customer, horizon, step, discount float64) (float64, error) {
	if err := validateCLV(horizon, step, discount); err != nil {
		return 0, err
	}
	// The relative slack keeps a horizon that is a whole number of steps
	// from gaining an empty last step to rounding.
	steps := int(math.Ceil(horizon / step * (1 - 1e-12)))
	var value, before float64
	for i := 1; i <= steps; i++ {
		after := m.ConditionalExpected(c, math.Min(float64(i)*step, horizon))
		value += (after - before) / math.Pow(1+discount, float64(i))
		before = after
	}
	return value, nil
}
