package insights

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// The CDNOW sample lives with the models' tests; its README gives source
// and licence.
const cdnowSample = "../btyd/testdata/CDNOW_sample.txt"

// cdnowFormat reads CDNOW_sample.txt as it comes: no header, whitespace,
// sample customer id in column 2, YYYYMMDD in 3, dollars in 5.
var cdnowFormat = FileFormat{CustomerCol: "2", DateCol: "3", AmountCol: "5", DateFormat: "%Y%m%d", NoHeader: true}

func readCDNOW(t *testing.T) []Row {
	t.Helper()
	f, err := os.Open(cdnowSample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadOrders(f, cdnowFormat)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6919 {
		t.Fatalf("read %d rows, want 6919", len(rows))
	}
	return rows
}

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// within fails unless |got − want| ≤ tol.
func within(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.6g, want %v ± %v", name, got, want, tol)
	}
}

func TestFitRowsCDNOW(t *testing.T) {
	rows := readCDNOW(t)
	tests := []struct {
		model string
		want  map[string]float64 // published, with the tolerance of their printed precision
		tol   map[string]float64
		ll    float64
	}{
		{ModelBGNBD, map[string]float64{"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, nil, -9582.4},
		{ModelGammaGamma, map[string]float64{"p": 6.25, "q": 3.74, "gamma": 15.44}, map[string]float64{"p": 0.005, "q": 0.005, "gamma": 0.005}, math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			res, err := FitRows(rows, tc.model, day("1997-09-30"), 7)
			if err != nil {
				t.Fatal(err)
			}
			obj := res.Object()
			for k, w := range tc.want {
				tol := 0.0005
				if v, ok := tc.tol[k]; ok {
					tol = v
				}
				got, ok := obj[k].(float64)
				if !ok {
					t.Fatalf("no parameter %q in %v", k, obj)
				}
				within(t, k, got, w, tol)
			}
			if !math.IsNaN(tc.ll) {
				within(t, "log_likelihood", res.LogLikelihood, tc.ll, 0.05)
			}
			if !res.Converged {
				t.Errorf("not converged: %+v", res.FitInfo)
			}
		})
	}
	if _, err := FitRows(rows, "nope", day("1997-09-30"), 7); err == nil {
		t.Error("unknown model: want an error")
	}
}

func TestValidateCDNOW(t *testing.T) {
	rows := readCDNOW(t)
	cfg := DefaultConfig()
	rep, err := Validate(t.Context(), FileSource(rows), cfg, day("1997-09-30"), day("1998-06-30"))
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Validation
	if v.Customers != 2357 || v.ActualHoldout != 1882 {
		t.Fatalf("cohort %d customers, %d holdout repeat purchases; want 2357 and 1882", v.Customers, v.ActualHoldout)
	}
	// The paper's tracking figure: week 78 cumulative 4,339 actual; the
	// BG/NBD forecast is about 4% low.
	last := v.Tracking[len(v.Tracking)-1]
	if last.Week != 78 || last.Actual != 4339 {
		t.Errorf("last tracking point = %+v, want week 78 with 4339 actual", last)
	}
	if rel := (last.Forecast - 4339) / 4339; rel > 0 || rel < -0.05 {
		t.Errorf("cumulative forecast at week 78 = %.1f (%.1f%%), want within 5%% below 4339", last.Forecast, rel*100)
	}
	// Conditional expectations: a well-known under-forecast of about 12%
	// on this sample, and a strong per-customer correlation.
	if v.ErrorPercent > 0 || v.ErrorPercent < -15 {
		t.Errorf("holdout forecast %.1f vs 1882 (%.1f%%), want within 15%% below", v.ForecastHoldout, v.ErrorPercent)
	}
	if v.Correlation < 0.5 || v.Correlation > 1 {
		t.Errorf("per-customer correlation %.3f, want a strong positive one", v.Correlation)
	}
	// By calibration frequency: customers who bought more bought more
	// later, and the model follows them.
	if len(v.ByFrequency) != 8 || v.ByFrequency[0].Customers != 1411 || v.ByFrequency[7].Frequency != "7+" {
		t.Fatalf("byFrequency = %+v", v.ByFrequency)
	}
	total := 0
	for i, r := range v.ByFrequency {
		total += r.Customers
		if i > 0 && r.Forecast <= v.ByFrequency[i-1].Forecast {
			t.Errorf("forecast not increasing with frequency at %s: %+v", r.Frequency, v.ByFrequency)
		}
	}
	if total != 2357 {
		t.Errorf("byFrequency covers %d customers, want 2357", total)
	}
	t.Logf("holdout: forecast %.1f vs actual %d (%.1f%%), r=%.3f, MAE %.3f; week 78: %.1f vs 4339", v.ForecastHoldout, v.ActualHoldout, v.ErrorPercent, v.Correlation, v.MAE, last.Forecast)

	for _, name := range []string{"tracking.svg", "conditional_expectation.svg"} {
		svg := v.Charts[name]
		if !strings.HasPrefix(strings.TrimSpace(svg), "<svg") && !strings.HasPrefix(strings.TrimSpace(svg), "<?xml") {
			t.Errorf("%s is not an SVG document: %.60q", name, svg)
			continue
		}
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s does not parse as XML: %v", name, err)
				break
			}
		}
	}
}

func TestRFMRowsCDNOW(t *testing.T) {
	rows := readCDNOW(t)
	segs, scores, err := RFMRows(rows, day("1998-07-01"), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != 2357 {
		t.Fatalf("%d customers scored, want 2357", len(scores))
	}
	var customers, orders int
	var revenue, want float64
	for _, s := range segs {
		customers += s.Customers
		orders += s.Orders
		revenue += s.Revenue
	}
	for _, r := range rows {
		want += r.Amount
	}
	if customers != 2357 || orders != 6919 || math.Abs(revenue-want) > 1e-6 {
		t.Errorf("segments total %d customers, %d orders, %.2f revenue; want 2357, 6919, %.2f", customers, orders, revenue, want)
	}
	// Every customer is in the segment its scores select, and a customer
	// who bought once long ago scores lowest on recency and frequency.
	for _, s := range scores {
		if s.Segment == "" || s.Recency < 1 || s.Recency > 5 || s.Frequency < 1 || s.Frequency > 5 || s.Monetary < 1 || s.Monetary > 5 {
			t.Fatalf("bad score %+v", s)
		}
	}
	if segs["Champions"].Customers == 0 || segs["Lost"].Customers == 0 {
		t.Errorf("segments %v: want Champions and Lost customers in a 78-week cohort", segs)
	}
}

func TestReadOrdersErrors(t *testing.T) {
	tests := []struct {
		name, in string
		f        FileFormat
		want     string
	}{
		{"missing column", "id,date\n1,2020-01-01\n", FileFormat{CustomerCol: "id", DateCol: "when"}, `no column "when"`},
		{"bad date", "id,date\n1,2020-01-01\n2,yesterday\n", FileFormat{CustomerCol: "id", DateCol: "date"}, "line 3: date \"yesterday\""},
		{"bad amount", "id,date,amt\n1,2020-01-01,12x\n", FileFormat{CustomerCol: "id", DateCol: "date", AmountCol: "amt"}, `line 2: amount "12x"`},
		{"short row", "1 20200101\n", FileFormat{CustomerCol: "1", DateCol: "2", AmountCol: "3", NoHeader: true}, "line 1: no amount column"},
		{"column not a number", "1 20200101\n", FileFormat{CustomerCol: "id", DateCol: "2", NoHeader: true}, "columns are numbers"},
		{"empty customer", "id,date\n,2020-01-01\n", FileFormat{CustomerCol: "id", DateCol: "date"}, "line 2: empty customer"},
		{"format mismatch", "id,date\n1,2020-01-01\n", FileFormat{CustomerCol: "id", DateCol: "date", DateFormat: "%d/%m/%Y"}, `does not match the format "02/01/2006"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadOrders(strings.NewReader(tc.in), tc.f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	rows, err := ReadOrders(strings.NewReader("\ufeffid,date,amt\nA,2020-01-02 10:00:00,3.5\nB,1/3/2020 8:45,4\n"), FileFormat{CustomerCol: "id", DateCol: "date", AmountCol: "amt"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Customer != "A" || rows[1].At != time.Date(2020, 1, 3, 8, 45, 0, 0, time.UTC) || rows[1].Amount != 4 || rows[1].Line != 3 {
		t.Errorf("rows = %+v", rows)
	}
}
