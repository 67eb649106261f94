package basket

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// DefaultMinCoCount is the number of baskets two items must share before
// the Recommender links them, when RecommenderOptions.MinCoCount is zero.
// It is far below a rule-mining support threshold on purpose: next-best
// products for one customer live in the long tail of pairs.
const DefaultMinCoCount = 2

// RecommenderOptions configures NewRecommender.
type RecommenderOptions struct {
	// MinCoCount is the smallest number of baskets that must contain both
	// items of a pair for the pair to score. Zero means DefaultMinCoCount;
	// it must not be negative.
	MinCoCount int
	// MaxLinks keeps only each item's strongest links (by confidence,
	// then by id): scoring a customer then costs at most MaxLinks per item
	// bought, however large the catalogue, and the weakest links, which
	// rarely reach a top ten, are dropped. Zero means DefaultMaxLinks; it
	// must not be negative.
	MaxLinks int
}

// DefaultMaxLinks is the number of links kept per item by default.
const DefaultMaxLinks = 100

// Recommendation is one recommended item.
type Recommendation struct {
	// Item is the recommended item id.
	Item int32
	// Score is the sum of the confidences item → Item over the customer's
	// items; it is 0 for items filled in by popularity.
	Score float64
}

// Recommender scores next-best items for a customer from item-to-item
// co-occurrence in baskets. It is immutable after NewRecommender and safe
// for concurrent use.
type Recommender struct {
	pop   []uint32 // baskets that contain each item
	byPop []int32  // items with pop > 0: pop descending, then id ascending
	// Links in compressed rows: item i links to nbr[start[i]:start[i+1]]
	// (ascending) with confidence conf[...] = co(i, j) / pop[i].
	start []int32
	nbr   []int32
	conf  []float64
	// scratch pools NextBest's workspaces, so concurrent calls never share
	// one and a call allocates only its result.
	scratch sync.Pool
}

// NewRecommender learns item-to-item links from customers' baskets:
// customers[c] holds the baskets of customer c, the shape Evaluate takes.
// Each basket is one transaction, so the grouping does not change the
// links; an item listed twice in a basket counts once. For every pair
// of items that share at least MinCoCount baskets it keeps both directed
// confidences, conf(i → j) = baskets with i and j / baskets with i, and it
// ranks items by popularity (the number of baskets that contain them).
// Item ids must not be negative; memory is proportional to the largest id.
func NewRecommender(customers [][][]int32, o RecommenderOptions) (*Recommender, error) {
	var all sliceSource
	if len(customers) == 1 {
		all = customers[0] // no copy: the grouping does not change the model
	} else {
		for _, c := range customers {
			all = append(all, c...)
		}
	}
	return newRecommender(all, o)
}

// newRecommender is NewRecommender over any source of baskets.
func newRecommender(all source, o RecommenderOptions) (*Recommender, error) {
	if o.MinCoCount < 0 {
		return nil, fmt.Errorf("basket: MinCoCount %d is negative", o.MinCoCount)
	}
	minCo := uint32(o.MinCoCount)
	if minCo == 0 {
		minCo = DefaultMinCoCount
	}
	if o.MaxLinks < 0 {
		return nil, fmt.Errorf("basket: MaxLinks %d is negative", o.MaxLinks)
	}
	maxLinks := o.MaxLinks
	if maxLinks == 0 {
		maxLinks = DefaultMaxLinks
	}
	if all.Len() == 0 {
		return nil, ErrNoBaskets
	}
	maxID, err := maxItem(all)
	if err != nil {
		return nil, err
	}
	r := &Recommender{pop: make([]uint32, maxID+1)}
	r.scratch.New = func() any { return &scoreScratch{} }

	// Popularity, one count per basket.
	stamp := make([]int32, maxID+1)
	for b := range all.Len() {
		for _, it := range all.At(b) {
			if stamp[it] != int32(b+1) {
				stamp[it] = int32(b + 1)
				r.pop[it]++
			}
		}
	}
	for id, p := range r.pop {
		if p > 0 {
			r.byPop = append(r.byPop, int32(id))
		}
	}
	slices.SortStableFunc(r.byPop, func(a, b int32) int { return cmp.Compare(r.pop[b], r.pop[a]) })

	// Pair co-occurrence over items popular enough to reach minCo.
	co := make(map[uint64]uint32)
	var buf []int32
	for b := range all.Len() {
		buf = buf[:0]
		for _, it := range all.At(b) {
			if r.pop[it] >= minCo {
				buf = append(buf, it)
			}
		}
		slices.Sort(buf)
		buf = slices.Compact(buf)
		for x, a := range buf {
			hi := uint64(a) << 32
			for _, b := range buf[x+1:] {
				co[hi|uint64(b)]++
			}
		}
	}
	type link struct {
		from, to int32
		conf     float64
	}
	links := make([]link, 0, len(co)/2)
	for key, c := range co {
		if c < minCo {
			continue
		}
		a, b := int32(key>>32), int32(uint32(key))
		links = append(links,
			link{a, b, float64(c) / float64(r.pop[a])},
			link{b, a, float64(c) / float64(r.pop[b])})
	}
	slices.SortFunc(links, func(x, y link) int {
		if c := cmp.Compare(x.from, y.from); c != 0 {
			return c
		}
		if c := cmp.Compare(y.conf, x.conf); c != 0 {
			return c
		}
		return cmp.Compare(x.to, y.to)
	})
	kept := links[:0]
	for i, l := range links {
		if i >= maxLinks && links[i-maxLinks].from == l.from {
			continue // the item already has its maxLinks strongest
		}
		kept = append(kept, l)
	}
	links = kept
	r.start = make([]int32, maxID+2)
	r.nbr = make([]int32, len(links))
	r.conf = make([]float64, len(links))
	for i, l := range links {
		r.start[l.from+1]++
		r.nbr[i], r.conf[i] = l.to, l.conf
	}
	for i := 1; i < len(r.start); i++ {
		r.start[i] += r.start[i-1]
	}
	return r, nil
}

// Popularity returns the number of training baskets that contain item.
func (r *Recommender) Popularity(item int32) int {
	if item < 0 || int(item) >= len(r.pop) {
		return 0
	}
	return int(r.pop[item])
}

// NextBest returns up to n items the customer has not bought, best first.
// customerItems are the items the customer bought (any order, repeats
// allowed). A candidate's score is the sum, over the customer's items i, of
// conf(i → candidate); summing rewards items linked to many of the
// customer's items, where a maximum would only see the strongest link.
// Ties are broken by popularity, then by smaller id. When fewer than n
// items score, the rest are the most popular items the customer has not
// bought and that were not already recommended, with score 0. Fewer than
// n come back only when the training baskets hold fewer items.
func (r *Recommender) NextBest(customerItems []int32, n int) []Recommendation {
	if n <= 0 {
		return nil
	}
	bought := distinct(customerItems)
	sc := r.scratch.Get().(*scoreScratch)
	defer r.scratch.Put(sc)
	if len(sc.score) < len(r.pop) {
		sc.score = make([]float64, len(r.pop))
	}
	touched := sc.touched[:0]
	// Bought items are marked with a negative score so the inner loop
	// skips them without a search.
	for _, i := range bought {
		if i >= 0 && int(i) < len(r.pop) {
			sc.score[i] = -1
		}
	}
	for _, i := range bought {
		if i < 0 || int(i) >= len(r.pop) {
			continue
		}
		for k := r.start[i]; k < r.start[i+1]; k++ {
			j := r.nbr[k]
			if sc.score[j] < 0 {
				continue
			}
			if sc.score[j] == 0 {
				touched = append(touched, j)
			}
			sc.score[j] += r.conf[k]
		}
	}
	// Keep the n best in a small heap (worst at the root) rather than
	// sorting every candidate: customers touch thousands, want ten.
	better := func(a, b Recommendation) bool {
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if pa, pb := r.pop[a.Item], r.pop[b.Item]; pa != pb {
			return pa > pb
		}
		return a.Item < b.Item
	}
	top := make([]Recommendation, 0, n)
	down := func(i int) {
		for {
			w, l, rt := i, 2*i+1, 2*i+2
			if l < len(top) && better(top[w], top[l]) {
				w = l
			}
			if rt < len(top) && better(top[w], top[rt]) {
				w = rt
			}
			if w == i {
				return
			}
			top[i], top[w] = top[w], top[i]
			i = w
		}
	}
	for _, j := range touched {
		c := Recommendation{Item: j, Score: sc.score[j]}
		switch {
		case len(top) < n:
			top = append(top, c)
			for i := len(top) - 1; i > 0; { // sift up
				p := (i - 1) / 2
				if !better(top[p], top[i]) {
					break
				}
				top[p], top[i] = top[i], top[p]
				i = p
			}
		case better(c, top[0]):
			top[0] = c
			down(0)
		}
	}
	slices.SortFunc(top, func(a, b Recommendation) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	if len(top) < n {
		for _, it := range r.byPop {
			if len(top) == n {
				break
			}
			if sc.score[it] == 0 { // neither scored nor bought
				top = append(top, Recommendation{Item: it})
			}
		}
	}
	for _, j := range touched {
		sc.score[j] = 0
	}
	for _, i := range bought {
		if i >= 0 && int(i) < len(r.pop) {
			sc.score[i] = 0
		}
	}
	sc.touched = touched[:0]
	return top
}

// scoreScratch is NextBest's per-call workspace: a dense score per item
// and the items touched, reset after use.
type scoreScratch struct {
	score   []float64
	touched []int32
}

// Popular returns up to n of the most popular items the customer has not
// bought, with score 0: the most-popular baseline NextBest is measured
// against. Ties are broken by smaller id.
func (r *Recommender) Popular(customerItems []int32, n int) []Recommendation {
	if n <= 0 {
		return nil
	}
	bought := distinct(customerItems)
	var out []Recommendation
	for _, it := range r.byPop {
		if len(out) == n {
			break
		}
		if !contains(bought, it) {
			out = append(out, Recommendation{Item: it})
		}
	}
	return out
}

// distinct returns the items sorted ascending without repeats, in a new
// slice.
func distinct(items []int32) []int32 {
	out := slices.Clone(items)
	slices.Sort(out)
	return slices.Compact(out)
}

// contains reports whether sorted holds item.
func contains(sorted []int32, item int32) bool {
	_, ok := slices.BinarySearch(sorted, item)
	return ok
}
