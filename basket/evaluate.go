package basket

import (
	"errors"
	"fmt"
)

// Evaluation is the cross-sell quality of NextBest against the
// most-popular baseline, measured by Evaluate.
type Evaluation struct {
	// N is the number of items recommended to each customer.
	N int
	// Customers is the number of customers evaluated: those with at least
	// two non-empty baskets.
	Customers int
	// Hits is the number of evaluated customers for whom NextBest put at
	// least one item of the held-out basket in its top N.
	Hits int
	// BaselineHits is the same count for the most-popular baseline.
	BaselineHits int
	// HitRate is Hits / Customers.
	HitRate float64
	// BaselineHitRate is BaselineHits / Customers.
	BaselineHitRate float64
}

// Evaluate measures hit rate@n of NextBest on each customer's last basket
// held out, against recommending the most popular items. customers[c]
// holds the baskets of customer c in time order; empty baskets are ignored.
// Every customer with at least two baskets is evaluated: the Recommender is
// trained on all baskets except the held-out last basket of every evaluated
// customer (customers with one basket only train), each evaluated customer
// gets n items not bought in their training baskets from NextBest and from
// Recommender.Popular, and a hit is at least one of those items being in
// the held-out basket. It returns an error if n is not positive or no
// customer has two baskets.
func Evaluate(customers [][][]int32, n int, o RecommenderOptions) (Evaluation, error) {
	if n <= 0 {
		return Evaluation{}, fmt.Errorf("basket: evaluate top %d: n must be positive", n)
	}
	train := make([][][]int32, len(customers))
	var heldOut [][]int32
	var evaluated []int
	for c, bs := range customers {
		for _, b := range bs {
			if len(b) > 0 {
				train[c] = append(train[c], b)
			}
		}
		if len(train[c]) >= 2 {
			last := len(train[c]) - 1
			heldOut = append(heldOut, train[c][last])
			train[c] = train[c][:last]
			evaluated = append(evaluated, c)
		}
	}
	if len(evaluated) == 0 {
		return Evaluation{}, errors.New("basket: evaluate: no customer has two baskets")
	}
	r, err := NewRecommender(train, o)
	if err != nil {
		return Evaluation{}, err
	}
	e := Evaluation{N: n, Customers: len(evaluated)}
	for k, c := range evaluated {
		var bought []int32
		for _, b := range train[c] {
			bought = append(bought, b...)
		}
		target := distinct(heldOut[k])
		if hit(r.NextBest(bought, n), target) {
			e.Hits++
		}
		if hit(r.Popular(bought, n), target) {
			e.BaselineHits++
		}
	}
	e.HitRate = float64(e.Hits) / float64(e.Customers)
	e.BaselineHitRate = float64(e.BaselineHits) / float64(e.Customers)
	return e, nil
}

// hit reports whether any recommended item is in the sorted target.
func hit(recs []Recommendation, target []int32) bool {
	for _, rec := range recs {
		if contains(target, rec.Item) {
			return true
		}
	}
	return false
}
