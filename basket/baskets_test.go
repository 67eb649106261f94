package basket

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestBasketsMatchSlices checks that the flat Baskets and [][]int32 give
// the miner and the recommender the same baskets: same rules, same
// next-best items, including empty baskets and repeated items.
func TestBasketsMatchSlices(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		slices := make([][]int32, 30+rng.IntN(200))
		var flat Baskets
		for i := range slices {
			for range rng.IntN(7) {
				slices[i] = append(slices[i], int32(min(rng.IntN(12), rng.IntN(12))))
			}
			if err := flat.Add(slices[i]); err != nil {
				t.Fatal(err)
			}
		}
		if flat.Len() != len(slices) {
			t.Fatalf("round %d: Len %d, want %d", round, flat.Len(), len(slices))
		}
		for i, want := range slices {
			if got := flat.At(i); len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("round %d: basket %d is %v, want %v", round, i, got, want)
			}
		}
		o := Options{MinSupport: 0.05, MinConfidence: 0.1}
		want, err := Mine(slices, o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := flat.Mine(o)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: %d rules from Baskets, %d from slices (they must be equal and not none)", round, len(got), len(want))
		}
		ro := RecommenderOptions{MaxLinks: 3}
		wr, err := NewRecommender([][][]int32{slices}, ro)
		if err != nil {
			t.Fatal(err)
		}
		gr, err := flat.Recommender(ro)
		if err != nil {
			t.Fatal(err)
		}
		for _, bought := range slices[:20] {
			if w, g := wr.NextBest(bought, 5), gr.NextBest(bought, 5); !reflect.DeepEqual(g, w) {
				t.Fatalf("round %d: next best for %v: %v from Baskets, %v from slices", round, bought, g, w)
			}
		}
	}
}

func TestBasketsEmptyAndNegative(t *testing.T) {
	var b Baskets
	if _, err := b.Mine(Options{MinSupport: 0.5}); !errors.Is(err, ErrNoBaskets) {
		t.Fatalf("Mine of no baskets: %v, want ErrNoBaskets", err)
	}
	if _, err := b.Recommender(RecommenderOptions{}); !errors.Is(err, ErrNoBaskets) {
		t.Fatalf("Recommender of no baskets: %v, want ErrNoBaskets", err)
	}
	if err := b.Add([]int32{1, -2}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Mine(Options{MinSupport: 0.5}); err == nil {
		t.Fatal("Mine accepted a negative item id")
	}
}
