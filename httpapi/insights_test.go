package httpapi_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/insights"
)

// sendOrders posts a seeded order history through the Segment API: 60
// customers who buy every few weeks from a small catalogue, some of whom
// stop.
func sendOrders(t *testing.T, s *stack, start time.Time) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 5))
	products := []struct {
		id, cat string
		price   float64
	}{{"mug", "Kitchen", 5}, {"teapot", "Kitchen", 25}, {"pen", "Office", 2}, {"notebook", "Office", 6}}
	var batch []string
	n := 0
	for c := range 60 {
		at := start.AddDate(0, 0, rng.IntN(60))
		for k := 0; at.Before(start.AddDate(0, 0, 360)); k++ {
			p := products[rng.IntN(len(products))]
			q := products[(rng.IntN(2)+2*(c%2))%len(products)]
			batch = append(batch, fmt.Sprintf(`{"type":"track","userId":"cust-%d","event":"Order Completed","messageId":"o-%d-%d","timestamp":%q,
				"properties":{"order_id":"o-%d-%d","revenue":%g,"currency":"EUR","products":[
				{"product_id":%q,"category":%q,"price":%g,"quantity":1},{"product_id":%q,"category":%q,"price":%g,"quantity":1}]}}`,
				c, c, k, at.Format(time.RFC3339), c, k, p.price+q.price, p.id, p.cat, p.price, q.id, q.cat, q.price))
			n++
			if rng.Float64() < 0.12 {
				break
			}
			at = at.Add(time.Duration(24*(3+rng.ExpFloat64()*25)) * time.Hour)
		}
	}
	for len(batch) > 0 {
		k := min(len(batch), 50)
		code, out := s.send("batch", `{"batch":[`+strings.Join(batch[:k], ",")+`]}`)
		if code != 200 {
			t.Fatalf("batch: %d %v", code, out)
		}
		batch = batch[k:]
	}
	s.waitProcessed()
	return n
}

func TestInsightsAPI(t *testing.T) {
	cfg := insights.DefaultConfig()
	now := func() time.Time { return time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC) }
	s := startStackWith(t, t.TempDir(), now, stackOptions{insights: &cfg})
	s.createSource("shop")
	orders := sendOrders(t, s, time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))

	code, run := s.admin("POST", "/v1/insights/runs", map[string]any{"wait": true, "analysisDate": "2025-12-31"})
	if code != 200 || run["status"] != "finished" {
		t.Fatalf("run: %d %v", code, run)
	}
	id := run["id"].(string)
	rep := run["report"].(map[string]any)
	if rep["ordersUsed"].(float64) != float64(orders) || rep["customers"].(float64) != 60 || rep["profilesWritten"].(float64) != 60 {
		t.Errorf("report counts: orders %v customers %v written %v; want %d, 60, 60", rep["ordersUsed"], rep["customers"], rep["profilesWritten"], orders)
	}
	bg := rep["models"].(map[string]any)["bgnbd"].(map[string]any)
	if bg["params"] == nil {
		t.Errorf("BG/NBD not fitted: %v", bg)
	}

	// The customer's traits now carry the predictions, with provenance.
	code, tr := s.admin("GET", "/v1/profiles/user_id:cust-3/traits?verbose=true", nil)
	if code != 200 {
		t.Fatalf("traits: %d %v", code, tr)
	}
	traits := tr["traits"].(map[string]any)
	for _, k := range []string{"p_alive", "churn_risk", "expected_purchases_90d", "clv_365d", "rfm_segment", "next_best_products", "upsell_products"} {
		v, ok := traits[k].(map[string]any)
		if !ok || v["provenance"] != "predicted" || v["runId"] != id {
			t.Errorf("trait %s = %v, want predicted by %s", k, traits[k], id)
		}
	}

	code, list := s.admin("GET", "/v1/insights/runs", nil)
	if code != 200 || len(list["data"].([]any)) != 1 {
		t.Fatalf("runs: %d %v", code, list)
	}
	code, got := s.admin("GET", "/v1/insights/runs/"+id, nil)
	if code != 200 || got["report"] == nil {
		t.Errorf("run %s: %d %v", id, code, got)
	}

	// A validation on the last 90 days, with its charts.
	code, val := s.admin("POST", "/v1/insights/validations", map[string]any{"holdoutDays": 90, "analysisDate": "2025-12-31"})
	if code != 200 || val["status"] != "finished" || val["trigger"] != "validate" {
		t.Fatalf("validation: %d %v", code, val)
	}
	v := val["report"].(map[string]any)["validation"].(map[string]any)
	if v["holdoutDays"].(float64) != 90 || v["actualHoldout"].(float64) <= 0 {
		t.Errorf("validation = %v", v)
	}
	for _, name := range []string{"tracking.svg", "conditional_expectation.svg"} {
		req, _ := http.NewRequest("GET", s.srv.URL+"/v1/insights/runs/"+val["id"].(string)+"/charts/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(string(body), "<svg") {
			t.Errorf("chart %s: %d %s %.80q", name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if code, _ := s.admin("GET", "/v1/insights/runs/"+id+"/charts/tracking.svg", nil); code != 404 {
		t.Errorf("chart of a run without validation: %d, want 404", code)
	}

	// Custom RFM segments.
	code, run = s.admin("POST", "/v1/insights/runs", map[string]any{"wait": true, "analysisDate": "2025-12-31",
		"rfmRules": []map[string]any{{"name": "Everyone", "r": []int{1, 5}, "f": []int{1, 5}, "m": []int{1, 5}}}})
	if code != 200 || run["status"] != "finished" {
		t.Fatalf("run with custom segments: %d %v", code, run)
	}
	_, tr = s.admin("GET", "/v1/profiles/user_id:cust-3/traits", nil)
	if seg := tr["traits"].(map[string]any)["rfm_segment"]; seg != "Everyone" {
		t.Errorf("rfm_segment with a catch-all rule = %v, want Everyone", seg)
	}

	// Bad requests say why.
	for _, body := range []map[string]any{{"model": "nope"}, {"analysisDate": "yesterday"}, {"topN": 0}, {"holdoutDays": 3}, {"colour": "red"},
		{"rfmRules": []map[string]any{{"name": "Bad", "r": []int{0, 9}, "f": []int{1, 5}, "m": []int{1, 5}}}}, {"rfmRules": []any{}}} {
		if code, out := s.admin("POST", "/v1/insights/runs", body); code != 400 {
			t.Errorf("POST runs %v: %d %v, want 400", body, code, out)
		}
	}
	if code, _ := s.admin("POST", "/v1/insights/validations", map[string]any{}); code != 400 {
		t.Errorf("validation without holdoutDays: %d, want 400", code)
	}
	if code, _ := s.admin("GET", "/v1/insights/runs/run_nope", nil); code != 404 {
		t.Errorf("unknown run: %d, want 404", code)
	}

	// Scopes: a read-only token cannot start runs.
	code, tok := s.admin("POST", "/v1/tokens", map[string]any{"name": "viewer", "scopes": []string{"insights:read"}})
	if code != 201 {
		t.Fatalf("token: %d %v", code, tok)
	}
	hdr := map[string]string{"Authorization": "Bearer " + tok["token"].(string)}
	if code, _ := s.request("POST", "/v1/insights/runs", []byte(`{}`), hdr); code != 403 {
		t.Errorf("start with insights:read: %d, want 403", code)
	}
	if code, _ := s.request("GET", "/v1/insights/runs", nil, hdr); code != 200 {
		t.Errorf("list with insights:read: %d, want 200", code)
	}

	// Without wait the call answers at once and the run finishes later.
	code, started := s.admin("POST", "/v1/insights/runs", map[string]any{"analysisDate": "2025-12-31"})
	if code != 202 || started["status"] != "running" {
		t.Fatalf("start: %d %v", code, started)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, r := s.admin("GET", "/v1/insights/runs/"+started["id"].(string), nil)
		if r["status"] == "finished" {
			break
		}
		if r["status"] == "failed" || time.Now().After(deadline) {
			t.Fatalf("background run: %v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInsightsDisabled(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	if code, out := s.admin("POST", "/v1/insights/runs", nil); code != 404 {
		t.Errorf("runs without an insights engine: %d %v, want 404", code, out)
	}
}

func TestIdentityRulesEndpoint(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	code, out := s.admin("GET", "/v1/identity/rules", nil)
	if code != 200 {
		t.Fatalf("rules: %d %v", code, out)
	}
	types := map[string]map[string]any{}
	for _, x := range out["types"].([]any) {
		m := x.(map[string]any)
		types[m["name"].(string)] = m
	}
	if u := types["user_id"]; u == nil || u["limit"] != 1.0 || u["priority"] != 1.0 {
		t.Errorf("user_id rule = %v, want limit 1 priority 1", u)
	}
	if a := types["anonymous_id"]; a == nil || a["priority"].(float64) <= types["email"]["priority"].(float64) {
		t.Errorf("anonymous_id must rank below email: %v", a)
	}
	if b := out["blocked"].(map[string]any); len(b["exact"].([]any)) == 0 || len(b["patterns"].([]any)) == 0 {
		t.Errorf("blocked = %v", b)
	}
}
