package demo

import (
	"strconv"

	"github.com/kithcdp/kith/rawjson"
)

// Live events are appended to g.arena by hand: encoding/json would cost
// more than everything else the generator does. begin opens an event and
// writes its ids, the caller appends the type's own fields, and end writes
// the context and files the event under the current person.

// begin appends the start of an event of type typ at time t from client c:
// type, userId (once logged in), anonymousId, messageId and timestamp. It
// returns where the event starts in g.arena.
func (g *generator) begin(typ string, t int64, c *client) int {
	start := len(g.arena)
	b := append(g.arena, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if c.loggedIn {
		b = append(b, `,"userId":`...)
		b = rawjson.AppendString(b, g.p.userID)
	}
	b = append(b, `,"anonymousId":"`...)
	b = append(b, c.anonID...)
	b = append(b, `","messageId":"demo-`...)
	b = append(b, g.seedStr...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(g.p.idx), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(g.n), 10)
	g.n++
	b = append(b, `","timestamp":"`...)
	b = appendRFC3339(b, t)
	g.arena = append(b, '"')
	g.evTime = t
	return start
}

// end appends the context (with the consent preferences when consent is
// set) and closes the event begun at start.
func (g *generator) end(start int, c *client, consent bool) {
	b := append(g.arena, `,"context":{`...)
	src := srcWebshop
	if c.app {
		src = srcApp
		b = g.appendAppContext(b, c)
	} else {
		b = append(b, `"library":{"name":"analytics.js","version":"next-1.74.0"},"ip":"`...)
		b = append(b, c.ip...)
		b = append(b, `","locale":"nl-NL","page":{"path":`...)
		b = rawjson.AppendString(b, g.curPath)
		if g.curReferrer != "" {
			b = append(b, `,"referrer":`...)
			b = rawjson.AppendString(b, g.curReferrer)
		}
		b = append(b, `,"title":`...)
		b = rawjson.AppendString(b, g.curTitle)
		b = append(b, `,"url":`...)
		b = rawjson.AppendString(b, shopURL+g.curPath)
		b = append(b, `},"userAgent":"`...)
		b = append(b, userAgents[c.agent]...)
		b = append(b, '"')
		if cp := g.curCampaign; cp != nil {
			b = append(b, `,"campaign":{"name":"`...)
			b = append(b, cp.id...)
			b = append(b, `","source":"newsletter","medium":"email"}`...)
		}
	}
	if consent {
		p := &g.p
		b = append(b, `,"consent":{"categoryPreferences":{"Advertising":`...)
		b = appendBool(b, p.adv)
		b = append(b, `,"Analytics":true,"Marketing":`...)
		b = appendBool(b, p.mkt)
		b = append(b, "}}"...)
	}
	g.arena = append(b, "}}"...)
	g.items = append(g.items, item{t: g.evTime, src: int8(src), start: int32(start), end: int32(len(g.arena))})
	if !c.seen {
		c.seen = true
		g.addTruth("anonymous_id", c.anonID)
		if c.app {
			typ := "android"
			if c.ios {
				typ = "ios"
			}
			g.addTruth(typ+".id", c.deviceID)
			if c.adTracking {
				g.addTruth(typ+".idfa", c.adID)
			}
		}
	}
}

// appendAppContext appends the context fields of the mobile SDKs.
func (g *generator) appendAppContext(b []byte, c *client) []byte {
	d := &androidDevices[c.agent%len(androidDevices)]
	lib, typ := `"library":{"name":"analytics-kotlin","version":"1.16.3"}`, "android"
	if c.ios {
		d = &iosDevices[c.agent%len(iosDevices)]
		lib, typ = `"library":{"name":"analytics-swift","version":"1.5.11"}`, "ios"
	}
	b = append(b, `"app":{"build":"4120","name":"Kith Shop","version":"4.12.0"},"device":{"adTrackingEnabled":`...)
	b = appendBool(b, c.adTracking)
	b = append(b, `,"advertisingId":"`...)
	b = append(b, c.adID...)
	b = append(b, `","id":"`...)
	b = append(b, c.deviceID...)
	b = append(b, `","manufacturer":"`...)
	b = append(b, d.manufacturer...)
	b = append(b, `","model":"`...)
	b = append(b, d.model...)
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `"},"ip":"`...)
	b = append(b, c.ip...)
	b = append(b, `",`...)
	b = append(b, lib...)
	b = append(b, `,"locale":"nl-NL","network":{"wifi":`...)
	b = appendBool(b, g.rng.IntN(3) != 0)
	b = append(b, `},"os":{"name":"`...)
	b = append(b, d.os...)
	b = append(b, `","version":"`...)
	b = append(b, d.osVersion...)
	return append(b, `"},"timezone":"Europe/Amsterdam"`...)
}

// page writes a page call and makes it the page the following web events
// happen on.
func (g *generator) page(t int64, c *client, name, path, title, referrer string) {
	g.curPath, g.curTitle, g.curReferrer = path, title, referrer
	s := g.begin("page", t, c)
	b := append(g.arena, `,"name":`...)
	b = rawjson.AppendString(b, name)
	b = append(b, `,"properties":{"path":`...)
	b = rawjson.AppendString(b, path)
	if referrer != "" {
		b = append(b, `,"referrer":`...)
		b = rawjson.AppendString(b, referrer)
	}
	b = append(b, `,"title":`...)
	b = rawjson.AppendString(b, title)
	b = append(b, `,"url":`...)
	b = rawjson.AppendString(b, shopURL+path)
	g.arena = append(b, '}')
	g.end(s, c, false)
}

// screen writes an app screen call, for a product when prod is not -1.
func (g *generator) screen(t int64, c *client, name string, prod int) {
	s := g.begin("screen", t, c)
	b := append(g.arena, `,"name":`...)
	b = rawjson.AppendString(b, name)
	b = append(b, `,"properties":{`...)
	if prod >= 0 {
		b = g.appendProduct(b, prod, 0)
	}
	g.arena = append(b, '}')
	g.end(s, c, false)
}

// appLifecycle writes one of the app's lifecycle events.
func (g *generator) appLifecycle(t int64, c *client, event string) {
	s := g.begin("track", t, c)
	b := append(g.arena, `,"event":`...)
	b = rawjson.AppendString(b, event)
	b = append(b, `,"properties":{"build":"4120","version":"4.12.0"`...)
	if event == "Application Opened" {
		b = append(b, `,"from_background":false`...)
	}
	g.arena = append(b, '}')
	g.end(s, c, false)
}

// identify writes the identify of a sign-up (full: e-mail, name, phone
// when given, address sometimes, account creation time) or of a log-in
// (the e-mail only), and logs client c in.
func (g *generator) identify(t int64, c *client, full bool) {
	p := &g.p
	c.loggedIn = true
	s := g.begin("identify", t, c)
	b := append(g.arena, `,"traits":{"email":`...)
	b = rawjson.AppendString(b, p.email)
	if full {
		b = append(b, `,"firstName":`...)
		b = rawjson.AppendString(b, p.given.given)
		b = append(b, `,"lastName":`...)
		b = rawjson.AppendString(b, p.last)
		if p.phoneWeb {
			b = append(b, `,"phone":"`...)
			b = append(b, formatPhone(p.phone, p.phoneFmt)...)
			b = append(b, '"')
			g.addTruth("phone", "+31"+p.phone)
		}
		if p.shareAddr {
			b = append(b, `,"address":{"street":`...)
			b = rawjson.AppendString(b, p.addr.line())
			b = append(b, `,"postalCode":`...)
			b = rawjson.AppendString(b, p.addr.postal)
			b = append(b, `,"city":`...)
			b = rawjson.AppendString(b, p.addr.city)
			b = append(b, `,"country":"`...)
			b = append(b, p.addr.country...)
			b = append(b, `"}`...)
		}
		b = append(b, `,"createdAt":"`...)
		b = appendRFC3339(b, t)
		b = append(b, '"')
	}
	g.arena = append(b, '}')
	g.end(s, c, p.consent)
	g.addTruth("user_id", p.userID)
	g.addTruth("email", p.emailKey)
}

// appendProduct appends the fields of a product (and its quantity when qty
// is positive) without the surrounding braces.
func (g *generator) appendProduct(b []byte, prod, qty int) []byte {
	pr := &g.cat.products[prod]
	b = append(b, `"product_id":"`...)
	b = append(b, pr.ID...)
	b = append(b, `","sku":"`...)
	b = append(b, pr.SKU...)
	b = append(b, `","name":`...)
	b = rawjson.AppendString(b, pr.Name)
	b = append(b, `,"category":`...)
	b = rawjson.AppendString(b, pr.Category)
	b = append(b, `,"price":`...)
	b = appendCents(b, g.cat.cents[prod])
	if qty > 0 {
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, int64(qty), 10)
	}
	return b
}

// device is a phone model and its operating system.
type device struct{ manufacturer, model, os, osVersion string }

var (
	iosDevices = []device{
		{"Apple", "iPhone14,5", "iOS", "17.5.1"}, {"Apple", "iPhone15,2", "iOS", "17.4.1"},
		{"Apple", "iPhone15,4", "iOS", "17.5.1"}, {"Apple", "iPhone16,1", "iOS", "17.5.1"},
		{"Apple", "iPhone13,2", "iOS", "16.7.8"}, {"Apple", "iPhone14,7", "iOS", "17.3"},
	}
	androidDevices = []device{
		{"samsung", "SM-S911B", "Android", "14"}, {"samsung", "SM-A546B", "Android", "14"},
		{"Google", "Pixel 8", "Android", "14"}, {"Google", "Pixel 7a", "Android", "14"},
		{"OnePlus", "CPH2449", "Android", "13"}, {"Xiaomi", "2201117TY", "Android", "13"},
	}
	userAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
	}
	referrers = []string{"", "", "https://www.google.com/", "https://www.google.com/", "https://www.google.nl/",
		"https://www.bing.com/", "https://www.instagram.com/", "https://www.facebook.com/", "https://www.pinterest.com/"}
	// Addresses from the documentation ranges (RFC 5737), never real ones.
	ipPrefixes = []string{"192.0.2.", "198.51.100.", "203.0.113."}
)
