package basket

import (
	"cmp"
	"math"
	"slices"
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
// product. It is immutable and safe for concurrent use.
type Upseller struct {
	// byCategory holds each category's products, by price then ID.
	byCategory map[string][]Product
}

// NewUpseller indexes a catalogue, with Upsell's rules for what counts.
func NewUpseller(catalog []Product) *Upseller {
	// Merge repeated listings: first category, lowest price.
	index := make(map[string]int)
	var products []Product
	for _, p := range catalog {
		if p.ID == "" || !finite(p.Price) {
			continue
		}
		if i, ok := index[p.ID]; ok {
			products[i].Price = min(products[i].Price, p.Price)
			continue
		}
		index[p.ID] = len(products)
		products = append(products, p)
	}
	u := &Upseller{byCategory: map[string][]Product{}}
	for _, p := range products {
		if p.Category != "" {
			u.byCategory[p.Category] = append(u.byCategory[p.Category], p)
		}
	}
	for _, ps := range u.byCategory {
		slices.SortFunc(ps, func(a, b Product) int {
			if c := cmp.Compare(a.Price, b.Price); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
	}
	return u
}

// Upsell returns up to n step-up product IDs for a customer, as the
// package-level Upsell does.
func (u *Upseller) Upsell(purchases []Purchase, n int) []string {
	if n <= 0 {
		return nil
	}
	ceiling := make(map[string]float64)
	bought := make(map[string]bool, len(purchases))
	for _, p := range purchases {
		bought[p.Product] = true
		if p.Category == "" || !finite(p.Price) {
			continue
		}
		if c, ok := ceiling[p.Category]; !ok || p.Price > c {
			ceiling[p.Category] = p.Price
		}
	}
	// best holds the n best step-ups so far, best first.
	type stepUp struct {
		id   string
		step float64
	}
	less := func(a, b stepUp) bool { return a.step < b.step || a.step == b.step && a.id < b.id }
	best := make([]stepUp, 0, n)
	for cat, c := range ceiling {
		ps := u.byCategory[cat]
		// Within a category the step grows with the price: walk up from the
		// ceiling until a step cannot enter the n best.
		i, _ := slices.BinarySearchFunc(ps, c, func(p Product, c float64) int {
			if p.Price <= c {
				return -1
			}
			return 1
		})
		for ; i < len(ps); i++ {
			if bought[ps[i].ID] {
				continue
			}
			s := stepUp{ps[i].ID, ps[i].Price - c}
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
