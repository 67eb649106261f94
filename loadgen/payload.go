package loadgen

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/kithcdp/kith/rawjson"
)

// Generator produces a deterministic stream of Segment-shaped events: the
// same seed, user count and base time always yield the same bytes, so two
// benchmark runs (or a failing test) can be reproduced exactly.
//
// Each simulated person first arrives anonymously (a page view carrying only
// an anonymousId), is then identified (an identify carrying both ids and the
// traits email, name and plan), and afterwards browses and buys with a
// userId. Events average a little over 400 bytes of JSON, most of it the
// ids and context every Segment call carries; an "Order Completed" with
// several products is larger.
//
// A Generator is not safe for concurrent use.
type Generator struct {
	rng   *rand.Rand
	seed  uint64
	users int
	base  time.Time
	seq   []uint8 // events generated per user, saturating at 255
	n     int64   // events generated
	bytes int64   // bytes of event JSON generated (without batch framing)
}

// NewGenerator returns a Generator for the given seed, number of distinct
// users (at least 1) and base time. Event timestamps fall within the five
// seconds before base, as if clients had buffered them briefly.
func NewGenerator(seed int64, users int, base time.Time) *Generator {
	if users < 1 {
		users = 1
	}
	s := uint64(seed)
	return &Generator{
		rng:   rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15)),
		seed:  s,
		users: users,
		base:  base.UTC(),
		seq:   make([]uint8, users),
	}
}

// Next appends one event's JSON object to dst and returns the extended
// slice.
func (g *Generator) Next(dst []byte) []byte {
	dst, _ = g.next(dst)
	return dst
}

// AppendBatch appends a complete POST /v1/batch body, {"batch":[...]}, with
// n events to dst and returns the extended slice.
func (g *Generator) AppendBatch(dst []byte, n int) []byte {
	dst, _ = g.appendBatch(dst, n, nil)
	return dst
}

// MeanEventBytes is the mean size in bytes of the event objects generated so
// far, excluding batch framing; it is 0 before the first event.
func (g *Generator) MeanEventBytes() float64 {
	if g.n == 0 {
		return 0
	}
	return float64(g.bytes) / float64(g.n)
}

// appendBatch is AppendBatch that also appends, to identified, the index of
// every user identified by the batch, so profile reads can target people the
// server has heard of.
func (g *Generator) appendBatch(dst []byte, n int, identified []int) ([]byte, []int) {
	dst = append(dst, `{"batch":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		var u int
		dst, u = g.next(dst)
		if u >= 0 {
			identified = append(identified, u)
		}
	}
	dst = append(dst, "]}"...)
	return dst, identified
}

// next appends one event and returns the index of the user it identifies,
// or -1 when the event is not an identify.
func (g *Generator) next(dst []byte) ([]byte, int) {
	start := len(dst)
	u := g.rng.IntN(g.users)
	step := g.seq[u]
	if step < 255 {
		g.seq[u]++
	}
	p := person(g.seed, u)
	identified := -1

	dst = append(dst, `{"type":"`...)
	switch {
	case step == 0:
		// First contact: an anonymous landing page view.
		dst = append(dst, `page","anonymousId":"`...)
		dst = append(dst, p.anonymousID[:]...)
		dst = g.appendCommon(dst, &p)
		dst = g.appendPage(dst, "Home", "/", "", "Kith Shop", "https://www.example.org/search")
	case step == 1:
		// Sign-up: the anonymous visitor becomes a known user.
		dst = append(dst, `identify","userId":"`...)
		dst = append(dst, p.userID[:]...)
		dst = append(dst, `","anonymousId":"`...)
		dst = append(dst, p.anonymousID[:]...)
		dst = g.appendCommon(dst, &p)
		dst = g.appendTraits(dst, &p, plans[p.plan])
		identified = u
	default:
		dst = g.appendKnown(dst, &p, &identified, u)
	}
	dst = append(dst, '}')
	g.n++
	g.bytes += int64(len(dst) - start)
	return dst, identified
}

// appendKnown appends the body of an event from an identified user.
func (g *Generator) appendKnown(dst []byte, p *personInfo, identified *int, u int) []byte {
	roll := g.rng.IntN(100)
	var kind string
	switch {
	case roll < 50:
		kind = "track"
	case roll < 57:
		kind = "order"
	case roll < 92:
		kind = "page"
	default:
		kind = "identify"
	}
	switch kind {
	case "identify":
		dst = append(dst, `identify","userId":"`...)
	case "page":
		dst = append(dst, `page","userId":"`...)
	default:
		dst = append(dst, `track","userId":"`...)
	}
	dst = append(dst, p.userID[:]...)
	if g.rng.IntN(4) == 0 {
		// Browser SDKs keep sending the anonymousId after identify.
		dst = append(dst, `","anonymousId":"`...)
		dst = append(dst, p.anonymousID[:]...)
	}
	dst = g.appendCommon(dst, p)

	switch kind {
	case "identify":
		// A trait update: the plan changes.
		*identified = u
		return g.appendTraits(dst, p, plans[g.rng.IntN(len(plans))])
	case "page":
		pr := &catalog[g.rng.IntN(len(catalog))]
		return g.appendPage(dst, "Product", "/p/", pr.id, pr.name, "")
	case "order":
		return g.appendOrder(dst)
	}
	pr := &catalog[g.rng.IntN(len(catalog))]
	ev := trackEvents[g.rng.IntN(len(trackEvents))]
	dst = append(dst, `,"event":"`...)
	dst = append(dst, ev...)
	dst = append(dst, `","properties":{"product_id":"`...)
	dst = append(dst, pr.id...)
	dst = append(dst, `","name":`...)
	dst = rawjson.AppendString(dst, pr.name)
	dst = append(dst, `,"price":`...)
	dst = appendCents(dst, pr.cents)
	return append(dst, '}')
}

// appendCommon closes the id field opened by the caller and appends
// messageId, timestamp and context.
func (g *Generator) appendCommon(dst []byte, p *personInfo) []byte {
	dst = append(dst, `","messageId":"`...)
	dst = appendUUID(dst, g.rng.Uint64(), g.rng.Uint64())
	dst = append(dst, `","timestamp":"`...)
	ts := g.base.Add(-time.Duration(g.rng.IntN(5000)) * time.Millisecond)
	dst = ts.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	a := &agents[p.agent]
	dst = append(dst, `","context":{"library":{"name":"`...)
	dst = append(dst, a.library...)
	dst = append(dst, `","version":"`...)
	dst = append(dst, a.version...)
	dst = append(dst, `"},"ip":"`...)
	dst = append(dst, ipPrefixes[p.ipPrefix]...)
	dst = strconv.AppendInt(dst, int64(p.ipHost), 10)
	dst = append(dst, `","userAgent":"`...)
	dst = append(dst, a.userAgent...)
	return append(dst, `"}`...)
}

// appendTraits appends the traits object of an identify.
func (g *Generator) appendTraits(dst []byte, p *personInfo, plan string) []byte {
	first, last := firstNames[p.first], lastNames[p.last]
	dst = append(dst, `,"traits":{"email":"`...)
	dst = appendLower(dst, first)
	dst = append(dst, '.')
	dst = appendLower(dst, last)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(p.index), 10)
	dst = append(dst, `@example.com","name":"`...)
	dst = append(dst, first...)
	dst = append(dst, ' ')
	dst = append(dst, last...)
	dst = append(dst, `","plan":"`...)
	dst = append(dst, plan...)
	return append(dst, `"}`...)
}

// appendPage appends the name and properties of a page call; the page's
// path is dir followed by file, passed apart to save an allocation.
func (g *Generator) appendPage(dst []byte, name, dir, file, title, referrer string) []byte {
	dst = append(dst, `,"name":"`...)
	dst = append(dst, name...)
	dst = append(dst, `","properties":{"url":"https://shop.example.com`...)
	dst = append(dst, dir...)
	dst = append(dst, file...)
	dst = append(dst, `","title":`...)
	dst = rawjson.AppendString(dst, title)
	if referrer != "" {
		dst = append(dst, `,"referrer":"`...)
		dst = append(dst, referrer...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendOrder appends an "Order Completed" per the e-commerce spec, with one
// to three products.
func (g *Generator) appendOrder(dst []byte) []byte {
	dst = append(dst, `,"event":"Order Completed","properties":{"order_id":"ord_`...)
	dst = appendHex(dst, g.rng.Uint64(), 12)
	n := 1 + g.rng.IntN(2)
	if g.rng.IntN(8) == 0 {
		n = 3
	}
	var items [3]*product
	var qty [3]int
	revenue := 0
	for i := range n {
		items[i] = &catalog[g.rng.IntN(len(catalog))]
		qty[i] = 1 + g.rng.IntN(2)
		revenue += items[i].cents * qty[i]
	}
	dst = append(dst, `","revenue":`...)
	dst = appendCents(dst, revenue)
	dst = append(dst, `,"currency":"`...)
	dst = append(dst, currencies[g.rng.IntN(len(currencies))]...)
	dst = append(dst, `","products":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		pr := items[i]
		dst = append(dst, `{"product_id":"`...)
		dst = append(dst, pr.id...)
		dst = append(dst, `","sku":"`...)
		dst = append(dst, pr.sku...)
		dst = append(dst, `","price":`...)
		dst = appendCents(dst, pr.cents)
		dst = append(dst, `,"quantity":`...)
		dst = strconv.AppendInt(dst, int64(qty[i]), 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// personInfo is the stable description of one simulated user, derived from
// the seed and the user's index alone so it needs no per-user storage.
type personInfo struct {
	index       int
	userID      [16]byte // "usr_" + 12 hex digits
	anonymousID [36]byte // a UUID
	ipPrefix    int
	ipHost      int
	first, last int
	plan        int
	agent       int
}

// person derives user u's stable attributes.
func person(seed uint64, u int) personInfo {
	h := mix(seed ^ (uint64(u)+1)*0x9e3779b97f4a7c15)
	h2 := mix(h)
	p := personInfo{
		index: u,
		first: int(h % uint64(len(firstNames))),
		last:  int((h >> 8) % uint64(len(lastNames))),
		plan:  int((h >> 16) % uint64(len(plans))),
		agent: int((h >> 24) % uint64(len(agents))),
	}
	copy(p.userID[:], "usr_")
	appendHex(p.userID[:4], h2, 12)
	appendUUID(p.anonymousID[:0], mix(h2), mix(h2^h))
	// Addresses from the documentation ranges (RFC 5737), never real ones.
	p.ipPrefix = int((h >> 32) % uint64(len(ipPrefixes)))
	p.ipHost = int(1 + (h>>40)%254)
	return p
}

// mix is the SplitMix64 finaliser: a cheap, well-distributed hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

const hexDigits = "0123456789abcdef"

// appendHex appends the low n hex digits of v.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// appendUUID appends a version-4 UUID built from hi and lo.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	hi = hi&^0xf000 | 0x4000        // version 4
	lo = lo&^(0xc<<60) | 0x8<<60    // RFC 4122 variant
	dst = appendHex(dst, hi>>32, 8) // time_low
	dst = append(dst, '-')          //
	dst = appendHex(dst, hi>>16, 4) // time_mid
	dst = append(dst, '-')          //
	dst = appendHex(dst, hi, 4)     // version and time_hi
	dst = append(dst, '-')          //
	dst = appendHex(dst, lo>>48, 4) // variant and clock_seq
	dst = append(dst, '-')          //
	return appendHex(dst, lo, 12)   // node
}

// appendLower appends s in lower case; s is ASCII.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendCents appends an amount in cents as a JSON number with two
// decimals.
func appendCents(dst []byte, cents int) []byte {
	dst = strconv.AppendInt(dst, int64(cents/100), 10)
	dst = append(dst, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	return dst
}

// agent is a client: its SDK and its user agent.
type agent struct {
	library, version, userAgent string
}

// product is one catalogue entry.
type product struct {
	id, sku, name, category string
	cents                   int
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis",
		"Frances", "John", "Radia", "Edsger", "Hedy", "Tim", "Katherine", "Donald"}
	lastNames = []string{"Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov",
		"Ritchie", "Allen", "Backus", "Perlman", "Dijkstra", "Lamarr", "Berners-Lee", "Johnson", "Knuth"}
	plans       = []string{"free", "starter", "pro", "enterprise"}
	currencies  = []string{"EUR", "USD", "GBP"}
	trackEvents = []string{"Product Viewed", "Product Viewed", "Product Added", "Checkout Started"}
	ipPrefixes  = []string{"192.0.2.", "198.51.100.", "203.0.113."}
	// agents pairs each user agent with the SDK that would send it: a mix
	// of browsers and the shop's mobile apps.
	agents = []agent{
		{"analytics.js", "5.2.0", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36"},
		{"analytics.js", "5.2.0", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Firefox/127.0"},
		{"analytics-ios", "4.1.8", "KithShop/4.2 (iPhone; iOS 17.5)"},
		{"analytics-android", "4.11.3", "KithShop/4.2 (Android 14; Pixel 8)"},
	}
	catalog = buildCatalog()
)

// buildCatalog makes a fixed catalogue of 48 products.
func buildCatalog() []product {
	type cat struct {
		name  string
		items []string
	}
	cats := []cat{
		{"Apparel", []string{"Merino Wool Socks", "Rain Jacket", "Linen Shirt", "Denim Jeans"}},
		{"Home", []string{"Ceramic Mug", "Cast Iron Pan", "Linen Towel", "Desk Lamp"}},
		{"Books", []string{"The Art of Computer Programming", "Structure and Interpretation", "Go in Practice", "Designing Data Apps"}},
		{"Outdoor", []string{"Trail Backpack", "Camping Stove", "Water Bottle", "Headlamp"}},
	}
	colors := []string{"", " (Blue)", " (Black)"}
	var out []product
	for ci, c := range cats {
		for ii, item := range c.items {
			for k, col := range colors {
				n := len(out)
				id := "prod_" + strconv.Itoa(1000+n)
				out = append(out, product{
					id:       id,
					sku:      "SKU-" + strconv.Itoa(50000+n*7),
					name:     item + col,
					category: c.name,
					cents:    499 + (ci*997+ii*313+k*129)%12000,
				})
			}
		}
	}
	return out
}
