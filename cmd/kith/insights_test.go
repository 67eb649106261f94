package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cdnowArgs read the CDNOW sample as it comes (whitespace, no header).
var cdnowArgs = []string{"--input", "../../btyd/testdata/CDNOW_sample.txt", "--no-header",
	"--customer-col", "2", "--date-col", "3", "--amount-col", "5", "--date-format", "%Y%m%d"}

func runJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("kith %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("kith %s printed no JSON object: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return m
}

// The fixed offline interface: one JSON object with the parameters by
// their usual names and log_likelihood, to the published precision.
func TestInsightsFitCLI(t *testing.T) {
	tests := []struct {
		model string
		want  map[string]float64
		tol   float64
	}{
		{"bgnbd", map[string]float64{"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "log_likelihood": -9582.43}, 0.0005},
		{"paretonbd", map[string]float64{"r": 0.553, "s": 0.606, "log_likelihood": -9594.98}, 0.0005},
		{"gammagamma", map[string]float64{"p": 6.25, "q": 3.74, "gamma": 15.44}, 0.005},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			args := append([]string{"insights", "fit", "--model", tc.model, "--calibration-end", "1997-09-30", "--unit", "week"}, cdnowArgs...)
			got := runJSON(t, args...)
			for k, w := range tc.want {
				v, ok := got[k].(float64)
				tol := tc.tol
				if k == "log_likelihood" {
					tol = 0.005
				}
				if !ok || math.Abs(v-w) > tol {
					t.Errorf("%s = %v, want %v ± %v (output %v)", k, got[k], w, tol, got)
				}
			}
		})
	}
	// Day units give the same fit in a different scale: alpha in days is
	// 7 × alpha in weeks.
	args := append([]string{"insights", "fit", "--model", "bgnbd", "--calibration-end", "1997-09-30", "--unit", "day"}, cdnowArgs...)
	got := runJSON(t, args...)
	if a := got["alpha"].(float64); math.Abs(a-7*4.4136) > 0.01 {
		t.Errorf("alpha in days = %v, want about %v", a, 7*4.4136)
	}
}

func TestInsightsRFMCLI(t *testing.T) {
	args := append([]string{"insights", "rfm", "--analysis-date", "1998-07-01"}, cdnowArgs...)
	got := runJSON(t, args...)
	customers, orders := 0.0, 0.0
	for name, v := range got {
		seg := v.(map[string]any)
		for _, k := range []string{"customers", "orders", "revenue"} {
			if _, ok := seg[k].(float64); !ok {
				t.Fatalf("segment %s lacks %s: %v", name, k, seg)
			}
		}
		customers += seg["customers"].(float64)
		orders += seg["orders"].(float64)
	}
	if customers != 2357 || orders != 6919 {
		t.Errorf("segments hold %v customers and %v orders, want 2357 and 6919", customers, orders)
	}
	if _, ok := got["Champions"]; !ok {
		t.Errorf("no Champions in %v", got)
	}
}

func TestInsightsValidateCLIFile(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"insights", "validate", "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--out", dir}, cdnowArgs...)
	got := runJSON(t, args...)
	if got["actualHoldout"].(float64) != 1882 || got["cumulativeActual"].(float64) != 4339 {
		t.Errorf("validate = %v", got)
	}
	for _, f := range []string{"report.json", "tracking.svg", "conditional_expectation.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

func TestInsightsCLIErrors(t *testing.T) {
	for _, args := range [][]string{
		{"insights", "fit", "--model", "bgnbd", "--unit", "week"},                                         // no calibration end
		{"insights", "fit", "--model", "bgnbd", "--calibration-end", "1997-09-30", "--unit", "fortnight"}, // bad unit
		append([]string{"insights", "fit", "--model", "nope", "--calibration-end", "1997-09-30"}, cdnowArgs...),
		{"insights", "rfm", "--input", "x.csv", "--customer-col", "c", "--date-col", "d", "--analysis-date", "2020-01-01"}, // no amount
		{"insights", "validate"},
		{"insights", "frobnicate"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("kith %s: want an error", strings.Join(args, " "))
		}
	}
}

// The server side: orders sent over the API, a run started from the CLI,
// predictions visible on the profile.
func TestInsightsRunCLI(t *testing.T) {
	s := startServer(t)
	var items []string
	start := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	for c := range 40 {
		for k := range 1 + c%5 {
			at := start.AddDate(0, 0, 3*c+17*k)
			items = append(items, fmt.Sprintf(`{"type":"track","userId":"c%d","event":"Order Completed","timestamp":%q,"properties":{"revenue":%d,"products":[{"product_id":"p%d","category":"k","price":%d}]}}`,
				c, at.Format(time.RFC3339), 10+c, k, 10+c))
		}
	}
	postBatch(t, s, "shop", `{"batch":[`+strings.Join(items, ",")+`]}`)
	waitProcessed(t, s)
	out, err := cli(t, s, "insights", "run", "--wait", "--analysis-date", "2025-12-31")
	if err != nil || !strings.Contains(out, `"status": "finished"`) {
		t.Fatalf("insights run: %v\n%s", err, out)
	}
	out, err = cli(t, s, "insights", "runs")
	if err != nil || !strings.Contains(out, "finished") || !strings.Contains(out, "api") {
		t.Errorf("insights runs: %v\n%s", err, out)
	}
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/v1/profiles/user_id:c4/traits?verbose=true", nil)
	req.Header.Set("Authorization", "Bearer "+s.Config.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		Traits map[string]struct {
			Provenance string `json:"provenance"`
			RunID      string `json:"runId"`
		} `json:"traits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	if seg := tr.Traits["rfm_segment"]; seg.Provenance != "predicted" || !strings.HasPrefix(seg.RunID, "run_") {
		t.Errorf("rfm_segment of c4 = %+v, want predicted by a run", seg)
	}
}

func TestServeInsightsFlags(t *testing.T) {
	for _, k := range []string{"KITH_INSIGHTS_EVERY", "KITH_INSIGHTS_MODEL", "KITH_RFM_SEGMENTS"} {
		t.Setenv(k, "")
	}
	c, err := ParseServeFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.InsightsEvery != 24*time.Hour || c.Insights.Model != "bgnbd" || c.Insights.RFMRules != nil {
		t.Errorf("defaults: every %v model %q rules %v", c.InsightsEvery, c.Insights.Model, c.Insights.RFMRules)
	}
	rules := filepath.Join(t.TempDir(), "segments.json")
	os.WriteFile(rules, []byte(`[{"name":"Best","r":[4,5],"f":[4,5],"m":[4,5]},{"name":"Rest","r":[1,5],"f":[1,5],"m":[1,5]}]`), 0o600)
	t.Setenv("KITH_INSIGHTS_MODEL", "paretonbd")
	c, err = ParseServeFlags([]string{"--insights-every", "0", "--rfm-segments", rules}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.InsightsEvery != 0 || c.Insights.Model != "paretonbd" || len(c.Insights.RFMRules) != 2 || c.Insights.RFMRules[0].Name != "Best" || c.Insights.RFMRules[0].R != [2]int{4, 5} {
		t.Errorf("configured: every %v model %q rules %+v", c.InsightsEvery, c.Insights.Model, c.Insights.RFMRules)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`[{"name":"Bad","r":[0,7],"f":[1,5],"m":[1,5]}]`), 0o600)
	if _, err := ParseServeFlags([]string{"--rfm-segments", bad}, io.Discard); err == nil {
		t.Error("segments with a range outside 1..5: want an error")
	}
	if _, err := ParseServeFlags([]string{"--insights-model", "nope"}, io.Discard); err == nil {
		t.Error("unknown model: want an error")
	}
}

func TestServeIdentityRulesFlag(t *testing.T) {
	t.Setenv("KITH_IDENTITY_RULES", "")
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.json")
	os.WriteFile(good, []byte(`{"types":[{"name":"user_id","sources":["userId"],"priority":1,"limit":1},
		{"name":"member_no","sources":["traits.member_no"],"priority":2,"limit":1,"neverMerge":true}],"defaultRegion":"nl"}`), 0o600)
	c, err := ParseServeFlags([]string{"--identity-rules", good}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.IdentityRules; r == nil || !r.Rule("member_no").NeverMerge || r.DefaultRegion != "NL" {
		t.Errorf("rules = %+v", c.IdentityRules)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"types":[{"name":"x","sources":["somewhere"],"priority":1}]}`), 0o600)
	if _, err := ParseServeFlags([]string{"--identity-rules", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown source") {
		t.Errorf("bad rules file: %v, want an unknown-source error", err)
	}
}

func TestProfileUnmergeCLI(t *testing.T) {
	s := startServer(t)
	postBatch(t, s, "pos", `{"batch":[
		{"type":"identify","userId":"u1","traits":{"email":"ann@x.io"}},
		{"type":"identify","anonymousId":"t2","traits":{"email":"bea@x.io"}},
		{"type":"track","anonymousId":"t2","event":"Link","context":{"traits":{"email":"ann@x.io"}}}]}`)
	waitProcessed(t, s)
	var id string
	out, err := cli(t, s, "profile", "merges", "user_id:u1")
	if err == nil && strings.Contains(out, "m_") {
		id = strings.Fields(strings.Split(out, "\n")[1])[0]
	}
	if id == "" {
		t.Fatalf("profile merges: %v\n%s", err, out)
	}
	if _, err := cli(t, s, "profile", "unmerge", "user_id:u1", "--merge", id); err == nil {
		t.Error("unmerge without --reason: want an error")
	}
	out, err = cli(t, s, "profile", "unmerge", "user_id:u1", "--merge", id, "--reason", "typo")
	if err != nil || !strings.Contains(out, "split split_") {
		t.Fatalf("profile unmerge: %v\n%s", err, out)
	}
	out, _ = cli(t, s, "profile", "merges", "user_id:u1")
	if strings.Contains(out, "m_") {
		t.Errorf("merges after unmerge:\n%s", out)
	}
}

func TestReviewAndMergeCLI(t *testing.T) {
	s := startServer(t)
	postBatch(t, s, "crm", `{"batch":[
		{"type":"identify","anonymousId":"c1","traits":{"name":"Ann"}},
		{"type":"identify","anonymousId":"c2","traits":{"name":"Anne"}},
		{"type":"identify","anonymousId":"c3","traits":{"name":"Bo"}},
		{"type":"identify","anonymousId":"c4","traits":{"name":"Bob"}}]}`)
	deadline := time.Now().Add(10 * time.Second)
	for canonicalOf(t, s, "anonymous_id:c4") == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := cli(t, s, "profile", "merge", "anonymous_id:c1", "--with", "anonymous_id:c2", "--reason", "same person")
	if err != nil || !strings.Contains(out, "merged into p_") {
		t.Fatalf("profile merge: %v\n%s", err, out)
	}
	// Queue two candidates the way a matching run does, then decide them.
	items := []kith.ReviewItem{
		{ID: "rvA", A: canonicalOf(t, s, "anonymous_id:c3"), B: canonicalOf(t, s, "anonymous_id:c4"), Probability: 0.9, Weight: 5, RunID: "m", CreatedAt: time.Now()},
		{ID: "rvB", A: canonicalOf(t, s, "anonymous_id:c1"), B: canonicalOf(t, s, "anonymous_id:c3"), Probability: 0.5, Weight: 0.1, RunID: "m", CreatedAt: time.Now()},
	}
	if _, err := s.store.AddReviewItems(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, s, "review", "list")
	if err != nil || !strings.Contains(out, "rvA") || !strings.Contains(out, "rvB") {
		t.Fatalf("review list: %v\n%s", err, out)
	}
	if out, err = cli(t, s, "review", "accept", "rvA"); err != nil || !strings.Contains(out, "accepted, merged into") {
		t.Fatalf("review accept: %v\n%s", err, out)
	}
	if out, err = cli(t, s, "review", "reject", "rvB", "--reason", "no"); err != nil || !strings.Contains(out, "rejected") {
		t.Fatalf("review reject: %v\n%s", err, out)
	}
	if canonicalOf(t, s, "anonymous_id:c3") != canonicalOf(t, s, "anonymous_id:c4") || canonicalOf(t, s, "anonymous_id:c1") == canonicalOf(t, s, "anonymous_id:c3") {
		t.Error("review decisions did not take effect")
	}
	if _, err := cli(t, s, "review", "accept", "rvA"); err == nil {
		t.Error("accepting twice: want an error")
	}
}

// canonicalOf resolves a reference through the API.
func canonicalOf(t *testing.T, s *Server, ref string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/v1/profiles/"+ref, nil)
	req.Header.Set("Authorization", "Bearer "+s.Config.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		ID string `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&p)
	return p.ID
}

func TestMatchCLI(t *testing.T) {
	s := startServer(t)
	var items []string
	for i := range 60 {
		// Pairs of contacts for the same person, one with a typo in the
		// surname, and no identifier in common.
		items = append(items,
			fmt.Sprintf(`{"type":"identify","anonymousId":"crm-%d","traits":{"first_name":"name%d","last_name":"smithson%d","birthday":"19%02d-03-%02d"}}`, i, i, i, 50+i%40, 1+i%28),
			fmt.Sprintf(`{"type":"identify","anonymousId":"pos-%d","traits":{"first_name":"name%d","last_name":"smithsen%d","birthday":"19%02d-03-%02d"}}`, i, i, i, 50+i%40, 1+i%28))
	}
	postBatch(t, s, "crm", `{"batch":[`+strings.Join(items, ",")+`]}`)
	deadline := time.Now().Add(10 * time.Second)
	for canonicalOf(t, s, "anonymous_id:pos-59") == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := cli(t, s, "match")
	if err != nil || !strings.Contains(out, `"status": "finished"`) || !strings.Contains(out, `"trigger": "match"`) {
		t.Fatalf("kith match: %v\n%s", err, out)
	}
	linked := 0
	for i := range 60 {
		if canonicalOf(t, s, fmt.Sprintf("anonymous_id:crm-%d", i)) == canonicalOf(t, s, fmt.Sprintf("anonymous_id:pos-%d", i)) {
			linked++
		}
	}
	q, _ := cli(t, s, "review", "list")
	queued := strings.Count(q, "rv_")
	if linked+queued < 50 {
		t.Errorf("of 60 duplicate pairs %d were linked and %d queued\n%s", linked, queued, out)
	}
	if canonicalOf(t, s, "anonymous_id:crm-1") == canonicalOf(t, s, "anonymous_id:crm-2") {
		t.Error("two different people were linked")
	}
}

// waitProcessed waits until the server has processed every accepted event.
func waitProcessed(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+s.Config.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Totals struct{ Accepted, Processed int64 } `json:"totals"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Totals.Accepted > 0 && st.Totals.Processed == st.Totals.Accepted {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("events not processed in time")
}

// Rules set through the admin API are in force at once and survive a
// restart.
func TestIdentityRulesThroughTheAPI(t *testing.T) {
	dir := t.TempDir()
	cfg := ServeConfig{DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "cli-test-admin-token", DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1000, BatchSize: 100}
	s := &Server{Config: cfg}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	put := func(body string) int {
		req, _ := http.NewRequest("PUT", "http://"+s.Addr()+"/v1/identity/rules", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put(`{"types":[{"name":"user_id","sources":["nowhere"],"priority":1}]}`); code != 400 {
		t.Errorf("invalid rules: %d, want 400", code)
	}
	// No limit on user ids: the missed-logout example now merges.
	if code := put(`{"types":[{"name":"user_id","sources":["userId"],"priority":1},{"name":"anonymous_id","sources":["anonymousId"],"priority":9}]}`); code != 200 {
		t.Fatalf("put rules: %d", code)
	}
	postBatch(t, s, "web", `{"batch":[
		{"type":"identify","anonymousId":"a1","userId":"u1"},{"type":"identify","anonymousId":"a1","userId":"u2"}]}`)
	waitProcessed(t, s)
	if canonicalOf(t, s, "user_id:u1") != canonicalOf(t, s, "user_id:u2") {
		t.Error("the new rules are not in force")
	}
	s.Close()
	s = &Server{Config: cfg}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/v1/identity/rules", nil)
	req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Types []struct {
			Name  string `json:"name"`
			Limit int    `json:"limit"`
		} `json:"types"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if len(r.Types) != 2 || r.Types[0].Name != "user_id" || r.Types[0].Limit != 0 {
		t.Errorf("rules after restart = %+v", r)
	}
}

func TestServeMatchConfigFlag(t *testing.T) {
	t.Setenv("KITH_MATCH_CONFIG", "")
	dir := t.TempDir()
	good := filepath.Join(dir, "match.json")
	os.WriteFile(good, []byte(`{"fields":[{"name":"surname","traits":["last_name"]},{"name":"dob","traits":["birthday"],"date":true}],
		"comparisons":[{"field":"surname","kind":"name"},{"field":"dob","kind":"date"}],"blocking":[{"fields":["dob"]}],"autoMerge":0.999}`), 0o600)
	c, err := ParseServeFlags([]string{"--match-config", good}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Match == nil || len(c.Match.Fields) != 2 || c.Match.Settings.AutoMerge != 0.999 {
		t.Errorf("match config = %+v", c.Match)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"fields":[{"name":"a","traits":["x"]}],"comparisons":[{"field":"b","kind":"exact"}],"blocking":[{"fields":["a"]}]}`), 0o600)
	if _, err := ParseServeFlags([]string{"--match-config", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), `unknown field "b"`) {
		t.Errorf("bad match config: %v", err)
	}
}

// postBatch creates a source and sends body to /v1/batch with its key.
func postBatch(t *testing.T, s *Server, source, body string) {
	t.Helper()
	out, err := cli(t, s, "source", "create", source)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(out[strings.Index(out, "wk_"):])[0]
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("batch: %v %v", resp, err)
	}
	resp.Body.Close()
}
