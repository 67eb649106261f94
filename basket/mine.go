package basket

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Options configures FrequentItemsets and Mine.
type Options struct {
	// MinSupport is the smallest fraction of all baskets an itemset must
	// appear in to be frequent. It is required and must lie in (0, 1]. As in
	// mlxtend, an itemset is frequent when count/len(baskets) >= MinSupport.
	MinSupport float64
	// MinConfidence drops rules whose confidence is below it. Zero keeps
	// every rule; otherwise it must lie in [0, 1].
	MinConfidence float64
	// MinLift drops rules whose lift is below it. Zero keeps every rule; it
	// must not be negative. mlxtend's association_rules(metric="lift",
	// min_threshold=1) is MinLift 1.
	MinLift float64
	// MaxLen caps the size of frequent itemsets, and so the size of
	// antecedent plus consequent. Zero means no cap; MaxLen 1 yields
	// frequent single items and no rules.
	MaxLen int
}

// Itemset is a frequent itemset.
type Itemset struct {
	// Items are the item ids, sorted ascending.
	Items []int32
	// Count is the number of baskets that contain every item.
	Count int
	// Support is Count divided by the number of baskets.
	Support float64
}

// Rule is an association rule Antecedent → Consequent. The two itemsets
// are disjoint, non-empty and sorted ascending. Metrics follow mlxtend:
// Support is the joint support of Antecedent ∪ Consequent, Confidence is
// Support / AntecedentSupport and Lift is Confidence / ConsequentSupport.
type Rule struct {
	// Antecedent is the "if bought" side of the rule.
	Antecedent []int32
	// Consequent is the "then also bought" side of the rule.
	Consequent []int32
	// Count is the number of baskets that contain both sides.
	Count int
	// Support is the fraction of baskets that contain both sides.
	Support float64
	// AntecedentSupport is the fraction of baskets that contain Antecedent.
	AntecedentSupport float64
	// ConsequentSupport is the fraction of baskets that contain Consequent.
	ConsequentSupport float64
	// Confidence is the fraction of baskets with Antecedent that also
	// contain Consequent.
	Confidence float64
	// Lift is Confidence relative to ConsequentSupport; above 1 means the
	// sides occur together more often than if they were independent.
	Lift float64
}

// denseTriangleMax is the largest number of frequent-item pairs counted in
// a dense triangular array (4 bytes each, 32 MiB); beyond it pairs are
// counted in a map keyed by the packed pair. Tests lower it to exercise
// the map.
var denseTriangleMax = 1 << 23

// FrequentItemsets returns every itemset whose support is at least
// o.MinSupport (and whose size is at most o.MaxLen when set), found with
// level-wise Apriori: items are counted first, pairs are counted over
// frequent items only, and each larger candidate is kept only if all of its
// subsets one item smaller are frequent. The result is sorted by size, then
// by items. Every basket counts in the denominator, even an empty one.
// Item ids must not be negative; memory is proportional to the largest id,
// so use dense ids (see Interner). Only MinSupport and MaxLen of o are used.
func FrequentItemsets(baskets [][]int32, o Options) ([]Itemset, error) {
	m, err := mine(sliceSource(baskets), o)
	if err != nil {
		return nil, err
	}
	var out []Itemset
	for r, c := range m.itemCount {
		out = append(out, m.itemset([]int32{int32(r)}, c))
	}
	for k := 2; k < len(m.levels); k++ {
		l := &m.levels[k]
		for i := range l.counts {
			out = append(out, m.itemset(l.at(i), l.counts[i]))
		}
	}
	return out, nil
}

// Mine returns the association rules of the frequent itemsets of baskets
// (see FrequentItemsets): for every frequent itemset of two or more items,
// every non-empty proper subset as antecedent with the rest as consequent,
// as mlxtend's association_rules does, keeping rules whose confidence and
// lift reach o.MinConfidence and o.MinLift. Rules are sorted by lift
// descending, then confidence descending, then support descending, then
// antecedent and consequent ascending (shorter first on a common prefix),
// so the order is deterministic.
func Mine(baskets [][]int32, o Options) ([]Rule, error) {
	return mineRules(sliceSource(baskets), o)
}

// mineRules is Mine over any source of baskets.
func mineRules(baskets source, o Options) ([]Rule, error) {
	if o.MinConfidence < 0 || o.MinConfidence > 1 || math.IsNaN(o.MinConfidence) {
		return nil, fmt.Errorf("basket: MinConfidence %v outside [0, 1]", o.MinConfidence)
	}
	if o.MinLift < 0 || math.IsNaN(o.MinLift) {
		return nil, fmt.Errorf("basket: MinLift %v is negative", o.MinLift)
	}
	m, err := mine(baskets, o)
	if err != nil {
		return nil, err
	}
	n := float64(m.n)
	var rules []Rule
	var ante, cons []int32
	for k := 2; k < len(m.levels); k++ {
		l := &m.levels[k]
		for i := range l.counts {
			set := l.at(i)
			support := float64(l.counts[i]) / n
			for mask := uint64(1); mask < 1<<k-1; mask++ {
				ante, cons = ante[:0], cons[:0]
				for j, it := range set {
					if mask&(1<<j) != 0 {
						ante = append(ante, it)
					} else {
						cons = append(cons, it)
					}
				}
				sa := float64(m.count(ante)) / n
				sc := float64(m.count(cons)) / n
				conf := support / sa
				lift := conf / sc
				if conf < o.MinConfidence || lift < o.MinLift {
					continue
				}
				rules = append(rules, Rule{
					Antecedent:        m.origIDs(ante),
					Consequent:        m.origIDs(cons),
					Count:             int(l.counts[i]),
					Support:           support,
					AntecedentSupport: sa,
					ConsequentSupport: sc,
					Confidence:        conf,
					Lift:              lift,
				})
			}
		}
	}
	slices.SortFunc(rules, func(a, b Rule) int {
		if c := cmp.Compare(b.Lift, a.Lift); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Confidence, a.Confidence); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Support, a.Support); c != 0 {
			return c
		}
		if c := slices.Compare(a.Antecedent, b.Antecedent); c != 0 {
			return c
		}
		return slices.Compare(a.Consequent, b.Consequent)
	})
	return rules, nil
}

// level holds the frequent itemsets of one size k as ranks (dense indices
// of frequent items, in ascending item-id order), flattened k per itemset
// and sorted lexicographically.
type level struct {
	k      int
	sets   []int32
	counts []uint32
}

func (l *level) at(i int) []int32 { return l.sets[i*l.k : (i+1)*l.k] }

// find returns the index of set in l, or -1.
func (l *level) find(set []int32) int {
	lo, hi := 0, len(l.counts)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if slices.Compare(l.at(mid), set) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(l.counts) && slices.Equal(l.at(lo), set) {
		return lo
	}
	return -1
}

// miner is the result of one Apriori run.
type miner struct {
	n         int      // number of baskets
	minCount  uint32   // smallest frequent count
	orig      []int32  // item id of each rank
	itemCount []uint32 // count of each rank
	levels    []level  // levels[k] holds itemsets of size k, for k >= 2
}

func (m *miner) itemset(ranks []int32, c uint32) Itemset {
	return Itemset{Items: m.origIDs(ranks), Count: int(c), Support: float64(c) / float64(m.n)}
}

func (m *miner) origIDs(ranks []int32) []int32 {
	out := make([]int32, len(ranks))
	for i, r := range ranks {
		out[i] = m.orig[r]
	}
	return out
}

// count returns the count of a frequent itemset given as ranks.
func (m *miner) count(ranks []int32) uint32 {
	if len(ranks) == 1 {
		return m.itemCount[ranks[0]]
	}
	l := &m.levels[len(ranks)]
	return l.counts[l.find(ranks)]
}

// minCountFor returns the smallest count c with c/n >= minSupport, the
// float comparison mlxtend makes.
func minCountFor(minSupport float64, n int) uint32 {
	c := int(math.Ceil(minSupport * float64(n)))
	for c > 1 && float64(c-1)/float64(n) >= minSupport {
		c--
	}
	for float64(c)/float64(n) < minSupport {
		c++
	}
	return uint32(max(c, 1))
}

// mine validates the input and runs level-wise Apriori.
func mine(baskets source, o Options) (*miner, error) {
	nb := baskets.Len()
	if nb == 0 {
		return nil, ErrNoBaskets
	}
	if !(o.MinSupport > 0 && o.MinSupport <= 1) {
		return nil, fmt.Errorf("basket: MinSupport %v outside (0, 1]", o.MinSupport)
	}
	if o.MaxLen < 0 {
		return nil, fmt.Errorf("basket: MaxLen %d is negative", o.MaxLen)
	}
	if nb >= math.MaxInt32 {
		return nil, errors.New("basket: too many baskets")
	}
	maxID, err := maxItem(baskets)
	if err != nil {
		return nil, err
	}
	m := &miner{n: nb, minCount: minCountFor(o.MinSupport, nb)}

	// Level 1: count each item once per basket.
	counts := make([]uint32, maxID+1)
	stamp := make([]int32, maxID+1) // basket index + 1 that last saw the item
	for b := range nb {
		for _, it := range baskets.At(b) {
			if stamp[it] != int32(b+1) {
				stamp[it] = int32(b + 1)
				counts[it]++
			}
		}
	}
	rank := stamp // reuse: rank of each frequent item, -1 otherwise
	for id, c := range counts {
		if c >= m.minCount {
			rank[id] = int32(len(m.orig))
			m.orig = append(m.orig, int32(id))
			m.itemCount = append(m.itemCount, c)
		} else {
			rank[id] = -1
		}
	}
	m.levels = make([]level, 2)
	if len(m.orig) < 2 || o.MaxLen == 1 {
		return m, nil
	}

	// Keep each basket's frequent items as sorted, distinct ranks in one
	// flat slice; baskets with fewer than two of them cannot hold a pair.
	var tx transactions
	tx.offs = append(tx.offs, 0)
	for b := range nb {
		start := len(tx.data)
		for _, it := range baskets.At(b) {
			if r := rank[it]; r >= 0 {
				tx.data = append(tx.data, r)
			}
		}
		t := tx.data[start:]
		slices.Sort(t)
		t = slices.Compact(t)
		tx.data = tx.data[:start+len(t)]
		if len(t) < 2 {
			tx.data = tx.data[:start]
			continue
		}
		tx.offs = append(tx.offs, len(tx.data))
	}

	m.levels = append(m.levels, m.countPairs(&tx))
	for k := 3; o.MaxLen == 0 || k <= o.MaxLen; k++ {
		prev := &m.levels[k-1]
		cand := candidates(prev)
		if len(cand.counts) == 0 {
			break
		}
		// Only items of some candidate matter, and a basket needs k of them.
		live := make([]bool, len(m.orig))
		for _, r := range cand.sets {
			live[r] = true
		}
		tx.compact(live, func(b []int32) bool { return len(b) >= k })
		// A basket that holds no candidate holds no frequent k-itemset, so
		// it cannot hold a candidate of the next level either.
		tr := newTrie(&cand, len(m.orig))
		tx.compact(nil, func(b []int32) bool { return tr.count(b, cand.counts) > 0 })
		next := level{k: k}
		for i, c := range cand.counts {
			if c >= m.minCount {
				next.sets = append(next.sets, cand.at(i)...)
				next.counts = append(next.counts, c)
			}
		}
		if len(next.counts) == 0 {
			break
		}
		m.levels = append(m.levels, next)
	}
	return m, nil
}

// maxItem validates item ids and returns the largest, or -1 if all baskets
// are empty.
func maxItem(baskets source) (int32, error) {
	maxID := int32(-1)
	for i := range baskets.Len() {
		for _, it := range baskets.At(i) {
			if it < 0 {
				return 0, fmt.Errorf("basket: basket %d has negative item id %d", i, it)
			}
			maxID = max(maxID, it)
		}
	}
	return maxID, nil
}

// transactions are baskets as sorted ranks, flattened: basket i is
// data[offs[i]:offs[i+1]].
type transactions struct {
	data []int32
	offs []int
}

func (tx *transactions) len() int { return len(tx.offs) - 1 }

// compact rewrites tx in place: it drops every item r with live[r] false
// (none if live is nil), then every basket for which keepBasket is false.
func (tx *transactions) compact(live []bool, keepBasket func([]int32) bool) {
	w, nb, from := 0, 0, 0
	for i := 0; i < tx.len(); i++ {
		start, to := w, tx.offs[i+1] // read before offs[nb] is overwritten
		for _, r := range tx.data[from:to] {
			if live == nil || live[r] {
				tx.data[w] = r
				w++
			}
		}
		from = to
		if !keepBasket(tx.data[start:w]) {
			w = start
			continue
		}
		nb++
		tx.offs[nb] = w
	}
	tx.data = tx.data[:w]
	tx.offs = tx.offs[:nb+1]
}

// countPairs counts every pair of frequent items and returns the frequent
// pairs. Pairs are counted in a dense triangular array when it is small
// enough, else in a map keyed by the two ranks packed into a uint64.
func (m *miner) countPairs(tx *transactions) level {
	l := level{k: 2}
	k := len(m.orig)
	if pairs := k * (k - 1) / 2; pairs <= denseTriangleMax {
		tri := make([]uint32, pairs)
		for i := 0; i < tx.len(); i++ {
			t := tx.data[tx.offs[i]:tx.offs[i+1]]
			for x, a := range t {
				row := int(a)*(2*k-int(a)-1)/2 - int(a) - 1
				for _, b := range t[x+1:] {
					tri[row+int(b)]++
				}
			}
		}
		for a := range k {
			row := a*(2*k-a-1)/2 - a - 1
			for b := a + 1; b < k; b++ {
				if c := tri[row+b]; c >= m.minCount {
					l.sets = append(l.sets, int32(a), int32(b))
					l.counts = append(l.counts, c)
				}
			}
		}
		return l
	}
	counts := make(map[uint64]uint32)
	for i := 0; i < tx.len(); i++ {
		t := tx.data[tx.offs[i]:tx.offs[i+1]]
		for x, a := range t {
			hi := uint64(a) << 32
			for _, b := range t[x+1:] {
				counts[hi|uint64(b)]++
			}
		}
	}
	keys := make([]uint64, 0, len(counts)/4)
	for key, c := range counts {
		if c >= m.minCount {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		l.sets = append(l.sets, int32(key>>32), int32(uint32(key)))
		l.counts = append(l.counts, counts[key])
	}
	return l
}

// candidates joins the itemsets of prev that share all but their last item
// into itemsets one larger, keeping a candidate only if every subset one
// item smaller is in prev (Apriori pruning). Candidates come out sorted,
// with zero counts.
func candidates(prev *level) level {
	k := prev.k + 1
	out := level{k: k}
	sub := make([]int32, prev.k)
	cand := make([]int32, k)
	n := len(prev.counts)
	for i := 0; i < n; {
		prefix := prev.at(i)[:k-2]
		j := i + 1
		for j < n && slices.Equal(prev.at(j)[:k-2], prefix) {
			j++
		}
		for a := i; a < j; a++ {
			for b := a + 1; b < j; b++ {
				copy(cand, prev.at(a))
				cand[k-1] = prev.at(b)[k-2]
				if allSubsetsIn(prev, cand, sub) {
					out.sets = append(out.sets, cand...)
					out.counts = append(out.counts, 0)
				}
			}
		}
		i = j
	}
	return out
}

// allSubsetsIn reports whether every subset of cand one item smaller is in
// prev. The two subsets that drop one of the last two items are the join
// parents and are not checked.
func allSubsetsIn(prev *level, cand, sub []int32) bool {
	for drop := 0; drop < len(cand)-2; drop++ {
		sub = append(sub[:0], cand[:drop]...)
		sub = append(sub, cand[drop+1:]...)
		if prev.find(sub) < 0 {
			return false
		}
	}
	return true
}

// trie is a prefix tree over sorted candidates of size k, stored by depth:
// node x at depth d has item item[d][x] and children
// child[d][x]:child[d][x+1] at depth d+1. Nodes at depth k-1 are the
// candidates themselves, in order. root[r] is the depth-0 node of rank r,
// or -1.
type trie struct {
	k     int
	item  [][]int32
	child [][]int32
	root  []int32
}

// newTrie builds the trie of candidates c over ranks 0..nRanks-1.
func newTrie(c *level, nRanks int) *trie {
	k := c.k
	t := &trie{k: k, item: make([][]int32, k), child: make([][]int32, k-1), root: make([]int32, nRanks)}
	var prev []int32
	for i := range c.counts {
		set := c.at(i)
		d := 0
		if prev != nil {
			for d < k && set[d] == prev[d] {
				d++
			}
		}
		for ; d < k; d++ {
			t.item[d] = append(t.item[d], set[d])
			if d < k-1 {
				t.child[d] = append(t.child[d], int32(len(t.item[d+1])))
			}
		}
		prev = set
	}
	for d := 0; d < k-1; d++ {
		t.child[d] = append(t.child[d], int32(len(t.item[d+1])))
	}
	for r := range t.root {
		t.root[r] = -1
	}
	for x, r := range t.item[0] {
		t.root[r] = int32(x)
	}
	return t
}

// count adds one to counts[i] for every candidate i in the sorted basket b
// and returns how many it counted.
func (t *trie) count(b []int32, counts []uint32) int {
	found := 0
	for i := 0; i+t.k <= len(b); i++ {
		if x := t.root[b[i]]; x >= 0 {
			found += t.match(0, int(x), b[i+1:], counts)
		}
	}
	return found
}

// walk adds one to counts[i] for every candidate i in the basket b, looking
// at the sorted nodes lo:hi at depth d against the sorted items of b and
// descending into every match, and returns how many it counted. It merges the two lists when they
// are of similar length and binary-searches the nodes for each basket item
// when the nodes are many more.
func (t *trie) walk(d, lo, hi int, b []int32, counts []uint32) int {
	items := t.item[d]
	found := 0
	need := t.k - d // items still to match, this one included
	if hi-lo > 8*len(b) {
		for i := 0; i+need <= len(b) && lo < hi; i++ {
			x, ok := slices.BinarySearch(items[lo:hi], b[i])
			lo += x
			if ok {
				found += t.match(d, lo, b[i+1:], counts)
				lo++
			}
		}
		return found
	}
	x, i := lo, 0
	for x < hi && len(b)-i >= need {
		switch it := items[x]; {
		case it < b[i]:
			x++
		case it > b[i]:
			i++
		default:
			found += t.match(d, x, b[i+1:], counts)
			x++
			i++
		}
	}
	return found
}

// match counts candidate x if d is the last depth, else walks its children
// against the rest of the basket.
func (t *trie) match(d, x int, rest []int32, counts []uint32) int {
	if d == t.k-1 {
		counts[x]++
		return 1
	}
	return t.walk(d+1, int(t.child[d][x]), int(t.child[d][x+1]), rest, counts)
}
