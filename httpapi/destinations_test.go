package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// hookSecret is a valid Standard Webhooks signing secret (32 bytes).
const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="

// fixedDestination is the request of the fixed interface.
func fixedDestination(name, hookURL string) string {
	return `{"name":"` + name + `","type":"webhook","config":{"url":"` + hookURL + `","secret":"` + hookSecret + `"},` +
		`"events":true,"audiences":["buyers"],"consent":["Marketing"]}`
}

// bearer is the header of a request made with token.
func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// adminRaw sends a request with the admin token and returns the status
// and the raw answer.
func (s *stack) adminRaw(method, path, body string) (int, []byte) {
	s.t.Helper()
	code, _, data := openapiCall(s.t, s, method, path, []byte(body), bearer(adminToken))
	return code, data
}

// tokenWith creates a token with the given scopes and returns its secret.
func (s *stack) tokenWith(name string, scopes ...string) string {
	s.t.Helper()
	code, out := s.admin("POST", "/v1/tokens", map[string]any{"name": name, "scopes": scopes})
	if code != http.StatusCreated {
		s.t.Fatalf("create token %s: %d %v", name, code, out)
	}
	return out["token"].(string)
}

// conform checks a JSON answer against a schema of the OpenAPI document.
func conform(t *testing.T, schema string, body []byte) {
	t.Helper()
	_, doc := openapiLoad(t)
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v: %s", schema, err, body)
	}
	for _, e := range openapiConform(doc, map[string]any{"$ref": "#/components/schemas/" + schema}, v, schema) {
		t.Error(e)
	}
}

// The fixed interface: the request answers 201, the destination
// starts at the end of the log (no history), and GET shows its counts,
// pending growing with the events that arrive after it.
func TestDestinationFixedInterface(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("web")
	for i := range 3 {
		if code, out := s.send("track", fmt.Sprintf(`{"userId":"u%d","event":"Signed Up"}`, i)); code != 200 {
			t.Fatalf("track: %d %v", code, out)
		}
	}
	s.waitProcessed()

	code, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook"))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	conform(t, "Destination", body)
	var created map[string]any
	json.Unmarshal(body, &created)
	if created["name"] != "hook" || created["type"] != "webhook" || !strings.HasPrefix(fmt.Sprint(created["id"]), "dst_") ||
		fmt.Sprint(created["audiences"]) != "[buyers]" || fmt.Sprint(created["consent"]) != "[Marketing]" || created["paused"] != false {
		t.Errorf("created: %s", body)
	}
	if ev, ok := created["events"].(map[string]any); !ok || len(ev) != 0 {
		t.Errorf(`"events":true should be stored as the filter that selects every event, {}: %v`, created["events"])
	}
	if p := created["progress"].(map[string]any); p["logSeq"] != 3.0 {
		t.Errorf("a new destination starts at the log head (3), not at %v", p["logSeq"])
	}
	if _, ok := created["secret"]; ok {
		t.Errorf("a secret given is not echoed back: %s", body)
	}

	for i := range 2 {
		s.send("track", fmt.Sprintf(`{"userId":"u%d","event":"Ordered"}`, i))
	}
	code, body = s.adminRaw("GET", "/v1/destinations/hook", "")
	if code != http.StatusOK {
		t.Fatalf("get: %d %s", code, body)
	}
	conform(t, "Destination", body)
	var got map[string]any
	json.Unmarshal(body, &got)
	want := map[string]float64{"delivered": 0, "pending": 2, "retrying": 0, "dead_lettered": 0, "filtered": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if b, _ := got["behindSeconds"].(float64); b < 0 || b > 60 {
		t.Errorf("behindSeconds = %v", got["behindSeconds"])
	}

	code, body = s.adminRaw("GET", "/v1/destinations", "")
	if code != http.StatusOK {
		t.Fatalf("list: %d %s", code, body)
	}
	conform(t, "DestinationList", body)
	var list struct {
		Data []map[string]any `json:"data"`
	}
	json.Unmarshal(body, &list)
	if len(list.Data) != 1 || list.Data[0]["name"] != "hook" || list.Data[0]["pending"] != 2.0 {
		t.Errorf("list: %s", body)
	}

	code, body = s.adminRaw("GET", "/v1/stats", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"destinations":[{"id":"`+created["id"].(string)+`","name":"hook","type":"webhook","paused":false,"delivered":0,"pending":2`) {
		t.Errorf("stats do not list the destination's counts: %d %s", code, body)
	}
	code, body = s.adminRaw("GET", "/metrics", "")
	for _, line := range []string{`kith_destination_delivered_total{destination="hook"} 0`, `kith_destination_pending{destination="hook"} 2`,
		`kith_destination_retrying{destination="hook"} 0`, `kith_destination_dead_lettered{destination="hook"} 0`} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics (%d) lacks %s", code, line)
		}
	}

	// Admin writes are audited, with the name the body gave.
	s.api.SyncAudit()
	_, out := s.admin("GET", "/v1/audit?action="+url.QueryEscape("POST /v1/destinations"), nil)
	if entries, _ := out["data"].([]any); len(entries) != 1 || entries[0].(map[string]any)["target"] != "name=hook" {
		t.Errorf("audit: %v", out)
	}
}

// Secrets in a destination's config are shown nowhere after creation:
// not in the creation's answer, GET, the list or the stats. A webhook
// created without a secret gets one, shown once.
func TestDestinationSecretsNeverServedBack(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	tests := []struct {
		name    string
		body    string
		secrets []string
		kept    []string // plain values and header names that stay
	}{
		{
			name:    "webhook",
			body:    `{"name":"hook","type":"webhook","events":true,"config":{"url":"https://example.com/in","secret":"` + hookSecret + `","headers":{"Authorization":"Bearer tok-123","X-Api-Key":"key-456"},"batch":10}}`,
			secrets: []string{hookSecret, "tok-123", "key-456"},
			kept:    []string{"https://example.com/in", "Authorization", "X-Api-Key", `"batch":10`},
		},
		{
			name:    "segment",
			body:    `{"name":"seg","type":"segment","events":true,"config":{"endpoint":"https://api.segment.io","writeKey":"wk-segment-789"}}`,
			secrets: []string{"wk-segment-789"},
			kept:    []string{"https://api.segment.io"},
		},
		{
			name: "webhook with a generated secret",
			body: `{"name":"gen","type":"webhook","events":true,"config":{"url":"https://example.com/gen"}}`,
			kept: []string{"https://example.com/gen"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			code, body := s.adminRaw("POST", "/v1/destinations", tc.body)
			if code != http.StatusCreated {
				t.Fatalf("create: %d %s", code, body)
			}
			var created struct {
				Name   string                     `json:"name"`
				Secret string                     `json:"secret"`
				Config map[string]json.RawMessage `json:"config"`
			}
			json.Unmarshal(body, &created)
			secrets := tc.secrets
			if tc.secrets == nil {
				// Generated: shown once, in this answer only.
				if !strings.HasPrefix(created.Secret, "whsec_") {
					t.Fatalf("no secret generated: %s", body)
				}
				secrets = []string{created.Secret}
				body = []byte(strings.Replace(string(body), `"secret":"`+created.Secret+`"`, "", 1))
			} else if created.Secret != "" {
				t.Fatalf("a given secret is echoed back: %s", body)
			}
			if string(created.Config["secret"]) == "" && string(created.Config["writeKey"]) == "" {
				t.Errorf("the secret field should stay, its value replaced: %s", body)
			}
			_, get := s.adminRaw("GET", "/v1/destinations/"+created.Name, "")
			_, list := s.adminRaw("GET", "/v1/destinations", "")
			_, stats := s.adminRaw("GET", "/v1/stats", "")
			for what, answer := range map[string][]byte{"create": body, "get": get, "list": list, "stats": stats} {
				for _, secret := range secrets {
					if strings.Contains(string(answer), secret) {
						t.Errorf("%s serves the secret %q back: %s", what, secret, answer)
					}
				}
			}
			for _, v := range tc.kept {
				if !strings.Contains(string(get), v) {
					t.Errorf("GET lost %s: %s", v, get)
				}
			}
		})
	}
	s.t = t
}

// Every invalid request is refused with 400 naming the field, and stores
// nothing.
func TestDestinationValidation(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	tests := []struct {
		name, body, field string
	}{
		{"no name", `{"type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"}}`, "name"},
		{"long name", `{"name":"` + strings.Repeat("n", 101) + `","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"}}`, "name"},
		{"NUL in the name", `{"name":"a\u0000b","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"}}`, "name"},
		{"no type", `{"name":"d","config":{"url":"http://e.com"}}`, "type"},
		{"unknown type", `{"name":"d","type":"ftp","config":{"url":"http://e.com"}}`, "type"},
		{"no config", `{"name":"d","type":"segment"}`, "config"},
		{"config not an object", `{"name":"d","type":"webhook","config":"http://e.com"}`, "config"},
		{"scheme", `{"name":"d","type":"webhook","config":{"url":"ftp://e.com/x","secret":"` + hookSecret + `"}}`, "config.url"},
		{"no url", `{"name":"d","type":"webhook","config":{"secret":"` + hookSecret + `"}}`, "config.url"},
		{"bad secret", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"s3cret"}}`, "config.secret"},
		{"unknown config field", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `","retries":3}}`, "config.retries"},
		{"segment without write key", `{"name":"d","type":"segment","config":{"endpoint":"https://api.segment.io"}}`, "config.writeKey"},
		{"events a string", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"events":"all"}`, "events"},
		{"events filter types a string", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"events":{"types":"track"}}`, "events.types"},
		{"events filter unknown member", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"events":{"kinds":["track"]}}`, "events.kinds"},
		{"audienceAs", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"audiences":["a"],"audienceAs":"email"}`, "audienceAs"},
		{"empty audience key", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"audiences":[""]}`, "audiences[0]"},
		{"empty consent category", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"consent":["Marketing",""]}`, "consent[1]"},
		{"negative rate limit", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"rateLimit":-1}`, "rateLimit"},
		{"unknown member", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"filters":true}`, "filters"},
		{"traits not a list", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"traits":true}`, "traits"},
		{"empty trait key", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"traits":["ltv",""]}`, "traits[1]"},
		{"mapping of the messageId", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"mapping":{"drop":["messageId"]}}`, "mapping.drop[0]"},
		{"mapping set not JSON", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"mapping":{"rename":{"a":""}}}`, "mapping.rename.a"},
		{"mapping unknown member", `{"name":"d","type":"webhook","config":{"url":"http://e.com","secret":"` + hookSecret + `"},"mapping":{"move":{}}}`, "move"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			code, out := s.request("POST", "/v1/destinations", []byte(tc.body), bearer(adminToken))
			e, _ := out["error"].(map[string]any)
			if code != http.StatusBadRequest || e["code"] != kith.EINVALID {
				t.Fatalf("%d %v, want 400 invalid", code, out)
			}
			if msg, _ := e["message"].(string); !strings.Contains(msg, tc.field) {
				t.Errorf("message %q does not name %s", msg, tc.field)
			}
		})
	}
	s.t = t
	if _, out := s.admin("GET", "/v1/destinations", nil); len(out["data"].([]any)) != 0 {
		t.Fatalf("a refused destination was stored: %v", out)
	}
}

// A name is taken once: the second create answers 409 naming it.
func TestDestinationNameTaken(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	if code, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/a")); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	code, out := s.request("POST", "/v1/destinations", []byte(fixedDestination("hook", "http://127.0.0.1:1/b")), bearer(adminToken))
	e, _ := out["error"].(map[string]any)
	if code != http.StatusConflict || e["code"] != kith.ECONFLICT || !strings.Contains(fmt.Sprint(e["message"]), `"hook"`) {
		t.Fatalf("taken name: %d %v", code, out)
	}
	_, got := s.admin("GET", "/v1/destinations/hook", nil)
	if !strings.Contains(fmt.Sprint(got["config"]), "127.0.0.1:1/a") {
		t.Fatalf("the first destination changed: %v", got)
	}
}

// Pause and resume round trip; both are idempotent, and name a missing
// destination with 404.
func TestDestinationPauseResume(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook"))
	operator := s.tokenWith("operator", kith.ScopeSourcesWrite, kith.ScopeSourcesRead)
	steps := []struct {
		path   string
		paused bool
	}{
		{"/v1/destinations/hook/pause", true},
		{"/v1/destinations/hook/pause", true},
		{"/v1/destinations/hook/resume", false},
		{"/v1/destinations/hook/resume", false},
		{"/v1/destinations/hook/pause", true},
	}
	for _, st := range steps {
		code, _, body := openapiCall(t, s, "POST", st.path, nil, bearer(operator))
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", st.path, code, body)
		}
		conform(t, "Destination", body)
		_, got := s.request("GET", "/v1/destinations/hook", nil, bearer(operator))
		if got["paused"] != st.paused {
			t.Fatalf("after %s: paused = %v", st.path, got["paused"])
		}
	}
	if code, _ := s.admin("POST", "/v1/destinations/nope/resume", nil); code != http.StatusNotFound {
		t.Fatalf("resume a missing destination: %d", code)
	}
	// Replaying goes through the delivery engine, which this stack does
	// not run.
	if code, out := s.admin("POST", "/v1/destinations/hook/replay", nil); code != http.StatusNotFound || !strings.Contains(fmt.Sprint(out), "not available") {
		t.Fatalf("replay without the engine: %d %v", code, out)
	}
}

// Retrying and dead-lettered deliveries are listed with their last status
// and error, their messages masked without pii:read; a replay puts the
// dead letters back to retrying, due now, keeping their ids. (The
// destination is paused, so that no worker retries them meanwhile.)
func TestDestinationDeliveriesAndReplay(t *testing.T) {
	now := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	s := startStackWith(t, t.TempDir(), func() time.Time { return now }, stackOptions{activation: true})
	_, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook"))
	var d kith.Destination
	json.Unmarshal(body, &d)
	s.admin("POST", "/v1/destinations/hook/pause", nil)
	ctx := context.Background()
	p, err := s.store.DestinationProgress(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	first := now.Add(-time.Hour)
	msg := json.RawMessage(`{"type":"identify","userId":"u1","messageId":"m1","traits":{"email":"ada@example.com","plan":"pro"}}`)
	deliveries := []kith.Delivery{
		{ID: "dlv_a", Key: "p_1", Seq: 4, Kind: "event", Body: msg, Attempts: 1, FirstAt: first, LastStatus: 400, LastError: "HTTP 400 Bad Request: no", Dead: true},
		{ID: "dlv_b", Key: "p_2", Seq: 5, Kind: "event", Body: msg, Attempts: 3, FirstAt: first, NextAt: now.Add(time.Minute), LastStatus: 503, LastError: "HTTP 503 Service Unavailable"},
		{ID: "dlv_c", Key: "p_3", Seq: 6, Kind: "event", Body: msg, Attempts: 9, FirstAt: first, LastStatus: 410, LastError: "HTTP 410 Gone", Dead: true},
	}
	if err := s.store.AdvanceDestination(ctx, d.ID, kith.DestinationUpdate{Progress: p, Put: deliveries}); err != nil {
		t.Fatal(err)
	}
	_, got := s.admin("GET", "/v1/destinations/hook", nil)
	if got["retrying"] != 1.0 || got["dead_lettered"] != 2.0 {
		t.Fatalf("counts before the replay: retrying %v, dead_lettered %v", got["retrying"], got["dead_lettered"])
	}

	reader := s.tokenWith("reader", kith.ScopeProfilesRead)
	list := func(token, query string) (int, []kith.Delivery, map[string]any) {
		t.Helper()
		code, _, body := openapiCall(t, s, "GET", "/v1/destinations/hook/deliveries"+query, nil, bearer(token))
		var page struct {
			Data   []kith.Delivery `json:"data"`
			Cursor map[string]any  `json:"cursor"`
		}
		if code == http.StatusOK {
			conform(t, "DeliveryPage", body)
			json.Unmarshal(body, &page)
		}
		return code, page.Data, page.Cursor
	}
	ids := func(ds []kith.Delivery) string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name, token, query string
		code               int
		ids                string
		masked             bool
	}{
		{"dead letters in full", adminToken, "?dead=true", 200, "dlv_a,dlv_c", false},
		{"dead letters masked", reader, "?dead=true", 200, "dlv_a,dlv_c", true},
		{"retrying by default", reader, "", 200, "dlv_b", true},
		{"a page", adminToken, "?dead=true&limit=1", 200, "dlv_a", false},
		{"the next page", adminToken, "?dead=true&limit=1&after=dlv_a", 200, "dlv_c", false},
		{"dead must be a boolean", adminToken, "?dead=maybe", 400, "", false},
		{"limit in range", adminToken, "?limit=0", 400, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, ds, _ := list(tc.token, tc.query)
			if code != tc.code || ids(ds) != tc.ids {
				t.Fatalf("%d %s, want %d %s", code, ids(ds), tc.code, tc.ids)
			}
			for _, d := range ds {
				if strings.Contains(string(d.Body), "ada@example.com") == tc.masked || !strings.Contains(string(d.Body), `"plan":"pro"`) {
					t.Errorf("%s: body %s (masked: %v)", d.ID, d.Body, tc.masked)
				}
				if d.LastStatus == 0 || d.LastError == "" {
					t.Errorf("%s: no last status or error: %+v", d.ID, d)
				}
			}
		})
	}
	if _, _, c := list(adminToken, "?dead=true&limit=1"); c["has_more"] != true || c["next"] != "dlv_a" {
		t.Errorf("cursor of a full page: %v", c)
	}
	if code, _, _ := list(s.tokenWith("stats", kith.ScopeStatsRead), "?dead=true"); code != http.StatusForbidden {
		t.Errorf("deliveries without profiles:read: %d", code)
	}

	operator := bearer(s.tokenWith("operator", kith.ScopeSourcesWrite))
	code, _, body := openapiCall(t, s, "POST", "/v1/destinations/hook/replay", []byte(`{"ids":["dlv_c"]}`), operator)
	if code != http.StatusOK || string(body) != `{"replayed":1}`+"\n" {
		t.Fatalf("replay one: %d %s", code, body)
	}
	conform(t, "ReplayResult", body)
	if _, ds, _ := list(adminToken, "?dead=true"); ids(ds) != "dlv_a" {
		t.Fatalf("dead letters left after replaying dlv_c: %s", ids(ds))
	}
	code, _, body = openapiCall(t, s, "POST", "/v1/destinations/hook/replay", nil, operator)
	if code != http.StatusOK || string(body) != `{"replayed":1}`+"\n" {
		t.Fatalf("replay: %d %s", code, body)
	}
	if _, ds, _ := list(adminToken, "?dead=true"); len(ds) != 0 {
		t.Fatalf("dead letters left after the replay: %s", ids(ds))
	}
	_, ds, _ := list(adminToken, "?dead=false")
	if ids(ds) != "dlv_a,dlv_b,dlv_c" {
		t.Fatalf("retrying after the replay: %s", ids(ds))
	}
	for _, d := range ds {
		if d.ID == "dlv_b" {
			if d.Attempts != 3 || !d.NextAt.Equal(now.Add(time.Minute)) {
				t.Errorf("a retrying delivery changed: %+v", d)
			}
			continue
		}
		if d.Dead || !d.NextAt.Equal(now) || d.Attempts == 0 || !d.FirstAt.Equal(first) || d.LastStatus == 0 || string(d.Body) != string(msg) {
			t.Errorf("replayed %s: %+v", d.ID, d)
		}
	}
	_, got = s.admin("GET", "/v1/destinations/hook", nil)
	if got["retrying"] != 3.0 || got["dead_lettered"] != 0.0 {
		t.Fatalf("counts after the replay: retrying %v, dead_lettered %v", got["retrying"], got["dead_lettered"])
	}
	if code, out := s.admin("POST", "/v1/destinations/hook/replay", nil); code != http.StatusOK || out["replayed"] != 0.0 {
		t.Fatalf("a second replay: %d %v", code, out)
	}
	if code, _ := s.admin("GET", "/v1/destinations/nope/deliveries", nil); code != http.StatusNotFound {
		t.Fatalf("deliveries of a missing destination: %d", code)
	}
}

// Deleting a destination answers 204, then 404; its name can be used
// again, for a destination that starts afresh.
func TestDestinationDelete(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	_, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook"))
	var d kith.Destination
	json.Unmarshal(body, &d)
	p, _ := s.store.DestinationProgress(context.Background(), d.ID)
	if err := s.store.AdvanceDestination(context.Background(), d.ID, kith.DestinationUpdate{Progress: p, Delivered: 7,
		Put: []kith.Delivery{{ID: "dlv_x", Key: "p", Seq: 1, Kind: "event", Body: json.RawMessage(`{}`), Dead: true}}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		method, path string
		code         int
	}{
		{"DELETE", "/v1/destinations/hook", http.StatusNoContent},
		{"GET", "/v1/destinations/hook", http.StatusNotFound},
		{"DELETE", "/v1/destinations/hook", http.StatusNotFound},
		{"GET", "/v1/destinations/hook/deliveries?dead=true", http.StatusNotFound},
	}
	for _, st := range steps {
		if code, out := s.admin(st.method, st.path, nil); code != st.code {
			t.Fatalf("%s %s: %d %v, want %d", st.method, st.path, code, out, st.code)
		}
	}
	if code, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook")); code != http.StatusCreated ||
		!strings.Contains(string(body), `"delivered":0`) || !strings.Contains(string(body), `"dead_lettered":0`) {
		t.Fatalf("create again: %d %s", code, body)
	}
	if code, _ := s.request("DELETE", "/v1/destinations/hook", nil, bearer(s.tokenWith("operator", kith.ScopeSourcesWrite))); code != http.StatusForbidden {
		t.Fatalf("delete with sources:write: %d, want 403 (deleting takes admin)", code)
	}
}

// A test message goes to a real receiver on loopback through the type's
// sender, and the answer says what delivery would make of the reply.
func TestDestinationTestMessage(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	var mu sync.Mutex
	status := http.StatusOK
	var got []*http.Request
	var bodies []string
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, string(b))
		code := status
		mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprint(w, "receiver says hi")
	}))
	defer rc.Close()
	if code, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", rc.URL+"/in")); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	tests := []struct {
		status  int
		ok      bool
		outcome string
	}{
		{http.StatusOK, true, "delivered"},
		{http.StatusServiceUnavailable, false, "retry"},
		{http.StatusBadRequest, false, "dead"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			mu.Lock()
			status = tc.status
			mu.Unlock()
			code, _, body := openapiCall(t, s, "POST", "/v1/destinations/hook/test", nil, bearer(adminToken))
			if code != http.StatusOK {
				t.Fatalf("test: %d %s", code, body)
			}
			conform(t, "DestinationTestResult", body)
			var res struct {
				OK        bool   `json:"ok"`
				MessageID string `json:"messageId"`
				Status    int    `json:"status"`
				Outcome   string `json:"outcome"`
				Error     string `json:"error"`
			}
			json.Unmarshal(body, &res)
			if res.OK != tc.ok || res.Status != tc.status || res.Outcome != tc.outcome || tc.ok != (res.Error == "") {
				t.Fatalf("result %s", body)
			}
			mu.Lock()
			r, b := got[len(got)-1], bodies[len(bodies)-1]
			mu.Unlock()
			if r.URL.Path != "/in" || r.Header.Get("webhook-id") != res.MessageID || r.Header.Get("webhook-signature") == "" ||
				!strings.Contains(b, `"event":"Kith Test Message"`) || !strings.Contains(b, `"messageId":"`+res.MessageID+`"`) {
				t.Fatalf("the receiver got %s %v %s", r.URL.Path, r.Header, b)
			}
		})
	}
	if code, _ := s.admin("POST", "/v1/destinations/nope/test", nil); code != http.StatusNotFound {
		t.Fatalf("test a missing destination: %d", code)
	}
}

// A destination subscribed to audiences starts at the end of the change
// stream, with the audience's current members to send first (its first
// sync); what changes after it is pending too.
func TestDestinationStartsAtTheChangeStreamHead(t *testing.T) {
	s := startStackWith(t, t.TempDir(), time.Now, stackOptions{audiences: true})
	s.createSource("web")
	if code, out := s.admin("POST", "/v1/audiences", map[string]string{"key": "buyers", "definition": `count(event "Order Completed") >= 1`}); code != http.StatusCreated {
		t.Fatalf("audience: %d %v", code, out)
	}
	order := func(users ...int) {
		t.Helper()
		var items []string
		for _, u := range users {
			items = append(items, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Order Completed"}`, u))
		}
		if code, out := s.send("batch", `{"batch":[`+strings.Join(items, ",")+`]}`); code != 200 {
			t.Fatalf("batch: %d %v", code, out)
		}
	}
	// changes waits until the change stream holds n changes and returns
	// the last one's seq.
	changes := func(n int) float64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, out := s.admin("GET", "/v1/audience-changes?limit=1000", nil)
			if data, _ := out["data"].([]any); len(data) == n {
				return data[n-1].(map[string]any)["seq"].(float64)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the change stream never held %d changes: %v", n, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	order(1, 2, 3, 4, 5)
	head := changes(5)

	code, body := s.adminRaw("POST", "/v1/destinations", fixedDestination("hook", "http://127.0.0.1:1/hook"))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct {
		Progress kith.DestinationProgress `json:"progress"`
		Pending  int64                    `json:"pending"`
	}
	json.Unmarshal(body, &created)
	if float64(created.Progress.ChangeSeq) != head || created.Progress.Sync != 1 || created.Pending != 5 {
		t.Fatalf("a new destination starts at change %d (sync %d) with %d pending, want %v, 1 and the 5 buyers", created.Progress.ChangeSeq, created.Progress.Sync, created.Pending, head)
	}
	order(6, 7)
	changes(7)
	s.waitProcessed()
	_, got := s.admin("GET", "/v1/destinations/hook", nil)
	// Two events and two audience entries arrived after it; seven buyers
	// to send first (no engine runs here).
	if got["pending"] != 4.0+7 {
		t.Fatalf("pending = %v, want 11", got["pending"])
	}
}

// startActivation starts the delivery engine over the stack's store,
// following its indexer, on the stack's clock.
func startActivation(t *testing.T, store *sqlite.DB, secret []byte, rules *identity.Current, ix *pipeline.Indexer, now func() time.Time) *activation.Engine {
	t.Helper()
	eng, err := activation.New(activation.Config{
		Store: store, Attribution: pipeline.NewAttribution(rules.Load, identity.NewKeyer(secret), nil, "activation"),
		Cursor: ix.Cursor, Poll: 10 * time.Millisecond, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return eng
}

// With the delivery engine running, a destination created through the
// API receives the events accepted after it, signed, and GET shows them
// delivered and the worker's latest requests; one that lists a consent
// category the person has not granted counts the event as filtered. A
// paused destination's worker stops, and resumes where it stopped.
func TestDestinationDeliversThroughTheEngine(t *testing.T) {
	s := startStackWith(t, t.TempDir(), time.Now, stackOptions{activation: true})
	s.createSource("web")
	s.send("track", `{"userId":"u0","event":"Before"}`)
	s.waitProcessed()
	var mu sync.Mutex
	got := map[string][]string{} // by path
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("webhook-signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], string(b))
		mu.Unlock()
	}))
	defer rc.Close()
	received := func(path string) []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got[path]...)
	}
	open := strings.Replace(fixedDestination("hook", rc.URL+"/hook"), `,"consent":["Marketing"]`, "", 1)
	for _, body := range []string{open, fixedDestination("gated", rc.URL+"/gated")} {
		if code, out := s.request("POST", "/v1/destinations", []byte(body), bearer(adminToken)); code != http.StatusCreated {
			t.Fatalf("create: %d %v", code, out)
		}
	}
	// wait waits until GET shows the destination has handled everything,
	// with n delivered, and returns it.
	wait := func(name string, n float64) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, v := s.admin("GET", "/v1/destinations/"+name, nil)
			if v["delivered"] == n && v["pending"] == 0.0 {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never had %v delivered: %v (receiver got %q)", name, n, v, received("/"+name))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.send("track", `{"userId":"u1","event":"After","messageId":"m-after"}`)
	v := wait("hook", 1)
	if r := received("/hook"); len(r) != 1 || !strings.Contains(r[0], `"messageId":"m-after"`) {
		t.Fatalf("the receiver got %q: only the event after the destination's creation, with its messageId", r)
	}
	if w, _ := v["worker"].(map[string]any); w["running"] != true || len(w["attempts"].([]any)) == 0 {
		t.Fatalf("worker: %v", w)
	}
	if v := wait("gated", 0); v["filtered"] != 1.0 || v["filteredBy"].(map[string]any)["consent"] != 1.0 || len(received("/gated")) != 0 {
		t.Fatalf("without Marketing consent: %v, receiver got %q", v, received("/gated"))
	}

	s.admin("POST", "/v1/destinations/hook/pause", nil)
	if _, v := s.admin("GET", "/v1/destinations/hook", nil); v["worker"].(map[string]any)["running"] != false {
		t.Fatalf("a paused destination's worker runs: %v", v["worker"])
	}
	s.send("track", `{"userId":"u2","event":"While paused","messageId":"m-paused"}`)
	s.waitProcessed()
	if _, v := s.admin("GET", "/v1/destinations/hook", nil); v["pending"] != 1.0 || len(received("/hook")) != 1 {
		t.Fatalf("while paused: pending %v, received %d", v["pending"], len(received("/hook")))
	}
	s.admin("POST", "/v1/destinations/hook/resume", nil)
	wait("hook", 2)
	if r := received("/hook"); len(r) != 2 || !strings.Contains(r[1], `"messageId":"m-paused"`) {
		t.Fatalf("after resuming, the receiver got %q", r)
	}
}
