// Package demo generates the dataset behind `kith demo`: a seeded,
// realistic, multi-channel history of the customers of a kitchen and coffee
// shop that sells online, in an app and in its stores, together with the
// ground truth of which records belong to the same person, so that identity
// resolution can be scored against it.
//
// Each person gets live Segment messages from the sources "webshop" and
// "app" (anonymous browsing, sign-up, logged-in browsing, carts and
// orders, app screens with device ids), and rows for three CSV files: the
// CRM's contacts, the orders of the cash registers (plus a few online
// orders exported from the order-management system) and the e-mail
// service's engagement log. People differ: some only browse, some buy
// online, some use the app, some are loyalty members who only shop in
// stores, some do everything; some buy often, some once, some lapse. The
// CRM copies of names, addresses and e-mail addresses carry the small
// variations real data has, and about 2% of people were entered twice.
//
// Generation streams: memory does not grow with the number of customers,
// and the same Config always yields byte-identical output.
package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Config parameterises Generate.
type Config struct {
	// Customers is the number of people to generate; 0 means 10000. At
	// most MaxCustomers.
	Customers int
	// Seed makes the dataset repeatable.
	Seed int64
	// Now is "today": the history spans the two years before it. The zero
	// value means 2025-06-01 00:00 UTC, so that output stays reproducible.
	Now time.Time
}

// DefaultCustomers is the number of people generated when
// Config.Customers is 0.
const DefaultCustomers = 10000

// MaxCustomers bounds Config.Customers: up to it, every person's phone
// number, loyalty cards, user id and e-mail addresses are distinct.
const MaxCustomers = 50_000_000

// Sources of the live events.
const (
	SourceWebshop = "webshop"
	SourceApp     = "app"
)

// CSV files.
const (
	FileCRMContacts     = "crm_contacts"
	FileOrders          = "orders"
	FileEmailEngagement = "email_engagement"
)

// Sink receives the dataset as it is generated, person by person; within a
// person in time order. Each person's events and rows are followed by the
// Truth calls for the identifiers they carry; anonymous walk-in sales
// (cash-register orders without a loyalty card, which belong to no one)
// come between people. The msg and record slices are reused after the call
// returns: a sink that keeps them must copy them (the strings inside
// record may be kept).
type Sink interface {
	// Event is one live Segment message (JSON object bytes) sent by
	// source "webshop" or "app".
	Event(source string, msg []byte) error
	// Row is one CSV record for file "crm_contacts", "orders" or
	// "email_engagement" (columns as in Headers, header not included).
	Row(file string, record []string) error
	// Truth records that identifier (type, value) belongs to person
	// personID. Values are as the platform sees them after normalisation:
	// e-mails trimmed and lower-cased, phones in E.164.
	Truth(personID, idType, value string) error
}

// Headers gives each CSV file's header row.
var Headers = map[string][]string{
	FileCRMContacts: {"contact_id", "customer_id", "email", "first_name", "last_name", "phone", "street",
		"postal_code", "city", "country", "birthday", "loyalty_card", "email_opt_in", "updated_at"},
	FileOrders: {"order_id", "ordered_at", "channel", "store_id", "customer_id", "email", "loyalty_card",
		"currency", "product_id", "sku", "product_name", "category", "price", "quantity"},
	FileEmailEngagement: {"event_id", "occurred_at", "email", "action", "campaign_id", "campaign_name", "link_url"},
}

var (
	sourceNames = [...]string{SourceWebshop, SourceApp}
	fileNames   = [...]string{FileCRMContacts, FileOrders, FileEmailEngagement}
)

// Source and file indexes.
const (
	srcWebshop = iota
	srcApp
)

const (
	fileCRM = iota
	fileOrders
	fileEmail
)

// Summary describes a generated dataset.
type Summary struct {
	// People is the number of people generated.
	People int
	// Segments counts people per behaviour: "anonymous" (browses, never
	// signs up), "web", "app+web", "store" (loyalty member, stores only)
	// and "omnichannel".
	Segments map[string]int
	// Events counts live events per source; EventBytes is their total
	// size.
	Events     map[string]int
	EventBytes int64
	// Rows counts CSV records per file.
	Rows map[string]int
	// Identifiers counts Truth calls, and IdentifierTypes per type.
	Identifiers     int
	IdentifierTypes map[string]int
	// Orders counts the orders people placed, by channel: "web", "app"
	// and "pos".
	Orders map[string]int
	// ExportedWebOrders is the number of webshop orders that appear both
	// as a live event and in the orders file.
	ExportedWebOrders int
	// AnonymousPOSOrders is the number of cash-register sales without any
	// identifier (no loyalty card); they belong to no person.
	AnonymousPOSOrders int
	// Buyers placed at least one order; RepeatBuyers two or more;
	// OneTimeBuyers exactly one.
	Buyers, RepeatBuyers, OneTimeBuyers int
	// Lapsed is the number of buyers whose last order is more than 270
	// days before Now.
	Lapsed int
	// AnonymousVisitors browsed the webshop without ever signing up.
	AnonymousVisitors int
	// WebAccounts, AppUsers and LoyaltyMembers count people with a
	// webshop account, the app and a loyalty card.
	WebAccounts, AppUsers, LoyaltyMembers int
	// CRMContacts is the number of CRM rows; DuplicateContacts the number
	// of people with two of them.
	CRMContacts, DuplicateContacts int
	// EmailSubscribers is the number of people who received e-mail
	// campaigns.
	EmailSubscribers int
}

// item is one generated record of the current person, kept until the
// person is complete so that records can be emitted in time order.
type item struct {
	t          int64
	row        bool
	src        int8 // source or file index
	start, end int32
}

// ident is an identifier of the current person.
type ident struct{ typ, value string }

// generator holds the state of one Generate call. Everything that grows
// with the number of people is a counter; the slices hold one person.
type generator struct {
	sink      Sink
	seed      int64
	seedStr   string
	key       uint64
	now       int64 // milliseconds since the epoch
	start     int64
	nowYear   int
	customers int
	emailMod  uint64
	cat       *catalogue
	campaigns []campaign
	pcg       *rand.PCG
	rng       *rand.Rand

	contactSeq, webOrderSeq, posOrderSeq, mailSeq int64

	p      person
	n      int // messages of the current person
	plans  []plan
	lines  []orderLine
	items  []item
	arena  []byte
	fields []string
	truth  []ident
	rec    []string

	// The event being written and the web page it happens on.
	evTime                         int64
	curPath, curTitle, curReferrer string
	curCampaign                    *campaign

	events     [len(sourceNames)]int
	rows       [len(fileNames)]int
	eventBytes int64
	sum        Summary
}

// Generate writes the whole dataset to sink and returns a summary. It stops
// at the first error the sink returns.
func Generate(cfg Config, sink Sink) (Summary, error) {
	if cfg.Customers < 0 || cfg.Customers > MaxCustomers {
		return Summary{}, fmt.Errorf("demo: customers must be between 0 and %d, not %d", MaxCustomers, cfg.Customers)
	}
	if sink == nil {
		return Summary{}, errors.New("demo: nil sink")
	}
	g := newGenerator(cfg, sink)
	for i := range g.customers {
		if err := g.person(i); err != nil {
			return g.summary(), err
		}
	}
	return g.summary(), nil
}

func newGenerator(cfg Config, sink Sink) *generator {
	if cfg.Customers == 0 {
		cfg.Customers = DefaultCustomers
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	g := &generator{
		sink:      sink,
		seed:      cfg.Seed,
		seedStr:   strconv.FormatInt(cfg.Seed, 10),
		key:       mix(uint64(cfg.Seed) ^ 0x6b697468),
		now:       now.UnixMilli(),
		nowYear:   now.UTC().Year(),
		customers: cfg.Customers,
		cat:       newCatalogue(cfg.Seed),
		pcg:       rand.NewPCG(0, 0),
		sum: Summary{
			Segments:        map[string]int{},
			Events:          map[string]int{},
			Rows:            map[string]int{},
			IdentifierTypes: map[string]int{},
			Orders:          map[string]int{},
		},
	}
	g.rng = rand.New(g.pcg)
	g.start = g.now - 2*year
	g.emailMod = 10_000
	for g.emailMod < uint64(cfg.Customers) {
		g.emailMod *= 10
	}
	g.campaigns = newCampaigns(g.start, g.now)
	return g
}

// summary completes the summary's per-source and per-file counts.
func (g *generator) summary() Summary {
	s := g.sum
	for i, n := range g.events {
		s.Events[sourceNames[i]] = n
	}
	for i, n := range g.rows {
		s.Rows[fileNames[i]] = n
	}
	s.EventBytes = g.eventBytes
	return s
}

// person generates person i and the walk-in sales that follow it.
func (g *generator) person(i int) error {
	g.pcg.Seed(uint64(g.seed), mix(uint64(i)^g.key))
	g.n = 0
	g.plans = g.plans[:0]
	g.lines = g.lines[:0]
	g.items = g.items[:0]
	g.arena = g.arena[:0]
	g.fields = g.fields[:0]
	g.truth = g.truth[:0]
	g.draw(i)
	g.schedule()
	g.play()
	g.tally()
	if err := g.flush(); err != nil {
		return err
	}
	return g.walkIns()
}

// flush emits the current person's records in time order, then its truth.
func (g *generator) flush() error {
	slices.SortStableFunc(g.items, func(a, b item) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
	for _, it := range g.items {
		if it.row {
			if err := g.sink.Row(fileNames[it.src], g.fields[it.start:it.end:it.end]); err != nil {
				return err
			}
			g.rows[it.src]++
			continue
		}
		msg := g.arena[it.start:it.end:it.end]
		if err := g.sink.Event(sourceNames[it.src], msg); err != nil {
			return err
		}
		g.events[it.src]++
		g.eventBytes += int64(len(msg))
	}
	for _, id := range g.truth {
		if err := g.sink.Truth(g.p.id, id.typ, id.value); err != nil {
			return err
		}
		g.sum.Identifiers++
		g.sum.IdentifierTypes[id.typ]++
	}
	return nil
}

// addTruth records an identifier of the current person once.
func (g *generator) addTruth(typ, value string) {
	if value == "" {
		return
	}
	for _, id := range g.truth {
		if id.typ == typ && id.value == value {
			return
		}
	}
	g.truth = append(g.truth, ident{typ, value})
}

// addRow appends a CSV record of the current person at time t.
func (g *generator) addRow(file int, t int64, record ...string) {
	start := len(g.fields)
	g.fields = append(g.fields, record...)
	g.items = append(g.items, item{t: t, row: true, src: int8(file), start: int32(start), end: int32(len(g.fields))})
}
