package demo

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Channels a plan happens on.
const (
	chWeb = iota
	chApp
	chPOS
)

// Kinds of plans.
const (
	planBrowse = iota // a browsing session
	planSignup        // the session in which the person creates an account
	planOrder         // a purchase
	planClick         // a visit from a campaign e-mail
)

// plan is something the person will do: a session in the webshop or the
// app, or a purchase in a store.
type plan struct {
	t        int64
	kind     uint8
	ch       uint8
	order    bool // the session ends in a purchase
	dupCard  bool // a store purchase with the card of the duplicate contact
	campaign int
}

// addPlan schedules something at t.
func (g *generator) addPlan(t int64, kind, ch int, order bool) {
	g.plans = append(g.plans, plan{t: t, kind: uint8(kind), ch: uint8(ch), order: order})
}

// clampHour is atHour that never reaches Now.
func (g *generator) clampHour(t int64, store bool) int64 {
	if u := atHour(g.rng, t, store); u < g.now-2*hour {
		return u
	}
	return min(t, g.now-2*hour)
}

// schedule decides the current person's timeline: when they first came,
// which channels they use from when, when they buy and browse, their CRM
// contacts and the campaign e-mails they get.
func (g *generator) schedule() {
	rng, p := g.rng, &g.p
	p.t0 = g.start + rng.Int64N(g.now-g.start-3*day)
	p.tEnd = g.now - hour
	if p.seg != segAnonymous && p.t0 < g.now-300*day && rng.IntN(100) < 30 {
		// Lapses: active for a while, then nothing in the last nine months.
		p.tEnd = between(rng, p.t0+21*day, g.now-270*day)
	}
	if p.seg == segAnonymous {
		end := min(p.t0+120*day, p.tEnd)
		for k := range 1 + poisson(rng, 1.3) {
			t := p.t0
			if k > 0 {
				t = between(rng, p.t0, end)
			}
			g.addPlan(g.clampHour(t, false), planBrowse, chWeb, false)
		}
		return
	}

	webFirst := p.web && (p.seg != segOmni || rng.IntN(2) == 0)
	p.t0 = g.clampHour(p.t0, !webFirst)
	if webFirst {
		// A few anonymous visits, then the sign-up.
		p.tWeb = p.t0
		if n := rng.IntN(5) / 2; n > 0 {
			gap := min(hour+expDur(rng, 5*day), (p.tEnd-p.t0)/2)
			for k := range n {
				g.addPlan(g.clampHour(p.t0+int64(k)*gap/int64(n), false), planBrowse, chWeb, false)
			}
			p.tWeb = g.clampHour(p.t0+gap, false)
		}
	} else {
		p.tCard = p.t0
	}
	if p.web && !webFirst {
		p.tWeb = g.clampHour(between(rng, p.t0+day, p.tEnd), false)
	}
	if p.hasCard && webFirst {
		p.tCard = between(rng, p.tWeb+day, p.tEnd)
	}
	if p.app {
		if p.seg == segAppWeb {
			p.tApp = between(rng, p.tWeb+hour, min(p.tWeb+90*day, p.tEnd))
		} else {
			p.tApp = between(rng, p.tWeb+day, p.tEnd)
		}
		g.addPlan(g.clampHour(p.tApp, false), planBrowse, chApp, false)
	}

	// Purchases: the first when the person arrives (or soon after), then
	// a Poisson process at the person's own rate until they lapse.
	rate := max(p.rate, 0.05)
	buyer := p.seg == segStore || p.seg == segOmni || rng.IntN(100) < 88
	signupOrder := false
	if buyer {
		first := p.tCard
		if webFirst {
			first = p.tWeb
			if rng.IntN(100) < 55 {
				signupOrder = true
			} else {
				first += expDur(rng, 10*day)
			}
		}
		if first < p.tEnd && !signupOrder {
			if webFirst {
				g.addPlan(g.clampHour(first, false), planOrder, chWeb, true)
			} else {
				g.addPlan(first, planOrder, chPOS, true) // already in opening hours
			}
		}
		for t := first; ; {
			t += expDur(rng, int64(float64(year)/rate))
			if t >= p.tEnd || t < first {
				break
			}
			ch := g.channel(t)
			g.addPlan(g.clampHour(t, ch == chPOS), planOrder, ch, true)
		}
	}
	if p.web {
		g.addPlan(p.tWeb, planSignup, chWeb, signupOrder)
		// Browsing without buying, more for people who buy more.
		mu := 1.5 + 1.2*rate
		for t := p.tWeb; ; {
			t += expDur(rng, int64(float64(year)/mu))
			if t >= p.tEnd {
				break
			}
			ch := chWeb
			if p.app && t >= p.tApp && rng.IntN(100) < 60 {
				ch = chApp
			}
			g.addPlan(g.clampHour(t, false), planBrowse, ch, false)
		}
	}
	if p.crm {
		g.contacts()
	}
}

// channel picks where a purchase at t happens among the channels the
// person uses by then.
func (g *generator) channel(t int64) int {
	p := &g.p
	var w [3]float64
	if p.web && t >= p.tWeb {
		w[chWeb] = 1
	}
	if p.app && t >= p.tApp {
		w[chApp] = 1.2
	}
	if p.hasCard && t >= p.tCard {
		w[chPOS] = 1
		if p.seg == segOmni {
			w[chPOS] = 1.3
		}
	}
	x := g.rng.Float64() * (w[0] + w[1] + w[2])
	for ch, v := range w {
		if x < v {
			return ch
		}
		x -= v
	}
	if p.hasCard {
		return chPOS
	}
	return chWeb
}

// contacts writes the person's CRM contact (and the duplicate some people
// have) and schedules the campaign e-mails they receive.
func (g *generator) contacts() {
	rng, p := g.rng, &g.p
	switch {
	case p.seg == segStore:
		p.tCRM = p.tCard
	case p.hasCard && p.tCard < p.tWeb:
		p.tCRM = p.tCard
	default:
		p.tCRM = p.tWeb + 2*hour
	}
	email := ""
	if p.web || rng.IntN(100) < 75 {
		email = p.emailKey
		if rng.IntN(100) < 3 {
			email = g.emailAddress(rng, uint64(p.idx), domainsWork) // a work address
		}
	}
	optIn := email != "" && rng.IntN(100) < 60
	if optIn {
		g.mail(email)
	}
	// The row as the CRM last saved it: after the account and the card
	// exist, or when the person unsubscribed.
	base := p.tCRM
	if p.web {
		base = max(base, p.tWeb+hour)
	}
	if p.hasCard {
		base = max(base, p.tCard)
	}
	var updated int64
	switch {
	case p.unsubAt > 0:
		updated = max(base, p.unsubAt+5*minute)
	case rng.IntN(2) == 0:
		updated = base + rng.Int64N(10*minute)
	default:
		updated = between(rng, base, g.now-minute)
	}
	updated = min(updated, g.now-second)

	given, last, addr := p.given.given, p.last, p.addr
	phone := ""
	if (p.phoneWeb && rng.IntN(10) != 0) || rng.IntN(100) < 55 {
		phone = formatPhone(p.phone, rng.IntN(phoneFormats))
	}
	shown := email
	if rng.IntN(100) < 20 {
		// Typed again by someone: small differences from the webshop.
		for k := 1 + rng.IntN(2); k > 0; k-- {
			switch rng.IntN(5) {
			case 0:
				if shown != "" {
					shown = emailVariant(rng, shown)
				}
			case 1:
				addr.street, _ = abbreviateStreet(addr.street)
			case 2:
				last = typo(rng, last)
			case 3:
				if addr.suffix != "" {
					addr.suffix = ""
				} else {
					addr.street, _ = abbreviateStreet(addr.street)
				}
			default:
				if p.given.nick != "" {
					given = p.given.nick
				} else {
					given = typo(rng, given)
				}
			}
		}
	}
	birthday := ""
	if rng.IntN(100) < 85 {
		birthday = string(appendDate(nil, p.birth[0], p.birth[1], p.birth[2]))
	}
	customer, card := "", ""
	if p.web && updated >= p.tWeb {
		customer = p.userID
	}
	if p.hasCard && updated >= p.tCard {
		card = p.card
	}
	opt := "no"
	if optIn && (p.unsubAt == 0 || p.unsubAt > updated) {
		opt = "yes"
	}
	g.contact(updated, customer, shown, given, last, phone, addr, birthday, card, opt)

	if !p.dup {
		return
	}
	// A second contact, created at a store counter: no customer id, a new
	// card, a differently typed name and address.
	p.tDup = g.clampHour(between(rng, p.tCRM+14*day, p.tEnd), true)
	if p.tDup >= p.tEnd || p.tDup <= p.tCRM {
		p.dup, p.dupCard = false, ""
		return
	}
	g.plans = append(g.plans, plan{t: p.tDup, kind: planOrder, ch: chPOS, order: true, dupCard: true})
	given, last, addr = p.given.given, p.last, p.addr
	switch x := rng.IntN(10); {
	case x < 4 && p.given.nick != "":
		given = p.given.nick
	case x < 7:
		given = given[:1] + "."
	}
	if rng.IntN(100) < 35 {
		last = typo(rng, last)
	}
	if s, ok := abbreviateStreet(addr.street); ok && rng.IntN(2) == 0 {
		addr.street = s
	} else {
		addr.suffix = ""
	}
	switch rng.IntN(3) {
	case 0:
		addr.postal = strings.ReplaceAll(addr.postal, " ", "")
	case 1:
		addr.postal = strings.ToLower(addr.postal)
	}
	birthday = ""
	if rng.IntN(100) < 85 {
		birthday = string(appendDate(nil, p.birth[0], p.birth[1], p.birth[2]))
	}
	email = ""
	if rng.IntN(2) == 0 {
		email = g.emailAddress(rng, uint64(p.idx), domainsOld) // an old address
	}
	g.contact(p.tDup+2*minute+rng.Int64N(8*minute), "", email, given, last, "", addr, birthday, p.dupCard, "no")
}

// contact writes one CRM row of the current person and records its
// identifiers.
func (g *generator) contact(t int64, customer, email, given, last, phone string, a address, birthday, card, optIn string) {
	g.contactSeq += 1 + int64(g.rng.IntN(3)) // some contacts were deleted
	id := "C" + pad(int(g.contactSeq), 7)
	g.addRow(fileCRM, t, id, customer, email, given, last, phone, a.line(), a.postal, a.city, a.country,
		birthday, card, optIn, string(appendCSVTime(nil, t)))
	g.addTruth("crm_id", id)
	g.addTruth("user_id", customer)
	g.addTruth("email", normEmail(email))
	if phone != "" {
		g.addTruth("phone", "+31"+g.p.phone)
	}
	g.addTruth("loyalty_card", card)
	g.sum.CRMContacts++
}

// normEmail is the platform's normalisation of e-mail addresses.
func normEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// emailVariant writes an address the way it sometimes ends up in the CRM:
// in capitals, capitalised or with spaces around it.
func emailVariant(rng *rand.Rand, s string) string {
	switch rng.IntN(4) {
	case 0:
		return strings.ToUpper(s)
	case 1:
		return capitalise(s)
	case 2:
		return " " + s
	}
	return s + " "
}

// campaign is one e-mail campaign: sent to part of the list every couple
// of weeks.
type campaign struct {
	at             int64
	id, name, link string
}

// campaignThemes name the campaigns by month; every other one is the
// regular newsletter.
var campaignThemes = [12]string{"Nieuwjaarsdeals", "Valentijn in de keuken", "Lenteschoonmaak", "Paasbrunch",
	"Moederdag", "Vaderdag", "Zomer Sale", "Koffie voor op kantoor", "Herfst kookboek", "Koffieweek",
	"Black Friday", "Kerstcadeaus"}

// newCampaigns returns the campaigns of the history: every other Thursday
// at 08:00 UTC.
func newCampaigns(start, now int64) []campaign {
	d := floorDiv(start, day) + 7
	for (d+4)%7 != 4 { // 1970-01-01 was a Thursday
		d++
	}
	var out []campaign
	for k := 0; ; k++ {
		at := d*day + 8*hour
		if at >= now {
			return out
		}
		y, m, dd := civil(d)
		date := string(appendDate(nil, y, m, dd))
		name := campaignThemes[m-1]
		if k%2 == 1 {
			name = "Nieuwsbrief " + date
		}
		out = append(out, campaign{
			at:   at,
			id:   "cmp-" + strings.ReplaceAll(date, "-", ""),
			name: name,
			link: shopURL + "/acties/" + slug(name),
		})
		d += 14
	}
}

// slug turns a name into a URL path segment.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// mail writes the engagement rows of the campaigns the person receives at
// address email, and schedules the visits their clicks lead to.
func (g *generator) mail(email string) {
	rng, p := g.rng, &g.p
	from := p.tCRM + day
	i, _ := slices.BinarySearchFunc(g.campaigns, from, func(c campaign, t int64) int {
		switch {
		case c.at < t:
			return -1
		case c.at > t:
			return 1
		}
		return 0
	})
	for ; i < len(g.campaigns); i++ {
		cp := &g.campaigns[i]
		if rng.IntN(100) >= 35 {
			continue // not in this campaign's audience
		}
		t := cp.at + rng.Int64N(40*minute)
		if t >= g.now {
			return
		}
		g.mailRow(t, email, "delivered", cp, "")
		p.subscribed = true
		active := t < p.tEnd
		open := p.openRate
		if !active {
			open *= 0.2
		}
		if rng.Float64() >= open {
			continue
		}
		to := t + minute + expDur(rng, 5*hour)
		if to >= g.now {
			continue
		}
		g.mailRow(to, email, "open", cp, "")
		switch {
		case active && rng.IntN(100) < 22:
			tc := to + 20*second + rng.Int64N(4*minute)
			if tc >= g.now-hour {
				continue
			}
			g.mailRow(tc, email, "click", cp, cp.link+"?utm_source=newsletter&utm_medium=email&utm_campaign="+cp.id)
			if p.web {
				g.plans = append(g.plans, plan{t: tc + 2*second, kind: planClick, ch: chWeb, campaign: i})
			}
		case rng.IntN(1000) < 15:
			tu := to + 30*second + rng.Int64N(2*minute)
			if tu >= g.now {
				continue
			}
			g.mailRow(tu, email, "unsubscribe", cp, "")
			p.unsubAt = tu
			return
		}
	}
}

// mailRow writes one e-mail engagement row.
func (g *generator) mailRow(t int64, email, action string, cp *campaign, link string) {
	g.mailSeq++
	g.addRow(fileEmail, t, "E"+pad(int(g.mailSeq), 9), string(appendCSVTime(nil, t)), email, action, cp.id, cp.name, link)
	g.addTruth("email", normEmail(email))
}

// poisson draws from a Poisson distribution with a small mean (Knuth).
func poisson(rng *rand.Rand, mean float64) int {
	l, k, q := math.Exp(-mean), 0, rng.Float64()
	for q > l {
		k++
		q *= rng.Float64()
	}
	return k
}
