package demo

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/commerce"
	"github.com/kithcdp/kith/identity"
)

var testNow = time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)

// rec is one thing a sink received, copied.
type rec struct {
	kind   byte // 'e' event, 'r' row, 't' truth
	name   string
	msg    []byte
	fields []string
	person string
	typ    string
	value  string
}

// memSink keeps everything.
type memSink struct{ recs []rec }

func (s *memSink) Event(source string, msg []byte) error {
	s.recs = append(s.recs, rec{kind: 'e', name: source, msg: slices.Clone(msg)})
	return nil
}

func (s *memSink) Row(file string, record []string) error {
	s.recs = append(s.recs, rec{kind: 'r', name: file, fields: slices.Clone(record)})
	return nil
}

func (s *memSink) Truth(personID, idType, value string) error {
	s.recs = append(s.recs, rec{kind: 't', person: personID, typ: idType, value: value})
	return nil
}

// hashSink digests the stream.
type hashSink struct{ h hash.Hash }

func (s *hashSink) Event(source string, msg []byte) error {
	fmt.Fprintf(s.h, "E%s\x00%s\n", source, msg)
	return nil
}

func (s *hashSink) Row(file string, record []string) error {
	fmt.Fprintf(s.h, "R%s\x00%s\n", file, strings.Join(record, "\x1f"))
	return nil
}

func (s *hashSink) Truth(personID, idType, value string) error {
	fmt.Fprintf(s.h, "T%s\x00%s\x00%s\n", personID, idType, value)
	return nil
}

// nullSink discards everything.
type nullSink struct{}

func (nullSink) Event(string, []byte) error         { return nil }
func (nullSink) Row(string, []string) error         { return nil }
func (nullSink) Truth(string, string, string) error { return nil }

func digest(t *testing.T, cfg Config) (string, Summary) {
	t.Helper()
	s := &hashSink{h: sha256.New()}
	sum, err := Generate(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", s.h.Sum(nil)), sum
}

func TestDeterministic(t *testing.T) {
	base := Config{Customers: 400, Seed: 7, Now: testNow}
	want, wantSum := digest(t, base)
	got, gotSum := digest(t, base)
	if got != want {
		t.Fatalf("two runs of the same config differ")
	}
	if !reflect.DeepEqual(gotSum, wantSum) {
		t.Fatalf("summaries differ:\n%+v\n%+v", gotSum, wantSum)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"seed", Config{Customers: 400, Seed: 8, Now: testNow}},
		{"now", Config{Customers: 400, Seed: 7, Now: testNow.Add(24 * time.Hour)}},
		{"customers", Config{Customers: 401, Seed: 7, Now: testNow}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := digest(t, tc.cfg); got == want {
				t.Errorf("changing %s did not change the output", tc.name)
			}
		})
	}
}

func TestCatalogue(t *testing.T) {
	a, b, c := Catalogue(1), Catalogue(1), Catalogue(2)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different catalogue")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same catalogue")
	}
	if len(a) < 180 || len(a) > 220 {
		t.Errorf("%d products, want about 200", len(a))
	}
	ids, skus, names, cats := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	byTier := map[string][]float64{}
	for _, p := range a {
		if ids[p.ID] || skus[p.SKU] || names[p.Name] {
			t.Errorf("duplicate product %+v", p)
		}
		ids[p.ID], skus[p.SKU], names[p.Name], cats[p.Category] = true, true, true, true
		if p.Price <= 0 || math.Abs(p.Price*100-math.Round(p.Price*100)) > 1e-6 {
			t.Errorf("price %v of %s", p.Price, p.ID)
		}
		byTier[p.PriceTier] = append(byTier[p.PriceTier], p.Price)
	}
	if len(cats) != 10 {
		t.Errorf("%d categories, want 10", len(cats))
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	if len(byTier) != 3 || !(median(byTier["budget"]) < median(byTier["mid"]) && median(byTier["mid"]) < median(byTier["premium"])) {
		t.Errorf("tiers do not order prices: %v", byTier)
	}
}

// dataset generates one shared dataset for the content tests.
var dataset = sync.OnceValues(func() (*memSink, Summary) {
	s := &memSink{}
	sum, err := Generate(Config{Customers: 2000, Seed: 42, Now: testNow}, s)
	if err != nil {
		panic(err)
	}
	return s, sum
})

var messageIDPattern = regexp.MustCompile(`^demo-42-(\d+)-\d+$`)

// rulesNL are the platform's default identity rules, with phone numbers
// without a country code read as Dutch.
func rulesNL(t *testing.T) *identity.Rules {
	t.Helper()
	r := identity.DefaultRules()
	r.DefaultRegion = "NL"
	return r
}

// truthIndex maps each identifier to its person.
func truthIndex(t *testing.T, s *memSink) (map[identity.Identifier]string, map[string]int) {
	t.Helper()
	owner := map[identity.Identifier]string{}
	perPerson := map[string]int{}
	for _, r := range s.recs {
		if r.kind != 't' {
			continue
		}
		id := identity.Identifier{Type: r.typ, Value: r.value}
		if o, ok := owner[id]; ok && o != r.person {
			t.Errorf("identifier %s belongs to %s and %s", id, o, r.person)
		} else if ok {
			t.Errorf("identifier %s recorded twice for %s", id, o)
		}
		owner[id] = r.person
		perPerson[r.person]++
	}
	return owner, perPerson
}

func TestEvents(t *testing.T) {
	s, sum := dataset()
	rules := rulesNL(t)
	owner, _ := truthIndex(t, s)
	seenIDs := map[string]bool{}
	var identifies, withConsent, advertising, orders int
	lo, hi := testNow.Add(-2*365*24*time.Hour-24*time.Hour), testNow
	for i, r := range s.recs {
		if r.kind != 'e' {
			continue
		}
		var ev struct {
			Type        string `json:"type"`
			Event       string `json:"event"`
			Name        string `json:"name"`
			UserID      string `json:"userId"`
			AnonymousID string `json:"anonymousId"`
			MessageID   string `json:"messageId"`
			Timestamp   string `json:"timestamp"`
			Traits      *struct {
				Email string `json:"email"`
			} `json:"traits"`
			Context struct {
				Library struct{ Name string } `json:"library"`
				Device  *struct {
					Type string `json:"type"`
					ID   string `json:"id"`
				} `json:"device"`
				Consent *struct {
					CategoryPreferences map[string]bool `json:"categoryPreferences"`
				} `json:"consent"`
			} `json:"context"`
		}
		if err := json.Unmarshal(r.msg, &ev); err != nil {
			t.Fatalf("event %d is not valid JSON: %v\n%s", i, err, r.msg)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("event %d: %s\n%s", i, fmt.Sprintf(format, args...), r.msg)
		}
		if len(r.msg) < 200 || len(r.msg) > 2500 {
			fail("size %d bytes", len(r.msg))
		}
		m := messageIDPattern.FindStringSubmatch(ev.MessageID)
		if m == nil || seenIDs[ev.MessageID] {
			fail("bad or repeated messageId %q", ev.MessageID)
			continue
		}
		seenIDs[ev.MessageID] = true
		idx, _ := strconv.Atoi(m[1])
		person := "P" + fmt.Sprintf("%07d", idx+1)
		ts, err := time.Parse(time.RFC3339, ev.Timestamp)
		if err != nil || ts.Before(lo) || !ts.Before(hi) || !strings.HasSuffix(ev.Timestamp, "Z") {
			fail("timestamp %q outside the history (%v)", ev.Timestamp, err)
		}
		if ev.AnonymousID == "" && ev.UserID == "" {
			fail("no userId or anonymousId")
		}
		switch ev.Type {
		case "track":
			if ev.Event == "" {
				fail("track without event")
			}
		case "page", "screen":
			if ev.Name == "" {
				fail("%s without name", ev.Type)
			}
		case "identify":
			identifies++
			if ev.UserID == "" || ev.Traits == nil || ev.Traits.Email == "" {
				fail("identify without userId or email")
			}
			if c := ev.Context.Consent; c != nil {
				withConsent++
				if c.CategoryPreferences["Advertising"] {
					advertising++
				}
				if !c.CategoryPreferences["Analytics"] || len(c.CategoryPreferences) != 3 {
					fail("consent %v", c.CategoryPreferences)
				}
			}
		default:
			fail("type %q", ev.Type)
		}
		switch r.name {
		case SourceApp:
			if d := ev.Context.Device; d == nil || (d.Type != "ios" && d.Type != "android") || d.ID == "" {
				fail("app event without device")
			}
			if ev.Type == "page" {
				fail("page from the app")
			}
		case SourceWebshop:
			if ev.Context.Device != nil || ev.Type == "screen" || ev.Context.Library.Name != "analytics.js" {
				fail("webshop event with app fields")
			}
		default:
			fail("source %q", r.name)
		}

		// The collector accepts it, and every identifier the platform
		// extracts belongs to the event's person.
		parsed := collect.Parse(r.msg, ev.Type, collect.Meta{ReceivedAt: testNow}, collect.DefaultLimits())
		if len(parsed.Rejected) > 0 || len(parsed.Messages) != 1 {
			fail("rejected: %+v", parsed.Rejected)
			continue
		}
		msg := parsed.Messages[0]
		ex, err := rules.Extract(msg)
		if err != nil {
			fail("extract: %v", err)
		}
		for _, id := range ex.Identifiers {
			if o := owner[id]; o != person {
				fail("identifier %s belongs to %q in the truth, not %s", id, o, person)
			}
		}
		if commerce.IsOrder(msg) {
			orders++
			o, err := commerce.ParseOrder(msg)
			if err != nil {
				fail("order: %v", err)
				continue
			}
			lines := 0.0
			for _, it := range o.Items {
				if it.ProductID == "" || it.SKU == "" || it.Name == "" || it.Category == "" || it.Quantity < 1 || it.Price <= 0 {
					fail("order line %+v", it)
				}
				lines += it.Price * it.Quantity
			}
			if o.OrderID == "" || o.Currency != "EUR" || len(o.Items) == 0 || math.Abs(o.Revenue-lines) > 0.005 {
				fail("order %+v (lines sum to %.2f)", o, lines)
			}
		}
	}
	if got, want := len(seenIDs), sum.Events[SourceWebshop]+sum.Events[SourceApp]; got != want {
		t.Errorf("%d events, summary says %d", got, want)
	}
	if orders != sum.Orders["web"]+sum.Orders["app"] {
		t.Errorf("%d Order Completed events, summary says %d web and %d app orders", orders, sum.Orders["web"], sum.Orders["app"])
	}
	if identifies == 0 || float64(withConsent) < 0.7*float64(identifies) {
		t.Errorf("%d of %d identifies carry consent", withConsent, identifies)
	}
	if share := float64(advertising) / float64(withConsent); share < 0.6 || share > 0.8 {
		t.Errorf("advertising consent share %.2f, want about 0.7", share)
	}
}

// rowIdentifiers returns the identifiers a row carries, normalised, as an
// importer maps its columns.
func rowIdentifiers(rules *identity.Rules, file string, f []string) []identity.Identifier {
	var ids []identity.Identifier
	add := func(typ, v string) {
		if strings.TrimSpace(v) != "" {
			ids = append(ids, rules.Normalise(typ, v))
		}
	}
	switch file {
	case FileCRMContacts:
		add("crm_id", f[0])
		add("user_id", f[1])
		add("email", f[2])
		add("phone", f[5])
		add("loyalty_card", f[11])
	case FileOrders:
		add("user_id", f[4])
		add("email", f[5])
		add("loyalty_card", f[6])
		if f[6] != "" {
			add("anonymous_id", "card-"+f[6])
		}
	case FileEmailEngagement:
		add("email", f[2])
	}
	return ids
}

func TestRows(t *testing.T) {
	s, sum := dataset()
	rules := rulesNL(t)
	owner, perPerson := truthIndex(t, s)
	used := map[identity.Identifier]bool{}
	liveOrders := map[string]bool{}
	userIDs := map[string]bool{}
	for _, r := range s.recs {
		if r.kind != 'e' {
			continue
		}
		var ev struct {
			UserID     string `json:"userId"`
			Event      string `json:"event"`
			Properties struct {
				OrderID string `json:"order_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(r.msg, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Event == "Order Completed" {
			liveOrders[ev.Properties.OrderID] = true
		}
		if ev.UserID != "" {
			userIDs[ev.UserID] = true
		}
	}

	var (
		closed                       = map[string]bool{}
		current                      string
		currentFirst                 []string
		posRows, posCarded, webRows  int
		anonymousOrders              int
		clicks, unsubscribes, phones int
		counts                       = map[string]int{}
	)
	datePattern := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	for i, r := range s.recs {
		if r.kind != 'r' {
			continue
		}
		f := r.fields
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("row %d of %s: %s\n%q", i, r.name, fmt.Sprintf(format, args...), f)
		}
		h, ok := Headers[r.name]
		if !ok {
			fail("unknown file")
			continue
		}
		if len(f) != len(h) {
			fail("%d fields, header has %d", len(f), len(h))
			continue
		}
		counts[r.name]++
		parseTime := func(v string) time.Time {
			ts, err := time.Parse(time.DateTime, v)
			if err != nil || ts.Before(testNow.AddDate(-2, 0, -1)) || !ts.Before(testNow) {
				fail("time %q (%v)", v, err)
			}
			return ts
		}
		switch r.name {
		case FileCRMContacts:
			parseTime(f[13])
			if !regexp.MustCompile(`^C\d{7}$`).MatchString(f[0]) || f[3] == "" || f[4] == "" || f[6] == "" || f[8] == "" {
				fail("missing contact fields")
			}
			if f[9] != "NL" && f[9] != "BE" && f[9] != "DE" {
				fail("country %q", f[9])
			}
			if f[10] != "" && !datePattern.MatchString(f[10]) {
				fail("birthday %q", f[10])
			} else if f[10] != "" {
				if _, err := time.Parse(time.DateOnly, f[10]); err != nil {
					fail("birthday: %v", err)
				}
			}
			if f[12] != "yes" && f[12] != "no" {
				fail("email_opt_in %q", f[12])
			}
			if f[1] != "" && !userIDs[f[1]] {
				fail("customer_id %q never sends events", f[1])
			}
			if f[5] != "" {
				phones++
				num, err := phonenumbers.Parse(f[5], "NL")
				if err != nil || !phonenumbers.IsValidNumberForRegion(num, "NL") {
					fail("phone %q is not a valid NL number (%v)", f[5], err)
				}
			}
		case FileOrders:
			if f[0] != current {
				if closed[f[0]] {
					fail("rows of order %s are not consecutive", f[0])
				}
				closed[current] = true
				current, currentFirst = f[0], f
				if f[2] == "pos" && f[4] == "" && f[5] == "" && f[6] == "" {
					anonymousOrders++
				}
			} else if !slices.Equal(f[:8], currentFirst[:8]) {
				fail("order-level columns differ between rows of one order")
			}
			parseTime(f[1])
			if p, err := strconv.ParseFloat(f[12], 64); err != nil || p <= 0 || !regexp.MustCompile(`^\d+\.\d\d$`).MatchString(f[12]) {
				fail("price %q", f[12])
			}
			if q, err := strconv.Atoi(f[13]); err != nil || q < 1 {
				fail("quantity %q", f[13])
			}
			if f[7] != "EUR" || f[8] == "" || f[9] == "" || f[10] == "" || f[11] == "" {
				fail("product or currency missing")
			}
			switch f[2] {
			case "pos":
				posRows++
				if !regexp.MustCompile(`^store-\d{3}$`).MatchString(f[3]) {
					fail("store_id %q", f[3])
				}
				if f[6] != "" {
					posCarded++
				}
			case "web":
				webRows++
				if f[3] != "" || f[4] == "" || f[5] == "" || !liveOrders[f[0]] {
					fail("web order not matching a live Order Completed")
				}
			default:
				fail("channel %q", f[2])
			}
		case FileEmailEngagement:
			parseTime(f[1])
			if f[2] == "" || f[4] == "" || f[5] == "" {
				fail("missing fields")
			}
			switch f[3] {
			case "delivered", "open":
			case "click":
				clicks++
				if !strings.HasPrefix(f[6], "https://") {
					fail("click without link_url")
				}
			case "unsubscribe":
				unsubscribes++
			default:
				fail("action %q", f[3])
			}
			if f[3] != "click" && f[6] != "" {
				fail("link_url on %s", f[3])
			}
		}
		// All identifiers of a row belong to one person, per the truth.
		person := ""
		for _, id := range rowIdentifiers(rules, r.name, f) {
			used[id] = true
			o, ok := owner[id]
			switch {
			case !ok:
				fail("identifier %s is not in the truth", id)
			case person != "" && o != person:
				fail("identifiers of %s and %s on one row", person, o)
			}
			person = o
		}
	}
	for file, n := range counts {
		if n != sum.Rows[file] {
			t.Errorf("%d %s rows, summary says %d", n, file, sum.Rows[file])
		}
	}
	if posRows == 0 || webRows == 0 || float64(posRows)/float64(posRows+webRows) < 0.85 {
		t.Errorf("orders file: %d pos and %d web rows; want mostly pos", posRows, webRows)
	}
	if share := float64(posCarded) / float64(posRows); share < 0.6 || share > 0.95 {
		t.Errorf("%.2f of pos rows carry a loyalty card", share)
	}
	if anonymousOrders == 0 || anonymousOrders < sum.AnonymousPOSOrders {
		t.Errorf("%d anonymous pos orders, summary says %d", anonymousOrders, sum.AnonymousPOSOrders)
	}
	if clicks == 0 || unsubscribes == 0 || phones == 0 {
		t.Errorf("%d clicks, %d unsubscribes, %d phones in the CRM", clicks, unsubscribes, phones)
	}

	// Every truth identifier appears somewhere: in a row, or (checked
	// here through the events' extraction) in an event.
	for _, r := range s.recs {
		if r.kind != 'e' {
			continue
		}
		var typ struct{ Type string }
		_ = json.Unmarshal(r.msg, &typ)
		parsed := collect.Parse(r.msg, typ.Type, collect.Meta{ReceivedAt: testNow}, collect.DefaultLimits())
		for _, m := range parsed.Messages {
			ex, _ := rules.Extract(m)
			for _, id := range ex.Identifiers {
				used[id] = true
			}
		}
	}
	for id, person := range owner {
		if !used[id] {
			t.Errorf("truth identifier %s of %s appears in no record", id, person)
		}
	}
	if len(perPerson) != sum.People {
		t.Errorf("%d people in the truth, summary says %d", len(perPerson), sum.People)
	}
	types := map[string]bool{"user_id": true, "anonymous_id": true, "email": true, "phone": true, "loyalty_card": true,
		"crm_id": true, "ios.id": true, "android.id": true, "ios.idfa": true, "android.idfa": true}
	for id := range owner {
		if !types[id.Type] {
			t.Errorf("unexpected identifier type %q", id.Type)
		}
		if id.Type == "phone" && !regexp.MustCompile(`^\+316\d{8}$`).MatchString(id.Value) {
			t.Errorf("phone %q is not E.164", id.Value)
		}
		if id.Type == "email" && id.Value != strings.ToLower(strings.TrimSpace(id.Value)) {
			t.Errorf("email %q is not normalised", id.Value)
		}
	}
	// Within the platform's default limits: one user id, at most five
	// values of any other type per person.
	perType := map[[2]string]int{}
	for id, person := range owner {
		perType[[2]string{person, id.Type}]++
	}
	for k, n := range perType {
		if n > 5 || (k[1] == "user_id" && n > 1) {
			t.Errorf("%s has %d identifiers of type %s", k[0], n, k[1])
		}
	}
	if sum.Identifiers != len(owner) {
		t.Errorf("%d truth identifiers, summary says %d", len(owner), sum.Identifiers)
	}
}

// TestRecordOrder checks that each person's records come in time order.
func TestRecordOrder(t *testing.T) {
	s, _ := dataset()
	person, last := "", time.Time{}
	for i, r := range s.recs {
		var ts time.Time
		switch {
		case r.kind == 't':
			person = ""
			continue
		case r.kind == 'e':
			var ev struct{ Timestamp time.Time }
			if err := json.Unmarshal(r.msg, &ev); err != nil {
				t.Fatal(err)
			}
			ts = ev.Timestamp
		case r.name == FileOrders && r.fields[6] == "" && r.fields[5] == "" && r.fields[4] == "":
			continue // a walk-in sale between people
		default:
			col := map[string]int{FileCRMContacts: 13, FileOrders: 1, FileEmailEngagement: 1}[r.name]
			ts, _ = time.Parse(time.DateTime, r.fields[col])
		}
		if person == "x" && ts.Before(last.Truncate(time.Second)) {
			t.Fatalf("record %d at %v comes after one at %v", i, ts, last)
		}
		person, last = "x", ts
	}
}

func TestDistribution(t *testing.T) {
	s := &basketSink{baskets: map[string]map[string]bool{}}
	sum, err := Generate(Config{Seed: 3, Now: testNow}, s)
	if err != nil {
		t.Fatal(err)
	}
	if sum.People != DefaultCustomers {
		t.Fatalf("%d people, want the default %d", sum.People, DefaultCustomers)
	}
	events := float64(sum.Events[SourceWebshop]+sum.Events[SourceApp]) / float64(sum.People)
	rows := float64(sum.Rows[FileCRMContacts]+sum.Rows[FileOrders]+sum.Rows[FileEmailEngagement]) / float64(sum.People)
	share := func(n, of int) float64 { return float64(n) / float64(of) }
	for _, c := range []struct {
		name   string
		got    float64
		lo, hi float64
	}{
		{"live events per person", events, 20, 40},
		{"CSV rows per person", rows, 3, 15},
		{"mean event bytes", float64(sum.EventBytes) / float64(sum.Events[SourceWebshop]+sum.Events[SourceApp]), 300, 900},
		{"repeat buyers among buyers", share(sum.RepeatBuyers, sum.Buyers), 0.35, 0.75},
		{"lapsed among buyers", share(sum.Lapsed, sum.Buyers), 0.05, 0.5},
		{"buyers", share(sum.Buyers, sum.People), 0.7, 0.95},
		{"people with a duplicate CRM contact", share(sum.DuplicateContacts, sum.People), 0.01, 0.03},
		{"anonymous visitors", share(sum.AnonymousVisitors, sum.People), 0.05, 0.15},
		{"web accounts", share(sum.WebAccounts, sum.People), 0.5, 0.8},
		{"app users", share(sum.AppUsers, sum.People), 0.1, 0.35},
		{"loyalty members", share(sum.LoyaltyMembers, sum.People), 0.3, 0.6},
		{"e-mail subscribers", share(sum.EmailSubscribers, sum.People), 0.2, 0.6},
		{"exported web orders", share(sum.ExportedWebOrders, sum.Orders["web"]), 0.03, 0.07},
		{"anonymous pos orders among pos orders", share(sum.AnonymousPOSOrders, sum.Orders["pos"]+sum.AnonymousPOSOrders), 0.1, 0.35},
	} {
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("%s: %.3f, want between %g and %g", c.name, c.got, c.lo, c.hi)
		}
	}
	if sum.Identifiers < 3*sum.People {
		t.Errorf("%d identifiers for %d people", sum.Identifiers, sum.People)
	}

	// Cross-sell: an espresso machine sells with beans and descaler, a
	// chef's knife with a sharpener, far more often than chance, so basket
	// analysis finds the rules; coffee machines lift machine care as a
	// category too.
	for _, r := range []struct{ from, to string }{
		{"cat:Coffee Machines", "cat:Machine Care"},
		{"Espresso Machine", "Espresso Beans 1 kg"},
		{"Espresso Machine", "Descaler"},
		{"Capsule Machine", "Coffee Capsules (20)"},
		{"Chef's Knife", "Knife Sharpener"},
		{"Frying Pan", "Spatula"},
	} {
		var from, to, both int
		for _, items := range s.baskets {
			if items[r.from] {
				from++
				if items[r.to] {
					both++
				}
			}
			if items[r.to] {
				to++
			}
		}
		lift := (float64(both) / float64(from)) / (float64(to) / float64(len(s.baskets)))
		if from < 30 || lift < 2 {
			t.Errorf("%s → %s: %d baskets, lift %.2f; want a clear rule", r.from, r.to, from, lift)
		}
	}
}

// basketSink collects the categories and product kinds of each order in
// the orders file.
type basketSink struct {
	nullSink
	baskets map[string]map[string]bool
}

func (s *basketSink) Row(file string, f []string) error {
	if file != FileOrders {
		return nil
	}
	b := s.baskets[f[0]]
	if b == nil {
		b = map[string]bool{}
		s.baskets[f[0]] = b
	}
	b["cat:"+f[11]] = true
	for _, k := range kinds {
		if strings.HasSuffix(f[10], " "+k.name) {
			b[k.name] = true
		}
	}
	return nil
}

// failSink fails after n events.
type failSink struct {
	nullSink
	n int
}

var errFull = errors.New("sink full")

func (s *failSink) Event(string, []byte) error {
	if s.n--; s.n < 0 {
		return errFull
	}
	return nil
}

func TestGenerateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		sink Sink
		want error
	}{
		{"negative", Config{Customers: -1}, nullSink{}, nil},
		{"too many", Config{Customers: MaxCustomers + 1}, nullSink{}, nil},
		{"nil sink", Config{Customers: 10}, nil, nil},
		{"sink error", Config{Customers: 100}, &failSink{n: 50}, errFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(tc.cfg, tc.sink)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestScore(t *testing.T) {
	// Person a has three records, b two, c one.
	assign := func(clusters ...string) []Assignment {
		people := []string{"a", "a", "a", "b", "b", "c"}
		out := make([]Assignment, len(people))
		for i := range people {
			out[i] = Assignment{Person: people[i], Cluster: clusters[i]}
		}
		return out
	}
	for _, tc := range []struct {
		name                  string
		in                    []Assignment
		precision, recall, f1 float64
		clusters              int
	}{
		// 4 true pairs: 3 within a, 1 within b.
		{"perfect", assign("1", "1", "1", "2", "2", "3"), 1, 1, 1, 3},
		// a split into {a,a} and {a}: 1+1 of 4 true pairs found, none wrong.
		{"one split", assign("1", "1", "4", "2", "2", "3"), 1, 0.5, 2.0 / 3, 4},
		// a and b merged: 10 predicted pairs, 4 of them true.
		{"one wrong merge", assign("1", "1", "1", "1", "1", "3"), 0.4, 1, 2 * 0.4 / 1.4, 2},
		// Every record alone: no pairs predicted.
		{"singletons", assign("1", "2", "3", "4", "5", "6"), 1, 0, 0, 6},
		// Everything in one cluster: 15 pairs, 4 true.
		{"one cluster", assign("1", "1", "1", "1", "1", "1"), 4.0 / 15, 1, 2 * (4.0 / 15) / (1 + 4.0/15), 1},
		{"empty", nil, 1, 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Score(tc.in)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
			if !near(s.Precision, tc.precision) || !near(s.Recall, tc.recall) || !near(s.F1, tc.f1) {
				t.Errorf("got P=%v R=%v F1=%v, want P=%v R=%v F1=%v", s.Precision, s.Recall, s.F1, tc.precision, tc.recall, tc.f1)
			}
			if s.Records != len(tc.in) || s.Clusters != tc.clusters {
				t.Errorf("records %d clusters %d", s.Records, s.Clusters)
			}
		})
	}
}

func TestScoreAgainstTruth(t *testing.T) {
	// Clustering by identifier alone (every record its own profile) has
	// perfect precision; one cluster per true person is perfect.
	s, sum := dataset()
	var alone, exact []Assignment
	for _, r := range s.recs {
		if r.kind == 't' {
			alone = append(alone, Assignment{Person: r.person, Cluster: r.typ + ":" + r.value})
			exact = append(exact, Assignment{Person: r.person, Cluster: "profile-" + r.person})
		}
	}
	if sc := Score(alone); sc.Precision != 1 || sc.Recall != 0 || sc.People != sum.People {
		t.Errorf("singletons: %+v", sc)
	}
	if sc := Score(exact); sc.F1 != 1 || sc.Clusters != sum.People {
		t.Errorf("exact: %+v", sc)
	}
}

func TestTimeFormat(t *testing.T) {
	for _, ms := range []int64{0, -1, 1, 951782400123, 1709164800000, -2208988800000, 4102444799999, -86400001} {
		tm := time.UnixMilli(ms).UTC()
		if got, want := string(appendRFC3339(nil, ms)), tm.Format("2006-01-02T15:04:05.000Z07:00"); got != want {
			t.Errorf("appendRFC3339(%d) = %s, want %s", ms, got, want)
		}
		if got, want := string(appendCSVTime(nil, ms)), tm.Format(time.DateTime); got != want {
			t.Errorf("appendCSVTime(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestPermute(t *testing.T) {
	for _, n := range []uint64{1, 7, 1000, 10000, 65537} {
		seen := make([]bool, n)
		for i := range n {
			v := permute(i, n, 12345)
			if v >= n || seen[v] {
				t.Fatalf("permute over %d: %d maps to %d twice or out of range", n, i, v)
			}
			seen[v] = true
		}
	}
}

func TestPhoneFormats(t *testing.T) {
	rules := rulesNL(t)
	for f := range phoneFormats {
		v := formatPhone("612345678", f)
		num, err := phonenumbers.Parse(v, "NL")
		if err != nil || !phonenumbers.IsValidNumberForRegion(num, "NL") {
			t.Errorf("%q is not a valid NL number: %v", v, err)
		}
		if got := rules.Normalise("phone", v); got.Value != "+31612345678" {
			t.Errorf("%q normalises to %q", v, got.Value)
		}
	}
	for i := range uint64(200) {
		d := mobile(i, 99)
		num, err := phonenumbers.Parse("0"+d, "NL")
		if err != nil || phonenumbers.GetNumberType(num) != phonenumbers.MOBILE {
			t.Errorf("0%s is not a Dutch mobile number", d)
		}
	}
	// Identifier types are the platform's.
	if kith.IdentUserID != "user_id" || kith.IdentAnonymousID != "anonymous_id" || kith.IdentEmail != "email" || kith.IdentPhone != "phone" {
		t.Error("identifier type names changed")
	}
}

func BenchmarkGenerate(b *testing.B) {
	var sum Summary
	for b.Loop() {
		var err error
		if sum, err = Generate(Config{Customers: 1000, Seed: 1, Now: testNow}, nullSink{}); err != nil {
			b.Fatal(err)
		}
	}
	events := sum.Events[SourceWebshop] + sum.Events[SourceApp]
	b.ReportMetric(float64(events), "events/op")
	b.ReportMetric(float64(sum.EventBytes)/float64(events), "B/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/customer")
}
