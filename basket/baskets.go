package basket

import (
	"errors"
	"math"
)

// Baskets holds many baskets in one flat slice of item ids: 4 bytes per
// item and 4 per basket, and no pointer per basket for the garbage
// collector to trace. Ten million orders kept as [][]int32 cost 24 bytes
// of slice header each (250 MB) before any item, and the collector walked
// every one of them on each cycle; an insight run over a large shop keeps
// its baskets here instead. The zero value is empty and ready to use.
type Baskets struct {
	items []int32
	// ends[i] is where basket i ends in items; it starts where basket
	// i-1 ends.
	ends []uint32
}

// ErrTooManyItems is returned by Baskets.Add once the baskets hold as many
// item ids as a uint32 can count.
var ErrTooManyItems = errors.New("basket: more than 4,294,967,295 items in one set of baskets")

// Add appends a basket holding a copy of items.
func (b *Baskets) Add(items []int32) error {
	if uint64(len(b.items))+uint64(len(items)) > math.MaxUint32 {
		return ErrTooManyItems
	}
	b.items = append(b.items, items...)
	b.ends = append(b.ends, uint32(len(b.items)))
	return nil
}

// Len returns the number of baskets.
func (b *Baskets) Len() int { return len(b.ends) }

// Items returns the number of item ids in all baskets together.
func (b *Baskets) Items() int { return len(b.items) }

// At returns basket i; the caller must not modify it.
func (b *Baskets) At(i int) []int32 {
	var start uint32
	if i > 0 {
		start = b.ends[i-1]
	}
	return b.items[start:b.ends[i]:b.ends[i]]
}

// Mine is the package's Mine over these baskets.
func (b *Baskets) Mine(o Options) ([]Rule, error) { return mineRules(b, o) }

// Recommender is NewRecommender trained on these baskets (one
// transaction each).
func (b *Baskets) Recommender(o RecommenderOptions) (*Recommender, error) {
	return newRecommender(b, o)
}

// source is what the miner and the recommender read baskets from: a
// Baskets, or the [][]int32 the package's functions take.
type source interface {
	Len() int
	At(i int) []int32
}

// sliceSource is a [][]int32 read as a source.
type sliceSource [][]int32

func (s sliceSource) Len() int         { return len(s) }
func (s sliceSource) At(i int) []int32 { return s[i] }
