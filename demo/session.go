package demo

import (
	"slices"
	"strconv"
)

// shopURL is the webshop's address.
const shopURL = "https://shop.example.com"

// orderLine is one line item of an order.
type orderLine struct{ prod, qty int }

// play carries out the current person's plans in time order.
func (g *generator) play() {
	slices.SortStableFunc(g.plans, func(a, b plan) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
	for i := range g.plans {
		pl := g.plans[i]
		if pl.ch == chPOS {
			g.posOrder(pl.t, pl.dupCard)
		} else {
			g.session(pl)
		}
	}
}

// session plays one visit to the webshop or the app: a landing page or
// screen, the sign-up or a log-in when due, some product views and, for a
// purchase, the cart, the checkout and the order.
func (g *generator) session(pl plan) {
	rng, p := g.rng, &g.p
	t := pl.t
	if t < p.busy {
		t = p.busy + rng.Int64N(hour)
	}
	t = min(t, g.now-2*hour)
	var c *client
	if pl.ch == chApp {
		c = g.appClient()
	} else {
		c = g.webClient()
	}
	next := func() int64 {
		t += 4*second + rng.Int64N(70*second)
		return t
	}

	if c.app {
		if !c.seen {
			g.appLifecycle(t, c, "Application Installed")
			next()
		}
		g.appLifecycle(t, c, "Application Opened")
		g.screen(next(), c, "Home", -1)
	} else {
		g.landing(t, c, pl)
	}
	switch {
	case p.web && !p.signedUp && (pl.kind == planSignup || pl.order):
		if c.app {
			g.screen(next(), c, "Register", -1)
		} else {
			g.page(next(), c, "Register", "/account/register", "Create an account | Kith Shop", "")
		}
		g.identify(next(), c, true)
		p.signedUp = true
	case p.signedUp && !c.loggedIn:
		if c.app {
			g.screen(next(), c, "Login", -1)
		} else {
			g.page(next(), c, "Login", "/account/login", "Log in | Kith Shop", "")
		}
		g.identify(next(), c, false)
	}

	ls, le := 0, 0
	if pl.order {
		ls, le = g.basket(p)
	}
	extra := rng.IntN(3)
	if !pl.order {
		extra++
	}
	last := -1
	for range extra {
		cat := p.fav[rng.IntN(2)]
		if rng.IntN(3) == 0 {
			cat = g.cat.pickCategory(rng)
		}
		last = g.cat.pickVariant(rng, g.cat.pickKind(rng, cat, p.tier))
		g.view(next(), c, last)
	}
	for _, l := range g.lines[ls:le] {
		g.view(next(), c, l.prod)
	}
	if pl.order {
		for _, l := range g.lines[ls:le] {
			g.productAdded(next(), c, l.prod, l.qty)
		}
		g.order(next(), c, ls, le)
	} else if last >= 0 && rng.IntN(100) < 15 {
		g.productAdded(next(), c, last, 1) // an abandoned cart
	}
	p.busy = t + 30*minute
}

// webClient returns the browser cookie of a session: the first one, now
// and then a new one (another device, cleared cookies), mostly the latest.
func (g *generator) webClient() *client {
	rng, p := g.rng, &g.p
	// At most five anonymous ids per person, counting the app's and the
	// cards' ("card-…"), as the platform's default limit allows.
	most := 5
	for _, b := range []bool{p.app, p.hasCard, p.dup} {
		if b {
			most--
		}
	}
	most = min(most, len(p.cookies))
	if p.nCookies == 0 || (p.signedUp && p.nCookies < most && rng.IntN(100) < 8) {
		c := &p.cookies[p.nCookies]
		p.nCookies++
		c.anonID = uuid(rng.Uint64(), rng.Uint64(), false)
		c.ip = ipPrefixes[rng.IntN(len(ipPrefixes))] + strconv.Itoa(1+rng.IntN(254))
		c.agent = rng.IntN(len(userAgents))
		return c
	}
	if p.nCookies > 1 && rng.IntN(4) == 0 {
		return &p.cookies[rng.IntN(p.nCookies)]
	}
	return &p.cookies[p.nCookies-1]
}

// appClient returns the person's app installation, creating it on first
// use.
func (g *generator) appClient() *client {
	rng, c := g.rng, &g.p.device
	if c.anonID != "" {
		return c
	}
	c.app = true
	c.ios = rng.IntN(100) < 55
	c.ip = ipPrefixes[rng.IntN(len(ipPrefixes))] + strconv.Itoa(1+rng.IntN(254))
	if c.ios {
		c.agent = rng.IntN(len(iosDevices))
		c.anonID = uuid(rng.Uint64(), rng.Uint64(), true)
		c.deviceID = uuid(rng.Uint64(), rng.Uint64(), true) // identifierForVendor
		c.adID = uuid(rng.Uint64(), rng.Uint64(), true)
		c.adTracking = rng.IntN(100) < 70
	} else {
		c.agent = rng.IntN(len(androidDevices))
		c.anonID = uuid(rng.Uint64(), rng.Uint64(), false)
		c.deviceID = string(appendHex(nil, rng.Uint64(), 16)) // ANDROID_ID
		c.adID = uuid(rng.Uint64(), rng.Uint64(), false)
		c.adTracking = rng.IntN(100) < 90
	}
	if !c.adTracking {
		c.adID = "00000000-0000-0000-0000-000000000000" // what the OS hands out without consent
	}
	return c
}

// landing writes the first page of a web visit.
func (g *generator) landing(t int64, c *client, pl plan) {
	rng := g.rng
	if pl.kind == planClick {
		cp := &g.campaigns[pl.campaign]
		g.curCampaign = cp
		g.page(t, c, "Campaign", cp.link[len(shopURL):], cp.name+" | Kith Shop", "")
		g.curCampaign = nil
		return
	}
	ref := referrers[rng.IntN(len(referrers))]
	switch x := rng.IntN(10); {
	case x < 4:
		g.page(t, c, "Home", "/", "Kith Shop | Kitchen & Coffee", ref)
	case x < 8:
		cat := &categories[g.p.fav[rng.IntN(2)]]
		g.page(t, c, "Category", "/c/"+slug(cat.name), cat.name+" | Kith Shop", ref)
	default:
		pr := &g.cat.products[g.cat.pickVariant(rng, g.cat.pickKind(rng, g.p.fav[0], g.p.tier))]
		g.page(t, c, "Product", "/p/"+pr.ID, pr.Name+" | Kith Shop", ref)
	}
}

// view writes a product view: a product page and "Product Viewed" on the
// web, a product screen and "Product Viewed" in the app.
func (g *generator) view(t int64, c *client, prod int) {
	pr := &g.cat.products[prod]
	if c.app {
		g.screen(t, c, "Product Detail", prod)
	} else {
		g.page(t, c, "Product", "/p/"+pr.ID, pr.Name+" | Kith Shop", "")
	}
	s := g.begin("track", t+400+g.rng.Int64N(1500), c)
	b := append(g.arena, `,"event":"Product Viewed","properties":{`...)
	b = g.appendProduct(b, prod, 0)
	g.arena = append(b, '}')
	g.end(s, c, false)
}

// productAdded writes "Product Added".
func (g *generator) productAdded(t int64, c *client, prod, qty int) {
	s := g.begin("track", t, c)
	b := append(g.arena, `,"event":"Product Added","properties":{`...)
	b = g.appendProduct(b, prod, qty)
	g.arena = append(b, '}')
	g.end(s, c, false)
}

// order writes "Checkout Started" and "Order Completed" for the lines
// g.lines[ls:le], and exports some webshop orders to the orders file too.
func (g *generator) order(t int64, c *client, ls, le int) {
	p := &g.p
	g.webOrderSeq++
	id := "SO" + pad(int(g.webOrderSeq), 8)
	revenue := 0
	for _, l := range g.lines[ls:le] {
		revenue += g.cat.cents[l.prod] * l.qty
	}
	s := g.begin("track", t, c)
	b := append(g.arena, `,"event":"Checkout Started","properties":{"order_id":"`...)
	b = append(b, id...)
	b = append(b, `","value":`...)
	b = appendCents(b, revenue)
	g.arena = append(b, `,"currency":"EUR"}`...)
	g.end(s, c, false)

	t += 30*second + g.rng.Int64N(3*minute)
	s = g.begin("track", t, c)
	b = append(g.arena, `,"event":"Order Completed","properties":{"order_id":"`...)
	b = append(b, id...)
	b = append(b, `","revenue":`...)
	b = appendCents(b, revenue)
	b = append(b, `,"currency":"EUR","products":[`...)
	for i, l := range g.lines[ls:le] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = g.appendProduct(b, l.prod, l.qty)
		b = append(b, '}')
	}
	g.arena = append(b, "]}"...)
	g.end(s, c, false)

	p.orders++
	p.lastOrder = t
	if c.app {
		g.sum.Orders["app"]++
		return
	}
	g.sum.Orders["web"]++
	if g.rng.IntN(100) >= 5 {
		return
	}
	// Exported from the order-management system as well.
	card := ""
	if p.hasCard && t >= p.tCard && g.rng.IntN(10) < 7 {
		card = p.card
		g.addTruth("loyalty_card", card)
		g.addTruth("anonymous_id", "card-"+card)
	}
	g.orderRows(t, id, "web", "", p.userID, p.email, card, ls, le)
	g.sum.ExportedWebOrders++
}

// posOrder writes a cash-register sale of the current person: mostly with
// the loyalty card, sometimes without it (then nothing identifies the
// sale), now and then with an e-mail address for the receipt.
func (g *generator) posOrder(t int64, dupCard bool) {
	rng, p := g.rng, &g.p
	ls, le := g.basket(p)
	card := p.card
	switch {
	case dupCard || (p.dup && t > p.tDup && rng.IntN(100) < 40):
		card = p.dupCard
	case p.orders > 0 && rng.IntN(100) < 7:
		card = "" // forgotten (never on the first visit: the card is new)
	}
	email, customer := "", ""
	if p.seg == segOmni && p.signedUp {
		if rng.IntN(100) < 12 {
			email = p.email // a digital receipt
			g.addTruth("email", p.emailKey)
		}
		if rng.IntN(100) < 5 {
			customer = p.userID // scanned the app at the till
			g.addTruth("user_id", customer)
		}
	}
	if card != "" {
		g.addTruth("loyalty_card", card)
		g.addTruth("anonymous_id", "card-"+card)
	}
	store := p.store
	if rng.IntN(100) < 15 {
		store = 1 + rng.IntN(stores)
	}
	g.posOrderSeq++
	g.orderRows(t, "R"+pad(store, 3)+"-"+pad(int(g.posOrderSeq), 8), "pos", "store-"+pad(store, 3), customer, email, card, ls, le)
	p.orders++
	p.lastOrder = t
	g.sum.Orders["pos"]++
}

// stores is the number of stores: one in each city, two in the big ones.
const stores = 42

// orderRows writes one orders-file row per line item of an order.
func (g *generator) orderRows(t int64, id, channel, store, customer, email, card string, ls, le int) {
	ts := string(appendCSVTime(nil, t))
	for _, l := range g.lines[ls:le] {
		pr := &g.cat.products[l.prod]
		g.addRow(fileOrders, t, id, ts, channel, store, customer, email, card, "EUR",
			pr.ID, pr.SKU, pr.Name, pr.Category, centsString(g.cat.cents[l.prod]), strconv.Itoa(l.qty))
	}
}

// basket fills an order: a refill for something the person owns, or an
// article of a favourite category with the articles often bought with it,
// and sometimes something unrelated. It returns the lines' range in
// g.lines.
func (g *generator) basket(p *person) (int, int) {
	rng, c := g.rng, g.cat
	start := len(g.lines)
	add := func(prod int) {
		k := c.kind[prod]
		qty := 1
		if kinds[k].consumable {
			if rng.IntN(3) == 0 {
				qty += 1 + rng.IntN(2)
			}
		} else if rng.IntN(20) == 0 {
			qty = 2
		}
		for i := start; i < len(g.lines); i++ {
			if g.lines[i].prod == prod {
				g.lines[i].qty += qty
				return
			}
		}
		g.lines = append(g.lines, orderLine{prod, qty})
	}
	if p.nOwned > 0 && rng.IntN(100) < 40 {
		if aff := c.affinity[p.owned[rng.IntN(p.nOwned)]]; len(aff) > 0 {
			add(c.pickVariant(rng, aff[rng.IntN(len(aff))]))
		}
	}
	if len(g.lines) == start {
		cat := p.fav[rng.IntN(2)]
		if rng.IntN(100) < 40 {
			cat = c.pickCategory(rng)
		}
		k := c.pickKind(rng, cat, p.tier)
		add(c.pickVariant(rng, k))
		for _, a := range c.affinity[k] {
			if rng.IntN(100) < 35 {
				add(c.pickVariant(rng, a))
			}
		}
		if !kinds[k].consumable && p.nOwned < len(p.owned) {
			p.owned[p.nOwned] = k
			p.nOwned++
		}
	}
	for len(g.lines)-start < 6 && rng.IntN(100) < 25 {
		add(c.pickVariant(rng, c.pickKind(rng, c.pickCategory(rng), p.tier)))
	}
	return start, len(g.lines)
}

// walkIns writes the anonymous cash-register sales that follow a person:
// shoppers without a loyalty card, who belong to no one in the truth.
func (g *generator) walkIns() error {
	rng := g.rng
	for range poisson(rng, 0.3) {
		var w person
		w.tier = rng.IntN(3)
		w.fav = [2]int{g.cat.pickCategory(rng), g.cat.pickCategory(rng)}
		t := atHour(rng, between(rng, g.start, g.now-day), true)
		store := 1 + rng.IntN(stores)
		g.lines = g.lines[:0]
		ls, le := g.basket(&w)
		g.posOrderSeq++
		id := "R" + pad(store, 3) + "-" + pad(int(g.posOrderSeq), 8)
		ts := string(appendCSVTime(nil, t))
		for _, l := range g.lines[ls:le] {
			pr := &g.cat.products[l.prod]
			g.rec = append(g.rec[:0], id, ts, "pos", "store-"+pad(store, 3), "", "", "", "EUR",
				pr.ID, pr.SKU, pr.Name, pr.Category, centsString(g.cat.cents[l.prod]), strconv.Itoa(l.qty))
			if err := g.sink.Row(FileOrders, g.rec); err != nil {
				return err
			}
			g.rows[fileOrders]++
		}
		g.sum.AnonymousPOSOrders++
	}
	return nil
}

// tally adds the current person to the summary.
func (g *generator) tally() {
	p, s := &g.p, &g.sum
	s.People++
	s.Segments[segmentNames[p.seg]]++
	switch {
	case p.seg == segAnonymous:
		s.AnonymousVisitors++
	case p.signedUp:
		s.WebAccounts++
	}
	if p.device.seen {
		s.AppUsers++
	}
	if p.hasCard {
		s.LoyaltyMembers++
	}
	if p.dup {
		s.DuplicateContacts++
	}
	if p.subscribed {
		s.EmailSubscribers++
	}
	if p.orders > 0 {
		s.Buyers++
		if p.orders > 1 {
			s.RepeatBuyers++
		} else {
			s.OneTimeBuyers++
		}
		if p.lastOrder < g.now-270*day {
			s.Lapsed++
		}
	}
}
