package basket

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestUpsell(t *testing.T) {
	catalog := []Product{
		{"mug-s", "mugs", 5},
		{"mug-m", "mugs", 8},
		{"mug-l", "mugs", 12},
		{"mug-xl", "mugs", 12},
		{"mug-dup", "mugs", 30},
		{"mug-dup", "mugs", 9}, // listed twice: the lower price counts
		{"mug-nan", "mugs", math.NaN()},
		{"tea-a", "tea", 3},
		{"tea-b", "tea", 4.5},
		{"tea-c", "tea", 4},
		{"pen", "stationery", 20},
		{"loose", "", 100},
		{"", "mugs", 10},
	}
	// Ceilings: mugs 8 (the most paid there), tea 3.5. Steps: tea-c 0.5,
	// mug-dup 1, tea-b 1, mug-l 4, mug-xl 4.
	purchases := []Purchase{
		{"mug-m", "mugs", 8},
		{"mug-s", "mugs", 6},
		{"tea-a", "tea", 3.5},
		{"gift", "", 50},
	}
	all := []string{"tea-c", "mug-dup", "tea-b", "mug-l", "mug-xl"}
	tests := []struct {
		name      string
		purchases []Purchase
		n         int
		want      []string
	}{
		{"smallest step first, then id", purchases, 10, all},
		{"top n", purchases, 2, all[:2]},
		{"n zero", purchases, 0, nil},
		{"bought products are not offered", append(slices.Clone(purchases), Purchase{"mug-l", "mugs", 7}), 10,
			[]string{"tea-c", "mug-dup", "tea-b", "mug-xl"}},
		// mug-dup's lower listing (9) is under the ceiling of 11.
		{"highest price paid sets the ceiling", []Purchase{{"mug-s", "mugs", 5}, {"mug-x", "mugs", 11}}, 10,
			[]string{"mug-l", "mug-xl"}},
		{"only categories bought in", []Purchase{{"tea-a", "tea", 3}}, 10, []string{"tea-c", "tea-b"}},
		{"nothing above the top price", []Purchase{{"pen", "stationery", 20}}, 10, []string{}},
		{"no purchases", nil, 10, []string{}},
		{"uncategorised purchases give no ceiling", []Purchase{{"gift", "", 1}}, 10, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Upsell(catalog, tt.purchases, tt.n)
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Upsell = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestUpsellerMatchesBruteForce checks the indexed search against the rule
// applied literally to every product, on random catalogues.
func TestUpsellerMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		var catalog []Product
		for i := range 5 + rng.IntN(40) {
			catalog = append(catalog, Product{ID: fmt.Sprintf("p%02d", i), Category: fmt.Sprintf("c%d", rng.IntN(4)), Price: float64(rng.IntN(20))})
		}
		var purchases []Purchase
		for range rng.IntN(6) {
			p := catalog[rng.IntN(len(catalog))]
			purchases = append(purchases, Purchase{Product: p.ID, Category: p.Category, Price: p.Price + float64(rng.IntN(3)-1)})
		}
		n := 1 + rng.IntN(6)
		ceiling := map[string]float64{}
		bought := map[string]bool{}
		for _, p := range purchases {
			bought[p.Product] = true
			if c, ok := ceiling[p.Category]; !ok || p.Price > c {
				ceiling[p.Category] = p.Price
			}
		}
		type cand struct {
			id   string
			step float64
		}
		var all []cand
		for _, p := range catalog { // catalogue ids are unique here
			if c, ok := ceiling[p.Category]; ok && p.Price > c && !bought[p.ID] {
				all = append(all, cand{p.ID, p.Price - c})
			}
		}
		slices.SortFunc(all, func(a, b cand) int {
			if c := cmp.Compare(a.step, b.step); c != 0 {
				return c
			}
			return cmp.Compare(a.id, b.id)
		})
		want := []string{}
		for _, c := range all[:min(n, len(all))] {
			want = append(want, c.id)
		}
		if got := NewUpseller(catalog).Upsell(purchases, n); !slices.Equal(got, want) {
			t.Fatalf("trial %d: got %v, want %v", trial, got, want)
		}
	}
}
