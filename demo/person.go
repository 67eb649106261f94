package demo

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Behaviour segments.
const (
	segAnonymous = iota // browses the webshop, never signs up
	segWeb              // webshop account
	segAppWeb           // webshop account and the app
	segStore            // loyalty member who only shops in stores
	segOmni             // account, loyalty card, stores and online
)

var (
	segmentNames = [...]string{"anonymous", "web", "app+web", "store", "omnichannel"}
	segmentCum   = [...]float64{0.10, 0.38, 0.55, 0.80, 1}
)

// client is a browser cookie or an app installation: the anonymousId it
// sends and what its context says.
type client struct {
	app      bool
	anonID   string
	ip       string
	agent    int // web user agent or app device model
	loggedIn bool
	seen     bool // has sent an event (its ids are in the truth)
	// App installations only.
	ios        bool
	deviceID   string
	adID       string
	adTracking bool
}

// person is the state of the person being generated: who they are, which
// channels they use from when, and what they have done so far.
type person struct {
	idx     int
	id      string
	seg     int
	given   name
	last    string
	birth   [3]int // year, month, day
	addr    address
	cityIdx int

	email     string // the address as the person types it into the webshop
	emailKey  string // normalised: trimmed, lower case
	phone     string // nine national digits
	phoneFmt  int    // how the person writes it in the webshop
	phoneWeb  bool   // given at sign-up
	shareAddr bool   // gives the address at sign-up
	userID    string
	card      string
	dupCard   string

	web, app, hasCard, crm, dup bool

	tier     int
	fav      [2]int
	rate     float64 // orders per year while active
	openRate float64 // share of campaign e-mails opened
	consent  bool    // sends consent preferences
	adv, mkt bool    // consent to advertising and marketing
	store    int     // home store

	// Times in milliseconds: first contact, end of activity (before Now
	// for people who lapse), webshop sign-up, first loyalty card, app
	// install, CRM contact creation, in-store duplicate contact.
	t0, tEnd, tWeb, tCard, tApp, tCRM, tDup int64

	cookies  [3]client
	nCookies int
	device   client
	signedUp bool
	busy     int64 // end of the last session

	owned      [4]int // kinds of durable products bought, for refills
	nOwned     int
	orders     int
	lastOrder  int64
	subscribed bool
	unsubAt    int64
}

// draw fills g.p with person i's attributes.
func (g *generator) draw(i int) {
	rng := g.rng
	p := &g.p
	*p = person{idx: i, id: "P" + pad(i+1, 7)}
	x := rng.Float64()
	for p.seg = 0; p.seg < len(segmentCum)-1 && x >= segmentCum[p.seg]; p.seg++ {
	}
	if rng.IntN(2) == 0 {
		p.given = femaleNames[zipfIndex(rng, len(femaleNames))]
	} else {
		p.given = maleNames[zipfIndex(rng, len(maleNames))]
	}
	p.last = lastNames[zipfIndex(rng, len(lastNames))]
	age := 18 + rng.IntN(25) + rng.IntN(40)
	p.birth[0] = g.nowYear - age
	p.birth[1] = 1 + rng.IntN(12)
	p.birth[2] = 1 + rng.IntN(daysIn(p.birth[0], p.birth[1]))
	p.cityIdx = pickCity(rng)
	p.addr = newAddress(rng, p.cityIdx)
	p.store = 1 + p.cityIdx
	if p.cityIdx < 12 && rng.IntN(2) == 0 {
		p.store += 30 // the big cities have a second store
	}

	p.emailKey = g.emailAddress(rng, uint64(i), domainsFor(p.addr.country))
	p.email = p.emailKey
	if rng.IntN(20) == 0 {
		p.email = capitalise(p.email)
	}
	p.phone = mobile(uint64(i), g.key)
	p.phoneFmt = rng.IntN(phoneFormats)

	switch p.seg {
	case segWeb, segAppWeb:
		p.web = true
		p.app = p.seg == segAppWeb
		p.crm = rng.IntN(4) != 0
	case segStore:
		p.hasCard = true
		p.crm = rng.IntN(20) != 0
	case segOmni:
		p.web, p.hasCard, p.crm = true, true, true
		p.app = rng.IntN(100) < 35
	}
	if p.web {
		p.userID = "usr_" + string(appendHex(nil, uint64(perm32(uint32(i), uint32(g.key))), 8))
		p.phoneWeb = rng.IntN(100) < 40
		p.shareAddr = rng.IntN(100) < 60
		p.consent = rng.IntN(100) < 85
		p.adv = rng.IntN(100) < 70
		p.mkt = rng.IntN(100) < 55
	}
	if p.hasCard {
		p.card = loyaltyCard(2*uint64(i), g.key)
	}
	p.dup = p.crm && rng.IntN(1000) < 28
	if p.dup {
		p.dupCard = loyaltyCard(2*uint64(i)+1, g.key)
	}

	p.tier = tierBudget
	switch x := rng.IntN(100); {
	case x >= 85:
		p.tier = tierPremium
	case x >= 45:
		p.tier = tierMid
	}
	p.fav[0] = g.cat.pickCategory(rng)
	p.fav[1] = g.cat.pickCategory(rng)
	mean := 1.6
	switch p.seg {
	case segStore:
		mean = 2.4
	case segOmni:
		mean = 3.2
	}
	p.rate = gamma(rng, 1.2) * mean / 1.2
	p.openRate = 0.05 + 0.5*rng.Float64()*rng.Float64()
}

// domainsFor returns the mail providers of a country.
func domainsFor(country string) []string {
	switch country {
	case "BE":
		return domainsBE
	case "DE":
		return domainsDE
	}
	return domainsNL
}

// emailAddress returns an address for person i in one of the styles people
// choose. The number in it is distinct per person, so two people never
// share an address whatever their names.
func (g *generator) emailAddress(rng *rand.Rand, i uint64, domains []string) string {
	p := &g.p
	n := strconv.FormatUint(permute(i, g.emailMod, g.key^0xe4a1), 10)
	first, last := ascii(p.given.given), ascii(p.last)
	var local string
	switch rng.IntN(6) {
	case 0, 1:
		local = first + "." + last + n
	case 2:
		local = first[:1] + last + n
	case 3:
		local = first + n
	case 4:
		local = last + "." + first[:1] + n
	default:
		local = first + "_" + last + n
	}
	return local + "@" + domains[rng.IntN(len(domains))]
}

// capitalise writes the first letter of each part of an e-mail address in
// upper case, as phones auto-correct it.
func capitalise(s string) string {
	b := []byte(s)
	up := true
	for i, c := range b {
		if up && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '.' || c == '@'
	}
	return string(b)
}

// daysIn returns the number of days of a month.
func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// gamma draws from a gamma distribution with the given shape and scale 1
// (Marsaglia and Tsang).
func gamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		return gamma(rng, shape+1) * math.Pow(rng.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// expDur draws an exponentially distributed duration with the given mean.
func expDur(rng *rand.Rand, mean int64) int64 {
	return int64(rng.ExpFloat64() * float64(mean))
}

// between draws a time uniformly in [a, b); a when the interval is empty.
func between(rng *rand.Rand, a, b int64) int64 {
	if b <= a {
		return a
	}
	return a + rng.Int64N(b-a)
}

// atHour moves t to a time of day drawn for the channel, on the same day:
// evenings for browsing, opening hours for stores (times are UTC, an hour
// or two behind the shop's local time).
func atHour(rng *rand.Rand, t int64, store bool) int64 {
	d := floorDiv(t, day) * day
	var h int64
	if store {
		h = 8 + rng.Int64N(9)
	} else {
		h = webHours[rng.IntN(len(webHours))]
	}
	return d + h*hour + rng.Int64N(hour)
}

// webHours weights the UTC hours people shop online: some in the morning,
// more at lunch, most in the evening.
var webHours = []int64{6, 7, 8, 9, 10, 11, 11, 12, 12, 13, 14, 15, 16, 17, 18, 18, 19, 19, 19, 20, 20, 20, 21, 21, 22}
