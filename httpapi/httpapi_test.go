package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/insights"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

const adminToken = "test-admin-token"

// stack is a whole Kith on the embedded store behind an httptest server.
type stack struct {
	t        *testing.T
	dir      string
	store    *sqlite.DB
	srv      *httptest.Server
	cancel   context.CancelFunc
	done     chan struct{}
	commit   *collect.Committer
	writeKey string
	sourceID string
	now      func() time.Time
	runner   *insights.Runner
	api      *httpapi.Server
	// delivery is the delivery engine (stackOptions.activation).
	delivery *activation.Engine
}

func startStack(t *testing.T, dir string, now func() time.Time) *stack {
	t.Helper()
	return startStackWith(t, dir, now, stackOptions{})
}

// stackOptions vary a stack for a test.
type stackOptions struct {
	maxBacklog int64
	// noIndexer keeps the indexer from applying the log (its head watcher
	// still runs), so a backlog builds up.
	noIndexer bool
	// insights enables the insights endpoints with this configuration.
	insights *insights.Config
	// audiences runs the audience engine following the indexer, as kith
	// serve wires it.
	audiences bool
	// activation runs the delivery engine behind the destinations API.
	activation bool
}

func startStackWith(t *testing.T, dir string, now func() time.Time, opts stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.ProvisionToken(ctx, store, adminToken, time.Now()); err != nil {
		t.Fatal(err)
	}
	secret, err := store.Secret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var eng *audience.Engine
	// One source of identity rules for every reader, as kith serve has.
	rules := identity.NewCurrent(nil)
	pcfg := pipeline.Config{BatchSize: 1000, Rules: rules.Load}
	if opts.audiences {
		eng = audience.NewEngine(store, audience.Config{Secret: secret, Rules: rules.Load})
		if err := eng.Start(ctx); err != nil {
			t.Fatal(err)
		}
		pcfg.Observer = eng
	}
	ix := pipeline.New(store, secret, pcfg)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go ix.WatchHead(rctx)
	engDone := make(chan struct{})
	go func() {
		defer close(engDone)
		if eng != nil {
			_ = eng.Run(rctx)
		}
	}()
	go func() {
		if !opts.noIndexer {
			ix.Run(rctx)
		}
		<-rctx.Done()
		<-engDone
		close(done)
	}()
	com := collect.NewCommitter(store, 64, 5000, ix.Notify)
	lim := collect.DefaultLimits()
	lim.MaxRequestBytes = 64 << 10
	lim.MaxEventBytes = 4 << 10
	cfg := httpapi.Config{Limits: lim, Now: now, MaxBacklog: opts.maxBacklog, Unmerger: ix, IdentityRules: rules}
	if eng != nil {
		cfg.Audiences = eng
	}
	var runner *insights.Runner
	if opts.insights != nil {
		runner = &insights.Runner{Store: store, Config: *opts.insights, Now: now, Context: rctx}
		cfg.Insights, cfg.InsightConfig = runner, *opts.insights
	}
	var delivery *activation.Engine
	if opts.activation {
		delivery = startActivation(t, store, secret, rules, ix, now)
		cfg.Destinations = delivery
	}
	api := httpapi.New(store, com, ix, cfg)
	s := &stack{t: t, dir: dir, store: store, srv: httptest.NewServer(api), cancel: cancel, done: done, commit: com, now: now, runner: runner, api: api, delivery: delivery}
	t.Cleanup(s.stop)
	return s
}

func (s *stack) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	if s.delivery != nil {
		s.delivery.Close()
	}
	s.api.Close()
	s.commit.Close()
	s.cancel()
	<-s.done
	if s.runner != nil {
		s.runner.Wait()
	}
	s.store.Close()
	s.srv = nil
}

// request sends a request and decodes the JSON answer into a map.
func (s *stack) request(method, path string, body []byte, hdr map[string]string) (int, map[string]any) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(data, &out); err != nil {
			s.t.Fatalf("%s %s: bad JSON %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, out
}

func (s *stack) admin(method, path string, body any) (int, map[string]any) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return s.request(method, path, b, map[string]string{"Authorization": "Bearer " + adminToken})
}

func (s *stack) createSource(name string) (id, key string) {
	s.t.Helper()
	code, out := s.admin("POST", "/v1/sources", map[string]string{"name": name})
	if code != http.StatusCreated {
		s.t.Fatalf("create source: %d %v", code, out)
	}
	s.writeKey, s.sourceID = out["writeKey"].(string), out["id"].(string)
	return s.sourceID, s.writeKey
}

// send posts a body to /v1/{endpoint} with Basic auth.
func (s *stack) send(endpoint, body string) (int, map[string]any) {
	return s.request("POST", "/v1/"+endpoint, []byte(body), map[string]string{
		"Authorization": basic(s.writeKey), "Content-Type": "application/json",
	})
}

func basic(key string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(key, "")
	return req.Header.Get("Authorization")
}

// waitProcessed waits until every accepted event is processed.
func (s *stack) waitProcessed() map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, st := s.admin("GET", "/v1/stats", nil)
		tot := st["totals"].(map[string]any)
		if tot["processed"] == tot["accepted"] {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("events not processed: %v", tot)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) events(ref string) []map[string]any {
	s.t.Helper()
	code, out := s.admin("GET", "/v1/profiles/"+url.PathEscape(ref)+"/events?limit=1000", nil)
	if code != 200 {
		s.t.Fatalf("events of %s: %d %v", ref, code, out)
	}
	var evs []map[string]any
	for _, e := range out["data"].([]any) {
		evs = append(evs, e.(map[string]any))
	}
	return evs
}

var fixedNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestCollectEdgeCases(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	s.createSource("webshop")
	big := strings.Repeat("x", 5000)
	tests := []struct {
		name     string
		endpoint string
		body     string
		status   int
		// rejected lists the expected (index, reason) pairs in order.
		rejected []string
		accepted int
	}{
		{"track ok", "track", `{"userId":"u1","event":"Signed Up","messageId":"m-track"}`, 200, nil, 1},
		{"invalid json", "track", `{"userId":`, 400, []string{"0:invalid_json"}, 0},
		{"not an object", "identify", `[1,2]`, 400, []string{"0:invalid_json"}, 0},
		{"no ids", "identify", `{"traits":{"a":1}}`, 400, []string{"0:missing_user_or_anonymous_id"}, 0},
		{"track no event", "track", `{"userId":"u1"}`, 400, []string{"0:missing_event"}, 0},
		{"alias no previousId", "alias", `{"userId":"u1"}`, 400, []string{"0:missing_previous_id"}, 0},
		{"group no groupId", "group", `{"userId":"u1"}`, 400, []string{"0:missing_group_id"}, 0},
		{"messageId too long", "track", `{"userId":"u1","event":"e","messageId":"` + strings.Repeat("m", 101) + `"}`, 400, []string{"0:message_id_too_long"}, 0},
		{"event too large", "track", `{"userId":"u1","event":"e","properties":{"p":"` + big + `"}}`, 413, []string{"0:event_too_large"}, 0},
		{"NUL character", "track", `{"userId":"u1","event":"e\u0000x"}`, 400, []string{"0:invalid_field"}, 0},
		{"bad timestamp", "track", `{"userId":"u1","event":"e","timestamp":"yesterday"}`, 400, []string{"0:invalid_field"}, 0},
		{"batch without array", "batch", `{"items":[]}`, 400, []string{"0:invalid_json"}, 0},
		{"batch partial", "batch", `{"batch":[
			{"type":"track","userId":"u1","event":"ok","messageId":"m-b1"},
			{"userId":"u1","event":"no type"},
			{"type":"bogus","userId":"u1"},
			{"type":"identify","anonymousId":"a1","messageId":"m-b2"},
			{"type":"track","anonymousId":"a1"}]}`, 200, []string{"1:missing_type", "2:unknown_type", "4:missing_event"}, 2},
	}
	wantRejected := map[string]float64{}
	wantReceived := 0.0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := s.send(tc.endpoint, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %v", code, tc.status, out)
			}
			rej, _ := out["rejected"].([]any)
			if len(rej) != len(tc.rejected) {
				t.Fatalf("rejected %v, want %v", rej, tc.rejected)
			}
			for i, r := range rej {
				m := r.(map[string]any)
				got := fmt.Sprintf("%v:%v", m["index"], m["reason"])
				if got != tc.rejected[i] {
					t.Errorf("rejected[%d] = %s, want %s", i, got, tc.rejected[i])
				}
				if m["message"] == "" {
					t.Errorf("rejection %s has no message", got)
				}
				wantRejected[m["reason"].(string)]++
			}
			if code == 200 && out["accepted"].(float64) != float64(tc.accepted) {
				t.Errorf("accepted %v, want %d", out["accepted"], tc.accepted)
			}
			if code >= 400 {
				if e, _ := out["error"].(map[string]any); e["code"] == "" {
					t.Errorf("error body lacks a code: %v", out)
				}
			}
			wantReceived += float64(len(tc.rejected) + tc.accepted)
		})
	}
	st := s.waitProcessed()
	tot := st["totals"].(map[string]any)
	if tot["received"] != wantReceived {
		t.Errorf("received %v, want %v", tot["received"], wantReceived)
	}
	for reason, n := range wantRejected {
		if got := tot["rejected"].(map[string]any)[reason]; got != n {
			t.Errorf("rejected[%s] = %v, want %v", reason, got, n)
		}
	}
	var rejSum float64
	for _, v := range tot["rejected"].(map[string]any) {
		rejSum += v.(float64)
	}
	if tot["received"] != tot["accepted"].(float64)+tot["duplicate"].(float64)+rejSum {
		t.Errorf("counts do not add up: %v", tot)
	}
}

func TestCollectAuth(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	id, key := s.createSource("app")
	body := `{"userId":"u1","event":"Opened"}`
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
	}{
		{"basic auth", body, map[string]string{"Authorization": basic(key)}, 200},
		{"writeKey in body", `{"writeKey":"` + key + `","userId":"u1","event":"Opened"}`, nil, 200},
		{"writeKey in batch item", `{"batch":[{"writeKey":"` + key + `","type":"track","userId":"u1","event":"Opened"}]}`, nil, 200},
		{"no key", body, nil, 401},
		{"unknown key", body, map[string]string{"Authorization": basic("wk_nope")}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := "track"
			if strings.HasPrefix(tc.body, `{"batch"`) {
				ep = "batch"
			}
			code, out := s.request("POST", "/v1/"+ep, []byte(tc.body), tc.hdr)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %v", code, tc.status, out)
			}
		})
	}
	// A bad message whose only key is in the body is told what is wrong
	// with it, not that it lacks a key.
	if code, out := s.request("POST", "/v1/track", []byte(`{"writeKey":"`+key+`","userId":"u1"}`), nil); code != 400 {
		t.Fatalf("bad message with body writeKey: %d %v", code, out)
	}
	// Unknown endpoints answer in JSON too.
	if code, out := s.request("GET", "/v1/nope", nil, nil); code != 404 || out["error"] == nil {
		t.Fatalf("unknown endpoint: %d %v", code, out)
	}
	// The body's writeKey is a secret and must not be stored.
	s.waitProcessed()
	for _, e := range s.events("user_id:u1") {
		if _, ok := e["writeKey"]; ok {
			t.Fatalf("stored event keeps the writeKey: %v", e)
		}
	}
	// A disabled source is refused.
	if code, out := s.admin("PATCH", "/v1/sources/"+id, map[string]bool{"disabled": true}); code != 200 {
		t.Fatalf("disable: %d %v", code, out)
	}
	if code, _ := s.request("POST", "/v1/track", []byte(body), map[string]string{"Authorization": basic(key)}); code != 403 {
		t.Fatalf("disabled source: status %d, want 403", code)
	}
	// Admin endpoints need a token.
	if code, _ := s.request("GET", "/v1/stats", nil, nil); code != 401 {
		t.Fatalf("stats without token: %d", code)
	}
}

func TestClockSkewAndDefaults(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	s.createSource("web")
	tests := []struct {
		name, body, wantTS string
	}{
		// The client clock is 1 h fast: sentAt − originalTimestamp = 5 s.
		{"sentAt correction", `{"userId":"c1","event":"e","messageId":"k1","originalTimestamp":"2026-11-28T12:59:55Z","sentAt":"2026-11-28T13:00:00Z"}`, "2026-11-28T11:59:55.000000Z"},
		{"client timestamp is the original", `{"userId":"c1","event":"e","messageId":"k2","timestamp":"2026-11-28T13:00:00Z","sentAt":"2026-11-28T13:00:10Z"}`, "2026-11-28T11:59:50.000000Z"},
		{"timestamp without sentAt kept", `{"userId":"c1","event":"e","messageId":"k3","timestamp":"2026-01-02T03:04:05.678Z"}`, "2026-01-02T03:04:05.678000Z"},
		{"nothing: receivedAt", `{"userId":"c1","event":"e","messageId":"k4"}`, "2026-11-28T12:00:00.000000Z"},
		{"batch-level sentAt", `{"sentAt":"2026-11-28T12:00:30Z","batch":[{"type":"track","userId":"c1","event":"e","messageId":"k5","originalTimestamp":"2026-11-28T12:00:00Z"}]}`, "2026-11-28T11:59:30.000000Z"},
	}
	for _, tc := range tests {
		ep := "track"
		if strings.Contains(tc.body, `"batch"`) {
			ep = "batch"
		}
		if code, out := s.send(ep, tc.body); code != 200 {
			t.Fatalf("%s: %d %v", tc.name, code, out)
		}
	}
	s.waitProcessed()
	byID := map[string]map[string]any{}
	for _, e := range s.events("user_id:c1") {
		byID[e["messageId"].(string)] = e
	}
	for i, tc := range tests {
		e := byID[fmt.Sprintf("k%d", i+1)]
		if e == nil {
			t.Fatalf("%s: event not stored", tc.name)
		}
		if e["timestamp"] != tc.wantTS {
			t.Errorf("%s: timestamp %v, want %s", tc.name, e["timestamp"], tc.wantTS)
		}
		if e["receivedAt"] != "2026-11-28T12:00:00.000000Z" {
			t.Errorf("%s: receivedAt %v", tc.name, e["receivedAt"])
		}
		if _, ok := e["properties"].(map[string]any); !ok {
			t.Errorf("%s: properties not defaulted to {}", tc.name)
		}
		if _, ok := e["context"].(map[string]any)["ip"]; !ok {
			t.Errorf("%s: context.ip not recorded", tc.name)
		}
	}
	// A message without messageId is assigned one.
	if code, _ := s.send("track", `{"userId":"c2","event":"e"}`); code != 200 {
		t.Fatal("send without messageId")
	}
	s.waitProcessed()
	if evs := s.events("user_id:c2"); len(evs) != 1 || !strings.HasPrefix(evs[0]["messageId"].(string), "kith-") {
		t.Fatalf("assigned messageId missing: %v", evs)
	}
}

func TestBatchContextMergeAndGzip(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("web")
	body := `{"context":{"library":{"name":"batch-lib"},"locale":"nl-NL"},"integrations":{"All":false},
		"batch":[
		{"type":"page","anonymousId":"g1","name":"Home","messageId":"g-1","context":{"locale":"en-GB"}},
		{"type":"track","anonymousId":"g1","event":"Clicked","messageId":"g-2","integrations":{"All":true}}]}`
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(body))
	zw.Close()
	code, out := s.request("POST", "/v1/batch", zb.Bytes(), map[string]string{"Authorization": basic(s.writeKey), "Content-Encoding": "gzip"})
	if code != 200 || out["accepted"].(float64) != 2 {
		t.Fatalf("gzip batch: %d %v", code, out)
	}
	// Garbage claiming to be gzip is a clear 400.
	if code, out := s.request("POST", "/v1/batch", []byte("not gzip"), map[string]string{"Authorization": basic(s.writeKey), "Content-Encoding": "gzip"}); code != 400 {
		t.Fatalf("bad gzip: %d %v", code, out)
	}
	// A body over the request limit is a 413.
	huge := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u","event":"e"},`, 2000) + `{"type":"track","userId":"u","event":"e"}]}`
	if code, _ := s.send("batch", huge); code != 413 {
		t.Fatalf("oversized request: %d, want 413", code)
	}
	s.waitProcessed()
	byID := map[string]map[string]any{}
	for _, e := range s.events("anonymous_id:g1") {
		byID[e["messageId"].(string)] = e
	}
	ctx1 := byID["g-1"]["context"].(map[string]any)
	if ctx1["locale"] != "en-GB" || ctx1["library"].(map[string]any)["name"] != "batch-lib" {
		t.Errorf("item context must win and batch context fill in: %v", ctx1)
	}
	if byID["g-1"]["integrations"].(map[string]any)["All"] != false || byID["g-2"]["integrations"].(map[string]any)["All"] != true {
		t.Errorf("integrations merge wrong: %v / %v", byID["g-1"]["integrations"], byID["g-2"]["integrations"])
	}
	if byID["g-1"]["event"] != nil && byID["g-1"]["name"] != "Home" {
		t.Errorf("page name lost: %v", byID["g-1"])
	}
}

func TestDedupAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, dir, time.Now)
	s.createSource("web")
	body := `{"batch":[{"type":"track","userId":"d1","event":"e","messageId":"dup-1"},{"type":"track","userId":"d1","event":"e","messageId":"dup-1"}]}`
	code, out := s.send("batch", body)
	if code != 200 || out["accepted"].(float64) != 1 || out["duplicates"].(float64) != 1 {
		t.Fatalf("in-batch dup: %d %v", code, out)
	}
	s.waitProcessed()
	key := s.writeKey
	s.stop()

	s2 := startStack(t, dir, time.Now)
	s2.writeKey = key
	code, out = s2.send("track", `{"userId":"d1","event":"e","messageId":"dup-1"}`)
	if code != 200 || out["accepted"].(float64) != 0 || out["duplicates"].(float64) != 1 {
		t.Fatalf("dup after restart: %d %v", code, out)
	}
	st := s2.waitProcessed()
	tot := st["totals"].(map[string]any)
	if tot["received"] != 3.0 || tot["accepted"] != 1.0 || tot["duplicate"] != 2.0 || tot["processed"] != 1.0 {
		t.Fatalf("totals after restart: %v", tot)
	}
	if evs := s2.events("user_id:d1"); len(evs) != 1 {
		t.Fatalf("want the event stored once, got %d", len(evs))
	}
}

func TestProfileStitchingAndAPI(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	webID, webKey := s.createSource("webshop")
	_, crmKey := s.createSource("crm")
	post := func(key, ep, body string) {
		t.Helper()
		s.writeKey = key
		if code, out := s.send(ep, body); code != 200 {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	// An anonymous visitor browses, a CRM record exists by e-mail, then the
	// visitor signs up: one identify linking anonymousId, userId and e-mail.
	post(webKey, "page", `{"anonymousId":"anon-1","name":"Home","messageId":"w1","timestamp":"2026-11-01T10:00:00Z"}`)
	// (The CRM's own id is a custom type: two different user_ids would
	// never merge under the default identity rules.)
	post(crmKey, "identify", `{"anonymousId":"crm-row-77","traits":{"email":"Ada@Example.com ","plan":"gold","name":"Ada L."},"context":{"externalIds":[{"id":"crm-77","type":"crm_id","collection":"users","encoding":"none"}]},"messageId":"c1","timestamp":"2026-10-01T00:00:00Z"}`)
	s.waitProcessed()
	post(webKey, "identify", `{"anonymousId":"anon-1","userId":"u-1","traits":{"email":"ada@example.com","name":"Ada Lovelace"},"messageId":"w2","timestamp":"2026-11-01T10:05:00Z"}`)
	// An older CRM update arriving late must not overwrite a newer value.
	post(crmKey, "identify", `{"anonymousId":"crm-row-77","traits":{"name":"Ada (old)"},"context":{"externalIds":[{"id":"crm-77","type":"crm_id"}]},"messageId":"c2","timestamp":"2026-09-01T00:00:00Z"}`)
	s.waitProcessed()

	var ids []string
	for _, ref := range []string{"user_id:u-1", "email:ADA@example.com", "anonymous_id:anon-1", "crm_id:crm-77"} {
		code, p := s.admin("GET", "/v1/profiles/"+url.PathEscape(ref), nil)
		if code != 200 {
			t.Fatalf("profile %s: %d %v", ref, code, p)
		}
		ids = append(ids, p["id"].(string))
		if p["events"] != 4.0 {
			t.Errorf("profile %s has %v events, want 4", ref, p["events"])
		}
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("identifiers resolve to different profiles: %v", ids)
		}
	}
	code, tr := s.admin("GET", "/v1/profiles/"+ids[0]+"/traits?verbose=true", nil)
	if code != 200 {
		t.Fatal(code, tr)
	}
	traits := tr["traits"].(map[string]any)
	name := traits["name"].(map[string]any)
	if name["value"] != "Ada Lovelace" || name["sourceId"] != webID || name["messageId"] != "w2" {
		t.Errorf("name trait: %v", name)
	}
	if plan := traits["plan"].(map[string]any); plan["value"] != "gold" || plan["messageId"] != "c1" {
		t.Errorf("plan trait: %v", plan)
	}
	code, mg := s.admin("GET", "/v1/profiles/"+ids[0]+"/merges", nil)
	if code != 200 || len(mg["data"].([]any)) != 1 {
		t.Fatalf("merges: %d %v", code, mg)
	}
	m := mg["data"].([]any)[0].(map[string]any)
	// The CRM profile owns the e-mail (priority over anonymous_id), so it
	// survives and absorbs the web visitor's profile through anon-1.
	if m["messageId"] != "w2" || m["identifierType"] != "anonymous_id" || m["identifier"] != "anon-1" || m["survivor"] != ids[0] {
		t.Errorf("merge evidence: %v", m)
	}
	code, idn := s.admin("GET", "/v1/profiles/"+ids[0]+"/identities?limit=2", nil)
	if code != 200 || len(idn["data"].([]any)) != 2 || idn["cursor"].(map[string]any)["has_more"] != true {
		t.Fatalf("identities page 1: %d %v", code, idn)
	}
	next := idn["cursor"].(map[string]any)["next"].(string)
	// Five identifiers: anon-1, crm-row-77, crm_id, e-mail, u-1.
	_, idn2 := s.admin("GET", "/v1/profiles/"+ids[0]+"/identities?limit=2&next="+next, nil)
	if n := len(idn2["data"].([]any)); n != 2 || idn2["cursor"].(map[string]any)["has_more"] != true {
		t.Fatalf("identities page 2: %v", idn2)
	}
	next = idn2["cursor"].(map[string]any)["next"].(string)
	_, idn3 := s.admin("GET", "/v1/profiles/"+ids[0]+"/identities?limit=2&next="+next, nil)
	if n := len(idn3["data"].([]any)); n != 1 || idn3["cursor"].(map[string]any)["has_more"] != false {
		t.Fatalf("identities page 3: %v", idn3)
	}
	// Events: newest first, paginated with a cursor, filterable.
	var got []string
	next = ""
	for {
		_, ev := s.admin("GET", "/v1/profiles/"+ids[0]+"/events?limit=3&next="+next, nil)
		for _, e := range ev["data"].([]any) {
			got = append(got, e.(map[string]any)["messageId"].(string))
		}
		c := ev["cursor"].(map[string]any)
		if c["has_more"] != true {
			break
		}
		next = c["next"].(string)
	}
	if strings.Join(got, ",") != "w2,w1,c1,c2" {
		t.Errorf("events order %v, want w2,w1,c1,c2", got)
	}
	_, ev := s.admin("GET", "/v1/profiles/"+ids[0]+"/events?type=page", nil)
	if d := ev["data"].([]any); len(d) != 1 || d[0].(map[string]any)["messageId"] != "w1" {
		t.Errorf("type filter: %v", d)
	}
	_, ev = s.admin("GET", "/v1/profiles/"+ids[0]+"/events?start=2026-10-15T00:00:00Z&end=2026-11-01T10:01:00Z", nil)
	if d := ev["data"].([]any); len(d) != 1 {
		t.Errorf("time filter: %v", d)
	}
	if code, e := s.admin("GET", "/v1/profiles/email:nobody@example.com", nil); code != 404 || e["error"].(map[string]any)["code"] != kith.ENOTFOUND {
		t.Errorf("unknown profile: %d %v", code, e)
	}
	if code, _ := s.admin("GET", "/v1/profiles/"+ids[0]+"/events?next=garbage", nil); code != 400 {
		t.Errorf("bad cursor: %d", code)
	}
}

func TestOverloadAnswers429(t *testing.T) {
	s := startStackWith(t, t.TempDir(), time.Now, stackOptions{maxBacklog: 15, noIndexer: true})
	s.createSource("web")
	batchOf := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = `{"type":"track","userId":"u","event":"e"}`
		}
		return `{"batch":[` + strings.Join(items, ",") + `]}`
	}
	waitBacklog := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, h := s.request("GET", "/healthz", nil, nil)
			if h["backlog"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("backlog %v, want %v", h["backlog"], want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i, want := range []float64{10, 20} {
		if code, out := s.send("batch", batchOf(10)); code != 200 {
			t.Fatalf("batch %d: %d %v", i, code, out)
		}
		waitBacklog(want)
	}
	// 20 unprocessed events > 15: refused, with a hint when to retry.
	req, _ := http.NewRequest("POST", s.srv.URL+"/v1/batch", strings.NewReader(batchOf(1)))
	req.SetBasicAuth(s.writeKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("overloaded: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	_, st := s.admin("GET", "/v1/stats", nil)
	if st["refused"].(map[string]any)["backlog"] != 1.0 || st["totals"].(map[string]any)["accepted"] != 20.0 {
		t.Fatalf("refusal not counted, or counted as an event: %v", st)
	}
}
