package basket

import (
	"encoding/csv"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The France subset of UCI Online Retail; see testdata/README.md for its
// source, licence and the preparation rules applied by loadFrance.
const franceCSV = "testdata/online_retail_france.csv"

// franceInvoice is one non-cancelled invoice of the France file.
type franceInvoice struct {
	no       string
	customer string // "" when the rows carry no CustomerID
	date     time.Time
	items    []int32 // sorted, distinct; POSTAGE dropped
}

// franceData is the France file prepared as in the published analysis.
type franceData struct {
	items    Interner
	invoices []franceInvoice // in InvoiceNo order
}

// baskets returns one basket per invoice, including invoices left empty.
func (d *franceData) baskets() [][]int32 {
	out := make([][]int32, len(d.invoices))
	for i, inv := range d.invoices {
		out[i] = inv.items
	}
	return out
}

// loadFrance reads the fixture as the published notebook prepares it:
// strip Description, drop every invoice whose number contains "C", put an
// item in a basket when its summed Quantity in the invoice is at least 1,
// and drop the POSTAGE item. Every description of a kept invoice is an
// item, whether or not it ends up in a basket.
func loadFrance(t testing.TB) *franceData {
	t.Helper()
	f, err := os.Open(franceCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
	if !slices.Equal(rows[0], want) {
		t.Fatalf("header = %q, want %q", rows[0], want)
	}
	d := &franceData{}
	byNo := map[string]int{}
	qty := map[[2]string]int{}
	var order [][2]string
	for _, row := range rows[1:] {
		no := row[1]
		if no == "" || strings.Contains(no, "C") {
			continue
		}
		desc := strings.TrimSpace(row[3])
		q, err := strconv.Atoi(row[4])
		if err != nil {
			t.Fatal(err)
		}
		date, err := time.Parse("1/2/2006 15:04", row[5])
		if err != nil {
			t.Fatal(err)
		}
		i, ok := byNo[no]
		if !ok {
			i = len(d.invoices)
			byNo[no] = i
			d.invoices = append(d.invoices, franceInvoice{no: no, date: date})
		}
		if d.invoices[i].customer == "" {
			d.invoices[i].customer = row[7]
		}
		if desc == "POSTAGE" {
			continue
		}
		d.items.ID(desc)
		key := [2]string{no, desc}
		if _, ok := qty[key]; !ok {
			order = append(order, key)
		}
		qty[key] += q
	}
	for _, key := range order {
		if qty[key] >= 1 {
			inv := &d.invoices[byNo[key[0]]]
			id, _ := d.items.Lookup(key[1])
			inv.items = append(inv.items, id)
		}
	}
	for i := range d.invoices {
		slices.Sort(d.invoices[i].items)
		d.invoices[i].items = slices.Compact(d.invoices[i].items)
	}
	slices.SortFunc(d.invoices, func(a, b franceInvoice) int { return strings.Compare(a.no, b.no) })
	return d
}

func TestFranceShape(t *testing.T) {
	d := loadFrance(t)
	if got := len(d.invoices); got != 392 {
		t.Errorf("baskets = %d, want 392", got)
	}
	if got := d.items.Len(); got != 1562 {
		t.Errorf("items = %d, want 1562", got)
	}
}

// TestFrancePublishedRules reproduces Moffitt's published rules on this
// file: 26 rules at min support 0.07 and lift >= 1, and the 8 rows with
// lift >= 6 and confidence >= 0.8 to the printed 6 decimals.
func TestFrancePublishedRules(t *testing.T) {
	d := loadFrance(t)
	rules, err := Mine(d.baskets(), Options{MinSupport: 0.07, MinLift: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 26 {
		t.Errorf("rules = %d, want 26", len(rules))
	}
	for _, r := range rules {
		t.Logf("%v -> %v  supp %.6f ante %.6f conf %.6f lift %.6f",
			d.items.Names(r.Antecedent), d.items.Names(r.Consequent), r.Support, r.AntecedentSupport, r.Confidence, r.Lift)
	}

	const (
		plates  = "SET/6 RED SPOTTY PAPER PLATES"
		cups    = "SET/6 RED SPOTTY PAPER CUPS"
		napkins = "SET/20 RED RETROSPOT PAPER NAPKINS"
		green   = "ALARM CLOCK BAKELIKE GREEN"
		red     = "ALARM CLOCK BAKELIKE RED"
	)
	published := []struct {
		ante, cons     []string
		anteSupp, conf float64
		lift           float64
		jointSupp      float64 // printed in the README's note for PLATES↔CUPS only
		checkJointSupp bool
	}{
		{ante: []string{plates}, cons: []string{cups}, anteSupp: 0.127551, conf: 0.960000, lift: 6.968889, jointSupp: 0.122449, checkJointSupp: true},
		{ante: []string{cups}, cons: []string{plates}, anteSupp: 0.137755, conf: 0.888889, lift: 6.968889, jointSupp: 0.122449, checkJointSupp: true},
		{ante: []string{cups, napkins}, cons: []string{plates}, anteSupp: 0.102041, conf: 0.975000, lift: 7.644000},
		{ante: []string{plates, cups}, cons: []string{napkins}, anteSupp: 0.122449, conf: 0.812500, lift: 6.125000},
		{ante: []string{plates, napkins}, cons: []string{cups}, anteSupp: 0.102041, conf: 0.975000, lift: 7.077778},
		{ante: []string{green}, cons: []string{red}, anteSupp: 0.096939, conf: 0.815789, lift: 8.642959},
		{ante: []string{red}, cons: []string{green}, anteSupp: 0.094388, conf: 0.837838, lift: 8.642959},
		{ante: []string{plates}, cons: []string{napkins}, anteSupp: 0.127551, conf: 0.800000, lift: 6.030769},
	}
	var strong []Rule
	for _, r := range rules {
		if r.Lift >= 6 && r.Confidence >= 0.8 {
			strong = append(strong, r)
		}
	}
	if len(strong) != len(published) {
		t.Errorf("rules with lift >= 6 and confidence >= 0.8 = %d, want %d", len(strong), len(published))
	}
	ids := func(names []string) []int32 {
		out := make([]int32, len(names))
		for i, n := range names {
			id, ok := d.items.Lookup(n)
			if !ok {
				t.Fatalf("item %q not in the data", n)
			}
			out[i] = id
		}
		slices.Sort(out)
		return out
	}
	const tol = 5e-7 + 1e-12 // half a unit in the 6th printed decimal
	for _, p := range published {
		ante, cons := ids(p.ante), ids(p.cons)
		i := slices.IndexFunc(strong, func(r Rule) bool {
			return slices.Equal(r.Antecedent, ante) && slices.Equal(r.Consequent, cons)
		})
		if i < 0 {
			t.Errorf("rule %v -> %v missing", p.ante, p.cons)
			continue
		}
		r := strong[i]
		check := func(what string, got, want float64) {
			if math.Abs(got-want) > tol {
				t.Errorf("%v -> %v: %s = %.9f, want %.6f", p.ante, p.cons, what, got, want)
			}
		}
		check("antecedent support", r.AntecedentSupport, p.anteSupp)
		check("confidence", r.Confidence, p.conf)
		check("lift", r.Lift, p.lift)
		if p.checkJointSupp {
			check("support", r.Support, p.jointSupp)
		}
	}
}

// franceCustomers groups the non-empty baskets of invoices with a
// CustomerID per customer, in time order (InvoiceDate, then InvoiceNo).
// Invoices without a CustomerID cannot be attributed and are left out.
func franceCustomers(d *franceData) [][][]int32 {
	invs := slices.Clone(d.invoices)
	slices.SortStableFunc(invs, func(a, b franceInvoice) int { return a.date.Compare(b.date) })
	index := map[string]int{}
	var out [][][]int32
	for _, inv := range invs {
		if inv.customer == "" || len(inv.items) == 0 {
			continue
		}
		i, ok := index[inv.customer]
		if !ok {
			i = len(out)
			index[inv.customer] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], inv.items)
	}
	return out
}

// TestFranceCrossSell measures hit rate@10 of NextBest against the
// most-popular baseline on each customer's last basket held out.
func TestFranceCrossSell(t *testing.T) {
	d := loadFrance(t)
	// Count customers with two or more non-empty baskets straight from the
	// invoices, independently of franceCustomers and Evaluate.
	perCustomer := map[string]int{}
	for _, inv := range d.invoices {
		if inv.customer != "" && len(inv.items) > 0 {
			perCustomer[inv.customer]++
		}
	}
	repeat := 0
	for _, n := range perCustomer {
		if n >= 2 {
			repeat++
		}
	}

	e, err := Evaluate(franceCustomers(d), 10, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("customers evaluated %d; hit rate@10 NextBest %.4f (%d), most-popular %.4f (%d)",
		e.Customers, e.HitRate, e.Hits, e.BaselineHitRate, e.BaselineHits)
	if e.Customers != repeat {
		t.Errorf("evaluated %d customers, want %d with two or more baskets", e.Customers, repeat)
	}
	for _, rate := range []float64{e.HitRate, e.BaselineHitRate} {
		if !(rate > 0 && rate < 1) {
			t.Errorf("hit rate %v outside (0, 1)", rate)
		}
	}
	if e.N != 10 || e.HitRate != float64(e.Hits)/float64(e.Customers) ||
		e.BaselineHitRate != float64(e.BaselineHits)/float64(e.Customers) {
		t.Errorf("inconsistent evaluation %+v", e)
	}
}

// TestFranceNextBest checks on real data that every customer gets n items,
// none of them already bought, in non-increasing score order.
func TestFranceNextBest(t *testing.T) {
	d := loadFrance(t)
	customers := franceCustomers(d)
	r, err := NewRecommender(customers, RecommenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for c, baskets := range customers {
		var bought []int32
		for _, b := range baskets {
			bought = append(bought, b...)
		}
		recs := r.NextBest(bought, 10)
		if len(recs) != 10 {
			t.Fatalf("customer %d: %d recommendations, want 10", c, len(recs))
		}
		seen := map[int32]bool{}
		for i, rec := range recs {
			if slices.Contains(bought, rec.Item) || seen[rec.Item] {
				t.Fatalf("customer %d: item %d bought or repeated", c, rec.Item)
			}
			seen[rec.Item] = true
			if i > 0 && rec.Score > recs[i-1].Score {
				t.Fatalf("customer %d: scores not sorted: %v", c, recs)
			}
		}
	}
}
