package basket

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

const eps = 1e-12

func near(a, b float64) bool { return math.Abs(a-b) <= eps }

// Five baskets over items 0..3: each of 0, 1, 2 is in 4 baskets, each pair
// of them in 3, the triple in 2; item 3 is in 1 basket.
var triangle = [][]int32{{0, 1, 2}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2, 3}}

type wantRule struct {
	ante, cons                 []int32
	count                      int
	supp, anteSupp, conf, lift float64
}

func TestMineHandComputed(t *testing.T) {
	// triangle at MinSupport 0.4 (2 of 5 baskets):
	//   pair rules:   support 3/5, antecedent 4/5, confidence 3/4, lift 3/4 / (4/5) = 15/16
	//   1 → 2 rules:  support 2/5, antecedent 4/5, confidence 1/2, lift 1/2 / (3/5) = 5/6
	//   2 → 1 rules:  support 2/5, antecedent 3/5, confidence 2/3, lift 2/3 / (4/5) = 5/6
	pair := func(a, c int32) wantRule {
		return wantRule{[]int32{a}, []int32{c}, 3, 0.6, 0.8, 0.75, 15.0 / 16}
	}
	oneTwo := func(a int32, c ...int32) wantRule {
		return wantRule{[]int32{a}, c, 2, 0.4, 0.8, 0.5, 5.0 / 6}
	}
	twoOne := func(a0, a1, c int32) wantRule {
		return wantRule{[]int32{a0, a1}, []int32{c}, 2, 0.4, 0.6, 2.0 / 3, 5.0 / 6}
	}
	pairs := []wantRule{pair(0, 1), pair(0, 2), pair(1, 0), pair(1, 2), pair(2, 0), pair(2, 1)}
	// Sorted by lift, then confidence, then support, then items.
	all := append(slices.Clone(pairs),
		twoOne(0, 1, 2), twoOne(0, 2, 1), twoOne(1, 2, 0),
		oneTwo(0, 1, 2), oneTwo(1, 0, 2), oneTwo(2, 0, 1))

	tests := []struct {
		name    string
		baskets [][]int32
		opts    Options
		want    []wantRule
	}{
		{"all rules", triangle, Options{MinSupport: 0.4}, all},
		{"MaxLen 2 stops at pairs", triangle, Options{MinSupport: 0.4, MaxLen: 2}, pairs},
		{"MaxLen 1 gives no rules", triangle, Options{MinSupport: 0.4, MaxLen: 1}, nil},
		{"MinConfidence drops weaker rules", triangle, Options{MinSupport: 0.4, MinConfidence: 0.7}, pairs},
		{"MinConfidence is inclusive", triangle, Options{MinSupport: 0.4, MinConfidence: 2.0 / 3}, all[:9]},
		{"MinLift drops rules below it", triangle, Options{MinSupport: 0.4, MinLift: 0.9}, pairs},
		{"MinSupport above the triple", triangle, Options{MinSupport: 0.5}, pairs},
		{"MinSupport above the pairs", triangle, Options{MinSupport: 0.7}, nil},
		{
			// 0 and 1 always together: support 1/2, confidence 1, lift 1 / (1/2) = 2.
			// The empty basket counts in the denominator; repeats count once.
			"lift above one with an empty basket and repeats",
			[][]int32{{0, 1, 1}, {1, 0}, {2}, {}},
			Options{MinSupport: 0.5},
			[]wantRule{
				{[]int32{0}, []int32{1}, 2, 0.5, 0.5, 1, 2},
				{[]int32{1}, []int32{0}, 2, 0.5, 0.5, 1, 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Mine(tt.baskets, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rules, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				g := got[i]
				if !slices.Equal(g.Antecedent, w.ante) || !slices.Equal(g.Consequent, w.cons) {
					t.Errorf("rule %d = %v → %v, want %v → %v", i, g.Antecedent, g.Consequent, w.ante, w.cons)
					continue
				}
				consSupp := w.conf / w.lift
				if g.Count != w.count || !near(g.Support, w.supp) || !near(g.AntecedentSupport, w.anteSupp) ||
					!near(g.ConsequentSupport, consSupp) || !near(g.Confidence, w.conf) || !near(g.Lift, w.lift) {
					t.Errorf("rule %v → %v = %+v, want count %d support %v antecedent %v consequent %v confidence %v lift %v",
						w.ante, w.cons, g, w.count, w.supp, w.anteSupp, consSupp, w.conf, w.lift)
				}
			}
		})
	}
}

func TestFrequentItemsetsHandComputed(t *testing.T) {
	got, err := FrequentItemsets(triangle, Options{MinSupport: 0.4})
	if err != nil {
		t.Fatal(err)
	}
	want := []Itemset{
		{[]int32{0}, 4, 0.8}, {[]int32{1}, 4, 0.8}, {[]int32{2}, 4, 0.8},
		{[]int32{0, 1}, 3, 0.6}, {[]int32{0, 2}, 3, 0.6}, {[]int32{1, 2}, 3, 0.6},
		{[]int32{0, 1, 2}, 2, 0.4},
	}
	if !equalItemsets(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	// MinSupport 1 keeps only what is in every basket; 1/5 keeps item 3
	// and every subset of basket {0, 1, 2, 3}.
	got, _ = FrequentItemsets(triangle, Options{MinSupport: 1})
	if len(got) != 0 {
		t.Errorf("MinSupport 1: got %v, want none", got)
	}
	got, _ = FrequentItemsets(triangle, Options{MinSupport: 0.2})
	if len(got) != 15 {
		t.Errorf("MinSupport 0.2: got %d itemsets, want 15 (all non-empty subsets of 4 items)", len(got))
	}
}

// TestAprioriPruning checks that a joined candidate survives only if all
// its subsets one smaller are frequent.
func TestAprioriPruning(t *testing.T) {
	tests := []struct {
		name string
		prev level
		want []int32
	}{
		{
			// Joins on prefix 0 give 012, 013, 023; 13 and 23 are not
			// frequent, so only 012 survives.
			"pairs", level{k: 2, sets: []int32{0, 1, 0, 2, 0, 3, 1, 2}, counts: make([]uint32, 4)},
			[]int32{0, 1, 2},
		},
		{
			// Joins give 0123 (all of 012 013 023 123 present) and 0124
			// (014 missing).
			"triples", level{k: 3, sets: []int32{0, 1, 2, 0, 1, 3, 0, 1, 4, 0, 2, 3, 0, 2, 4, 1, 2, 3}, counts: make([]uint32, 6)},
			[]int32{0, 1, 2, 3},
		},
		{"no shared prefix", level{k: 2, sets: []int32{0, 1, 2, 3}, counts: make([]uint32, 2)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := candidates(&tt.prev)
			if !slices.Equal(got.sets, tt.want) || len(got.counts)*got.k != len(tt.want) {
				t.Errorf("candidates = %v, want %v", got.sets, tt.want)
			}
		})
	}

	// End to end: {0,1} and {0,2} are frequent but {1,2} is not, so {0,1,2}
	// is never frequent even though it is a join of two frequent pairs.
	baskets := [][]int32{{0, 1}, {0, 1}, {0, 2}, {0, 2}, {0, 1, 2}}
	got, err := FrequentItemsets(baskets, Options{MinSupport: 0.4})
	if err != nil {
		t.Fatal(err)
	}
	want := []Itemset{
		{[]int32{0}, 5, 1}, {[]int32{1}, 3, 0.6}, {[]int32{2}, 3, 0.6},
		{[]int32{0, 1}, 3, 0.6}, {[]int32{0, 2}, 3, 0.6},
	}
	if !equalItemsets(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestMineMatchesBruteForce compares Apriori with counting every subset of
// a small item universe, on random baskets, through both pair counters.
func TestMineMatchesBruteForce(t *testing.T) {
	const items = 9
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		baskets := make([][]int32, 20+rng.IntN(60))
		for i := range baskets {
			for range rng.IntN(8) {
				// Skewed so that long itemsets are frequent.
				baskets[i] = append(baskets[i], int32(min(rng.IntN(items), rng.IntN(items))))
			}
		}
		opts := Options{MinSupport: []float64{0.05, 0.1, 0.2, 0.3}[round%4], MaxLen: []int{0, 0, 3, 4}[round/4%4]}
		want := bruteForce(baskets, items, opts)

		for _, dense := range []bool{true, false} {
			if !dense {
				old := denseTriangleMax
				denseTriangleMax = 0
				defer func() { denseTriangleMax = old }()
			}
			got, err := FrequentItemsets(baskets, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !equalItemsets(got, want) {
				t.Fatalf("round %d dense %v %+v:\n got %v\nwant %v", round, dense, opts, got, want)
			}
			rules, err := Mine(baskets, opts)
			if err != nil {
				t.Fatal(err)
			}
			support := map[string]int{}
			wantRules := 0
			for _, s := range want {
				support[key(s.Items)] = s.Count
				if len(s.Items) >= 2 {
					wantRules += 1<<len(s.Items) - 2
				}
			}
			if len(rules) != wantRules {
				t.Fatalf("round %d: %d rules, want %d", round, len(rules), wantRules)
			}
			n := float64(len(baskets))
			for i, r := range rules {
				joint := append(slices.Clone(r.Antecedent), r.Consequent...)
				slices.Sort(joint)
				ca, cc, cj := support[key(r.Antecedent)], support[key(r.Consequent)], support[key(joint)]
				if r.Count != cj || !near(r.Support, float64(cj)/n) ||
					!near(r.AntecedentSupport, float64(ca)/n) || !near(r.ConsequentSupport, float64(cc)/n) ||
					!near(r.Confidence, float64(cj)/float64(ca)) || !near(r.Lift, float64(cj)*n/float64(ca)/float64(cc)) {
					t.Fatalf("round %d: rule %+v disagrees with counts %d %d %d", round, r, ca, cc, cj)
				}
				if i > 0 && rules[i-1].Lift < r.Lift {
					t.Fatalf("round %d: rules not sorted by lift", round)
				}
			}
		}
	}
}

func TestMineValidation(t *testing.T) {
	ok := [][]int32{{0, 1}}
	tests := []struct {
		name    string
		baskets [][]int32
		opts    Options
	}{
		{"no baskets", nil, Options{MinSupport: 0.1}},
		{"empty basket list", [][]int32{}, Options{MinSupport: 0.1}},
		{"MinSupport zero", ok, Options{}},
		{"MinSupport negative", ok, Options{MinSupport: -0.1}},
		{"MinSupport above one", ok, Options{MinSupport: 1.01}},
		{"MinSupport NaN", ok, Options{MinSupport: math.NaN()}},
		{"MinConfidence above one", ok, Options{MinSupport: 0.1, MinConfidence: 1.5}},
		{"MinConfidence negative", ok, Options{MinSupport: 0.1, MinConfidence: -0.5}},
		{"MinLift negative", ok, Options{MinSupport: 0.1, MinLift: -1}},
		{"MaxLen negative", ok, Options{MinSupport: 0.1, MaxLen: -1}},
		{"negative item id", [][]int32{{0, -3}}, Options{MinSupport: 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Mine(tt.baskets, tt.opts); err == nil {
				t.Error("Mine: want an error")
			}
		})
	}
	if _, err := FrequentItemsets(nil, Options{MinSupport: 0.5}); err != ErrNoBaskets {
		t.Errorf("FrequentItemsets(nil) error = %v, want ErrNoBaskets", err)
	}
	// Only empty baskets is valid input with nothing frequent.
	if rules, err := Mine([][]int32{{}, {}}, Options{MinSupport: 0.5}); err != nil || len(rules) != 0 {
		t.Errorf("Mine(empty baskets) = %v, %v; want no rules, no error", rules, err)
	}
}

func TestMinCountFor(t *testing.T) {
	tests := []struct {
		support float64
		n       int
		want    uint32
	}{
		{0.07, 392, 28}, // 27.44
		{0.4, 5, 2},     // exactly 2
		{0.3, 10, 3},    // 0.3*10 rounds to 3.0000000000000004 in float64
		{1, 7, 7},
		{1e-9, 10, 1},
	}
	for _, tt := range tests {
		if got := minCountFor(tt.support, tt.n); got != tt.want {
			t.Errorf("minCountFor(%v, %d) = %d, want %d", tt.support, tt.n, got, tt.want)
		}
	}
}

func TestInterner(t *testing.T) {
	var in Interner
	a, b, a2 := in.ID("a"), in.ID("b"), in.ID("a")
	if a != 0 || b != 1 || a2 != 0 || in.Len() != 2 {
		t.Errorf("ids = %d %d %d, len %d; want 0 1 0, len 2", a, b, a2, in.Len())
	}
	if id, ok := in.Lookup("b"); !ok || id != 1 {
		t.Errorf("Lookup(b) = %d, %v", id, ok)
	}
	if _, ok := in.Lookup("c"); ok || in.Len() != 2 {
		t.Error("Lookup(c) must not assign an id")
	}
	if got := in.Names([]int32{1, 0, 7, -1}); !slices.Equal(got, []string{"b", "a", "", ""}) {
		t.Errorf("Names = %q", got)
	}
}

// bruteForce counts every subset of items 0..universe-1.
func bruteForce(baskets [][]int32, universe int, o Options) []Itemset {
	var out []Itemset
	minCount := minCountFor(o.MinSupport, len(baskets))
	for size := 1; size <= universe; size++ {
		if o.MaxLen > 0 && size > o.MaxLen {
			break
		}
		var sets [][]int32
		for mask := 1; mask < 1<<universe; mask++ {
			var s []int32
			for i := range universe {
				if mask&(1<<i) != 0 {
					s = append(s, int32(i))
				}
			}
			if len(s) == size {
				sets = append(sets, s)
			}
		}
		slices.SortFunc(sets, slices.Compare)
		for _, s := range sets {
			c := 0
			for _, b := range baskets {
				if containsAll(b, s) {
					c++
				}
			}
			if uint32(c) >= minCount {
				out = append(out, Itemset{s, c, float64(c) / float64(len(baskets))})
			}
		}
	}
	return out
}

func containsAll(b, s []int32) bool {
	for _, it := range s {
		if !slices.Contains(b, it) {
			return false
		}
	}
	return true
}

func equalItemsets(a, b []Itemset) bool {
	return slices.EqualFunc(a, b, func(x, y Itemset) bool {
		return slices.Equal(x.Items, y.Items) && x.Count == y.Count && near(x.Support, y.Support)
	})
}

func key(items []int32) string {
	b := make([]byte, 0, 4*len(items))
	for _, it := range items {
		b = append(b, byte(it), byte(it>>8), byte(it>>16), byte(it>>24))
	}
	return string(b)
}
