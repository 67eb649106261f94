package basket

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// Product is one entry of the product catalogue, as seen in events.
type Product struct {
	// ID identifies the product.
	ID string
	// Category is the product's category; "" means uncategorised.
	Category string
	// Price is the product's unit price.
	Price float64
}

// Purchase is one product a customer bought.
type Purchase struct {
	// Product is the ID of the product bought.
	Product string
	// Category is the category of the product bought; "" means
	// uncategorised.
	Category string
	// Price is the unit price the customer paid.
	Price float64
}

// Upsell returns up to n product IDs to up-sell to a customer with the given
// purchases. For each category the customer bought in, the ceiling is the
// highest price they paid there; a catalogue product is a step-up if it is
// in such a category, priced strictly above that ceiling and not already
// bought by the customer. Step-ups are ordered by the smallest step first
// (price minus the category's ceiling), then by ID. Uncategorised products
// and purchases, products without an ID and prices that are NaN or infinite
// are ignored. A product listed more than once in the catalogue counts once,
// with its first category and its lowest price. Upsell returns nil when n is
// not positive.
func Upsell(catalog []Product, purchases []Purchase, n int) []string {
	return NewUpseller(catalog).Upsell(purchases, n)
}

// Upseller answers Upsell for many customers over one catalogue: the
// catalogue is indexed once, by category and price, so each customer costs
// a binary search per category bought rather than a pass over every
// product, and products and categories are numbered, so what a customer
// bought is marked in a reused array rather than looked up in maps built
// per customer. It is immutable and safe for concurrent use.
type Upseller struct {
	products []Product
	// byCategory holds each category's products (positions in products),
	// by price then ID.
	byCategory [][]int32
	product    map[string]int32 // product ID → position
	category   map[string]int32 // category → position in byCategory
	scratch    sync.Pool        // *upsellScratch
}

// upsellScratch is one Upsell call's workspace, reset after use.
type upsellScratch struct {
	bought  []bool    // by product position
	ceiling []float64 // by category position, where seen
	seen    []bool    // by category position
	marked  []int32   // the products marked bought
	cats    []int32   // the categories seen, in the order seen
}

// NewUpseller indexes a catalogue, with Upsell's rules for what counts.
func NewUpseller(catalog []Product) *Upseller {
	u := &Upseller{product: map[string]int32{}, category: map[string]int32{}}
	// Merge repeated listings: first category, lowest price.
	for _, p := range catalog {
		if p.ID == "" || !finite(p.Price) {
			continue
		}
		if i, ok := u.product[p.ID]; ok {
			u.products[i].Price = min(u.products[i].Price, p.Price)
			continue
		}
		u.product[p.ID] = int32(len(u.products))
		u.products = append(u.products, p)
	}
	for i, p := range u.products {
		if p.Category == "" {
			continue
		}
		c, ok := u.category[p.Category]
		if !ok {
			c = int32(len(u.byCategory))
			u.category[p.Category] = c
			u.byCategory = append(u.byCategory, nil)
		}
		u.byCategory[c] = append(u.byCategory[c], int32(i))
	}
	for _, ps := range u.byCategory {
		slices.SortFunc(ps, func(a, b int32) int {
			pa, pb := &u.products[a], &u.products[b]
			if c := cmp.Compare(pa.Price, pb.Price); c != 0 {
				return c
			}
			return cmp.Compare(pa.ID, pb.ID)
		})
	}
	u.scratch.New = func() any {
		return &upsellScratch{bought: make([]bool, len(u.products)), ceiling: make([]float64, len(u.byCategory)), seen: make([]bool, len(u.byCategory))}
	}
	return u
}

// Upsell returns up to n step-up product IDs for a customer, as the
// package-level Upsell does.
func (u *Upseller) Upsell(purchases []Purchase, n int) []string {
	if n <= 0 {
		return nil
	}
	sc := u.scratch.Get().(*upsellScratch)
	defer func() {
		for _, i := range sc.marked {
			sc.bought[i] = false
		}
		for _, c := range sc.cats {
			sc.seen[c] = false
		}
		sc.marked, sc.cats = sc.marked[:0], sc.cats[:0]
		u.scratch.Put(sc)
	}()
	for _, p := range purchases {
		// A product or category the catalogue lacks has no step-ups to
		// offer or to rule out.
		if i, ok := u.product[p.Product]; ok && !sc.bought[i] {
			sc.bought[i] = true
			sc.marked = append(sc.marked, i)
		}
		if p.Category == "" || !finite(p.Price) {
			continue
		}
		c, ok := u.category[p.Category]
		if !ok {
			continue
		}
		if !sc.seen[c] {
			sc.seen[c], sc.ceiling[c] = true, p.Price
			sc.cats = append(sc.cats, c)
		} else if p.Price > sc.ceiling[c] {
			sc.ceiling[c] = p.Price
		}
	}
	// best holds the n best step-ups so far, best first.
	type stepUp struct {
		id   string
		step float64
	}
	less := func(a, b stepUp) bool { return a.step < b.step || a.step == b.step && a.id < b.id }
	best := make([]stepUp, 0, n)
	for _, cat := range sc.cats {
		c := sc.ceiling[cat]
		ps := u.byCategory[cat]
		// Within a category the step grows with the price: walk up from the
		// ceiling until a step cannot enter the n best.
		i, _ := slices.BinarySearchFunc(ps, c, func(p int32, c float64) int {
			if u.products[p].Price <= c {
				return -1
			}
			return 1
		})
		for ; i < len(ps); i++ {
			if sc.bought[ps[i]] {
				continue
			}
			p := &u.products[ps[i]]
			s := stepUp{p.ID, p.Price - c}
			if len(best) == n && !less(s, best[n-1]) {
				break
			}
			at, _ := slices.BinarySearchFunc(best, s, func(e, t stepUp) int {
				if less(e, t) {
					return -1
				}
				return 1
			})
			if len(best) == n {
				best = best[:n-1]
			}
			best = slices.Insert(best, at, s)
		}
	}
	out := make([]string, len(best))
	for i, b := range best {
		out[i] = b.id
	}
	return out
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
