package demo

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Product is one article of the demo shop: a kitchen and coffee store
// selling online, in its app and in its stores.
type Product struct {
	// ID is the product_id the events and the orders file carry, as
	// "prod-0042".
	ID string
	// SKU is the stock-keeping unit, as "CM-10203".
	SKU string
	// Name is the display name, as "Brevo Barista Espresso Machine".
	Name string
	// Category is one of about ten categories, as "Coffee Machines".
	Category string
	// PriceTier is "budget", "mid" or "premium".
	PriceTier string
	// Price is the unit price in euros, with two decimals.
	Price float64
}

// Price tiers.
const (
	tierBudget = iota
	tierMid
	tierPremium
)

var tierNames = [...]string{"budget", "mid", "premium"}

// category is a product category: its name, its SKU prefix and how
// popular it is as the first article of an order.
type category struct {
	name, code string
	weight     float64
}

var categories = []category{
	{"Coffee Machines", "CM", 8},
	{"Coffee & Tea", "CT", 16},
	{"Machine Care", "MC", 5},
	{"Cookware", "CW", 12},
	{"Kitchen Knives", "KN", 8},
	{"Kitchen Tools", "KT", 12},
	{"Tableware", "TW", 12},
	{"Small Appliances", "SA", 10},
	{"Baking", "BK", 8},
	{"Home Textiles", "HT", 9},
}

// kindDef is a kind of product (an espresso machine, a descaler): the
// catalogue holds a few variants of each, from different brands and lines.
type kindDef struct {
	name       string
	cat        int
	tier       int
	base       int // typical price in cents
	variants   int
	consumable bool     // bought again and again, often more than one
	affinity   []string // kinds often bought with this one
}

// kinds are the product kinds and their cross-sell affinities: an espresso
// machine sells with beans and descaler, a chef's knife with a sharpener.
var kinds = []kindDef{
	{"Espresso Machine", 0, tierPremium, 44900, 5, false, []string{"Espresso Beans 1 kg", "Descaler", "Cleaning Tablets", "Espresso Cup Set"}},
	{"Bean-to-Cup Machine", 0, tierPremium, 69900, 4, false, []string{"Espresso Beans 1 kg", "Descaler", "Water Filter", "Milk System Cleaner"}},
	{"Capsule Machine", 0, tierMid, 8900, 5, false, []string{"Coffee Capsules (20)", "Descaler"}},
	{"Filter Coffee Maker", 0, tierMid, 5900, 4, false, []string{"Filter Coffee 500 g", "Descaler"}},
	{"Milk Frother", 0, tierMid, 4900, 3, false, []string{"Milk System Cleaner"}},
	{"Moka Pot", 0, tierBudget, 2900, 3, false, []string{"Espresso Beans 1 kg"}},

	{"Espresso Beans 1 kg", 1, tierBudget, 1695, 6, true, nil},
	{"Filter Coffee 500 g", 1, tierBudget, 695, 5, true, nil},
	{"Coffee Capsules (20)", 1, tierBudget, 549, 6, true, nil},
	{"Loose Leaf Tea", 1, tierBudget, 795, 4, true, nil},
	{"Tea Bags (40)", 1, tierBudget, 349, 3, true, nil},

	{"Descaler", 2, tierBudget, 995, 4, true, nil},
	{"Cleaning Tablets", 2, tierBudget, 1295, 3, true, nil},
	{"Water Filter", 2, tierBudget, 1495, 3, true, nil},
	{"Milk System Cleaner", 2, tierBudget, 1195, 3, true, nil},

	{"Frying Pan", 3, tierMid, 4495, 5, false, []string{"Spatula", "Kitchen Tongs"}},
	{"Cast Iron Casserole", 3, tierPremium, 17900, 4, false, []string{"Oven Glove"}},
	{"Saucepan Set", 3, tierPremium, 14900, 3, false, []string{"Oven Glove", "Spatula"}},
	{"Wok", 3, tierMid, 5495, 3, false, []string{"Spatula"}},
	{"Grill Pan", 3, tierMid, 4995, 3, false, []string{"Kitchen Tongs"}},
	{"Stockpot", 3, tierMid, 3995, 2, false, nil},

	{"Chef's Knife", 4, tierPremium, 11900, 4, false, []string{"Knife Sharpener", "Cutting Board"}},
	{"Santoku Knife", 4, tierMid, 7900, 3, false, []string{"Knife Sharpener", "Cutting Board"}},
	{"Bread Knife", 4, tierMid, 4500, 3, false, []string{"Cutting Board"}},
	{"Knife Block", 4, tierMid, 6900, 3, false, nil},
	{"Knife Sharpener", 4, tierBudget, 2495, 3, false, nil},
	{"Paring Knife", 4, tierBudget, 1495, 3, false, nil},

	{"Spatula", 5, tierBudget, 795, 4, false, nil},
	{"Whisk", 5, tierBudget, 695, 3, false, nil},
	{"Kitchen Tongs", 5, tierBudget, 995, 3, false, nil},
	{"Cutting Board", 5, tierMid, 3495, 4, false, nil},
	{"Peeler", 5, tierBudget, 595, 3, false, nil},
	{"Measuring Cups", 5, tierBudget, 895, 2, false, nil},

	{"Dinner Plate Set", 6, tierMid, 5995, 4, false, []string{"Cutlery Set", "Napkin Set"}},
	{"Coffee Mug", 6, tierBudget, 895, 5, false, nil},
	{"Espresso Cup Set", 6, tierBudget, 1995, 3, false, nil},
	{"Wine Glass Set", 6, tierMid, 3495, 4, false, nil},
	{"Cutlery Set", 6, tierMid, 7995, 3, false, nil},

	{"Electric Kettle", 7, tierMid, 4995, 4, false, []string{"Loose Leaf Tea", "Tea Bags (40)", "Descaler"}},
	{"Toaster", 7, tierMid, 3995, 4, false, nil},
	{"Blender", 7, tierPremium, 12900, 3, false, nil},
	{"Hand Mixer", 7, tierMid, 4495, 3, false, []string{"Mixing Bowl Set"}},
	{"Air Fryer", 7, tierPremium, 14900, 4, false, nil},
	{"Citrus Press", 7, tierBudget, 2495, 2, false, nil},

	{"Stand Mixer", 8, tierPremium, 39900, 3, false, []string{"Cake Tin", "Baking Mat", "Mixing Bowl Set"}},
	{"Cake Tin", 8, tierBudget, 1495, 4, false, []string{"Cooling Rack"}},
	{"Baking Mat", 8, tierBudget, 1295, 3, false, nil},
	{"Cookie Cutter Set", 8, tierBudget, 995, 3, false, nil},
	{"Cooling Rack", 8, tierBudget, 1195, 2, false, nil},
	{"Mixing Bowl Set", 8, tierMid, 3495, 3, false, nil},

	{"Tea Towel Set", 9, tierBudget, 1295, 4, false, nil},
	{"Apron", 9, tierBudget, 1995, 3, false, nil},
	{"Oven Glove", 9, tierBudget, 1295, 3, false, nil},
	{"Tablecloth", 9, tierMid, 3995, 3, false, []string{"Napkin Set"}},
	{"Napkin Set", 9, tierBudget, 1495, 3, false, nil},
}

// Fictional brands and product lines the variants are named after.
var (
	brands = []string{"Brevo", "Casella", "Dunmore", "Elsa", "Fjord", "Grano", "Hestia", "Juno",
		"Kora", "Lund", "Mora", "Nordby", "Oakley & Ash", "Pelle", "Stahl", "Vulcano"}
	lines           = []string{"Classic", "Pro", "Compact", "Essential", "Signature", "Studio", "Nova", "Duo", "Barista", "Heritage"}
	consumableLines = []string{"Original", "Intense", "Organic", "Dark Roast", "Mild", "Eco", "Extra", "Single Origin"}
)

// catalogue is the product list with what the generator needs to fill
// baskets: prices in cents, each product's kind, the variants of each kind
// and the kinds of each category.
type catalogue struct {
	products []Product
	cents    []int
	kind     []int   // product → kind
	byKind   [][]int // kind → products
	byCat    [][]int // category → kinds
	affinity [][]int // kind → kinds
	catCum   []float64
}

// Catalogue returns the product catalogue: about 200 products in ten
// categories with budget, mid and premium price tiers. Brands, lines and
// prices depend on the seed; the same seed always gives the same
// catalogue.
func Catalogue(seed int64) []Product {
	return newCatalogue(seed).products
}

func newCatalogue(seed int64) *catalogue {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xca7a10605eed))
	c := &catalogue{byKind: make([][]int, len(kinds)), byCat: make([][]int, len(categories)), affinity: make([][]int, len(kinds))}
	index := map[string]int{}
	for k, kd := range kinds {
		index[kd.name] = k
	}
	for k, kd := range kinds {
		for _, a := range kd.affinity {
			j, ok := index[a]
			if !ok {
				panic("demo: unknown affinity " + a) // a typo in the table above
			}
			c.affinity[k] = append(c.affinity[k], j)
		}
		c.byCat[kd.cat] = append(c.byCat[kd.cat], k)
		// Distinct brand and line pairs for the variants of one kind.
		bs := rng.Perm(len(brands))
		ls := lines
		if kd.consumable {
			ls = consumableLines
		}
		for v := 0; v < kd.variants; v++ {
			n := len(c.products)
			name := brands[bs[v]] + " " + ls[rng.IntN(len(ls))] + " " + kd.name
			price := float64(kd.base) / 100 * math.Exp(0.25*rng.NormFloat64())
			cents := roundCents(price, rng.IntN(6))
			c.products = append(c.products, Product{
				ID:        "prod-" + pad(n+1, 4),
				SKU:       categories[kd.cat].code + "-" + strconv.Itoa(10000+k*100+v+1),
				Name:      name,
				Category:  categories[kd.cat].name,
				PriceTier: tierNames[kd.tier],
				Price:     float64(cents) / 100,
			})
			c.cents = append(c.cents, cents)
			c.kind = append(c.kind, k)
			c.byKind[k] = append(c.byKind[k], n)
		}
	}
	sum := 0.0
	for _, cat := range categories {
		sum += cat.weight
		c.catCum = append(c.catCum, sum)
	}
	return c
}

// pad renders v in decimal, zero-padded to width digits.
func pad(v, width int) string {
	s := strconv.Itoa(v)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// pickCategory draws a category by popularity.
func (c *catalogue) pickCategory(rng *rand.Rand) int {
	x := rng.Float64() * c.catCum[len(c.catCum)-1]
	for i, v := range c.catCum {
		if x < v {
			return i
		}
	}
	return len(c.catCum) - 1
}

// pickVariant draws a product of kind k; earlier variants sell more.
func (c *catalogue) pickVariant(rng *rand.Rand, k int) int {
	vs := c.byKind[k]
	u := rng.Float64()
	return vs[int(u*u*float64(len(vs)))]
}

// pickKind draws a kind of category cat, preferring the person's price
// tier.
func (c *catalogue) pickKind(rng *rand.Rand, cat, tier int) int {
	ks := c.byCat[cat]
	for range 3 {
		k := ks[rng.IntN(len(ks))]
		if kinds[k].tier == tier || rng.IntN(3) == 0 {
			return k
		}
	}
	return ks[rng.IntN(len(ks))]
}
