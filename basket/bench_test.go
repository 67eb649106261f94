package basket

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

const (
	benchBaskets = 200_000
	benchItems   = 5_000
	benchBundles = 300
)

// synthetic returns benchBaskets baskets over benchItems items: 1 to 16
// items each drawn from a Zipf distribution (s = 1.1), and in a third of
// the baskets one of benchBundles fixed 3- or 4-item bundles, itself
// Zipf-chosen, so that frequent itemsets beyond pairs exist.
var synthetic = sync.OnceValue(func() [][]int32 {
	rng := rand.New(rand.NewPCG(7, 11))
	items := rand.NewZipf(rng, 1.1, 1, benchItems-1)
	bundlePick := rand.NewZipf(rng, 1.2, 1, benchBundles-1)
	bundles := make([][]int32, benchBundles)
	for i := range bundles {
		for range 3 + rng.IntN(2) {
			bundles[i] = append(bundles[i], int32(rng.IntN(benchItems)))
		}
	}
	baskets := make([][]int32, benchBaskets)
	for i := range baskets {
		b := make([]int32, 0, 20)
		for range 1 + rng.IntN(16) {
			b = append(b, int32(items.Uint64()))
		}
		if rng.IntN(3) == 0 {
			b = append(b, bundles[bundlePick.Uint64()]...)
		}
		baskets[i] = b
	}
	return baskets
})

func BenchmarkMine(b *testing.B) {
	baskets := synthetic()
	for _, minSupport := range []float64{0.01, 0.002} {
		b.Run("support="+strconv.FormatFloat(minSupport, 'g', -1, 64), func(b *testing.B) {
			var rules []Rule
			for b.Loop() {
				var err error
				rules, err = Mine(baskets, Options{MinSupport: minSupport, MinLift: 1})
				if err != nil {
					b.Fatal(err)
				}
			}
			sets, _ := FrequentItemsets(baskets, Options{MinSupport: minSupport})
			b.ReportMetric(float64(len(sets)), "itemsets")
			b.ReportMetric(float64(len(rules)), "rules")
		})
	}
	// The same mining with frequent pairs counted in the uint64-keyed map,
	// the path taken when there are too many frequent items for the dense
	// triangle.
	b.Run("support=0.002/pairmap", func(b *testing.B) {
		old := denseTriangleMax
		denseTriangleMax = 0
		defer func() { denseTriangleMax = old }()
		for b.Loop() {
			if _, err := Mine(baskets, Options{MinSupport: 0.002, MinLift: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkNewRecommender(b *testing.B) {
	baskets := synthetic()
	customers := make([][][]int32, 0, len(baskets)/4)
	for i := 0; i < len(baskets); i += 4 {
		customers = append(customers, baskets[i:min(i+4, len(baskets))])
	}
	var r *Recommender
	for b.Loop() {
		var err error
		r, err = NewRecommender(customers, RecommenderOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(r.nbr)), "links")
}

func BenchmarkNextBest(b *testing.B) {
	baskets := synthetic()
	r, err := NewRecommender([][][]int32{baskets}, RecommenderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		var bought []int32
		for _, bk := range baskets[i%1000*4 : i%1000*4+4] {
			bought = append(bought, bk...)
		}
		r.NextBest(bought, 10)
		i++
	}
}

// BenchmarkUpsell asks for ten step-ups for customers of 15 purchases in
// a catalogue of 2,000 products in 50 categories (the insight benchmark's
// shape).
func BenchmarkUpsell(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	var catalog []Product
	for i := range 2000 {
		catalog = append(catalog, Product{ID: "prod-" + strconv.Itoa(i), Category: "cat-" + strconv.Itoa(i%50), Price: float64(1 + rng.IntN(200))})
	}
	u := NewUpseller(catalog)
	customers := make([][]Purchase, 1000)
	for i := range customers {
		for range 15 {
			p := catalog[rng.IntN(len(catalog))]
			customers[i] = append(customers[i], Purchase{Product: p.ID, Category: p.Category, Price: p.Price})
		}
	}
	i := 0
	for b.Loop() {
		u.Upsell(customers[i%len(customers)], 10)
		i++
	}
}
