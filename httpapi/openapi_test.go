package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// openapiRoutes are the routes registered in server.go routes(); every one
// must be documented, and the document must describe no others.
var openapiRoutes = []struct{ method, path string }{
	{"POST", "/v1/identify"},
	{"POST", "/v1/track"},
	{"POST", "/v1/page"},
	{"POST", "/v1/screen"},
	{"POST", "/v1/group"},
	{"POST", "/v1/alias"},
	{"POST", "/v1/batch"},
	{"GET", "/healthz"},
	{"GET", "/metrics"},
	{"GET", "/openapi.json"},
	{"POST", "/v1/sources"},
	{"GET", "/v1/sources"},
	{"PATCH", "/v1/sources/{id}"},
	{"POST", "/v1/tokens"},
	{"GET", "/v1/tokens"},
	{"DELETE", "/v1/tokens/{id}"},
	{"GET", "/v1/audit"},
	{"POST", "/v1/privacy/erasures"},
	{"GET", "/v1/privacy/erasures"},
	{"GET", "/v1/privacy/erasures/{id}"},
	{"GET", "/v1/privacy/profiles/{ref}/export"},
	{"GET", "/v1/profiles/{ref}/consent"},
	{"GET", "/v1/privacy/retention"},
	{"POST", "/v1/privacy/retention/sweeps"},
	{"PUT", "/v1/profiles/{ref}/consent"},
	{"GET", "/v1/stats"},
	{"GET", "/v1/profiles/{ref}"},
	{"GET", "/v1/profiles/{ref}/traits"},
	{"GET", "/v1/profiles/{ref}/identities"},
	{"GET", "/v1/profiles/{ref}/events"},
	{"GET", "/v1/profiles/{ref}/merges"},
	{"POST", "/v1/insights/runs"},
	{"GET", "/v1/insights/runs"},
	{"GET", "/v1/insights/runs/{id}"},
	{"GET", "/v1/insights/runs/{id}/charts/{name}"},
	{"POST", "/v1/insights/validations"},
	{"GET", "/v1/identity/rules"},
	{"PUT", "/v1/identity/rules"},
	{"POST", "/v1/profiles/{ref}/unmerge"},
	{"POST", "/v1/profiles/{ref}/merge"},
	{"POST", "/v1/match/runs"},
	{"POST", "/v1/profiles/{ref}/identities/detach"},
	{"GET", "/v1/review"},
	{"GET", "/v1/review/{id}"},
	{"POST", "/v1/review/{id}"},
	{"GET", "/v1/audiences"},
	{"POST", "/v1/audiences"},
	{"GET", "/v1/audiences/{key}"},
	{"PUT", "/v1/audiences/{key}"},
	{"DELETE", "/v1/audiences/{key}"},
	{"POST", "/v1/audiences/dry-run"},
	{"GET", "/v1/audiences/{key}/members"},
	{"GET", "/v1/audience-changes"},
	{"GET", "/v1/profiles/{ref}/audiences"},
	{"GET", "/v1/computed-traits"},
	{"POST", "/v1/computed-traits"},
	{"GET", "/v1/computed-traits/{key}"},
	{"PUT", "/v1/computed-traits/{key}"},
	{"DELETE", "/v1/computed-traits/{key}"},
	{"POST", "/v1/imports/batch"},
	{"POST", "/v1/imports"},
	{"GET", "/v1/imports/mappings"},
	{"POST", "/v1/dmp/audiences"},
	{"GET", "/v1/profiles/{ref}/dmp-audiences"},
	{"GET", "/v1/audiences/{key}/seeds"},
	{"POST", "/v1/destinations"},
	{"GET", "/v1/destinations"},
	{"GET", "/v1/destinations/{name}"},
	{"DELETE", "/v1/destinations/{name}"},
	{"POST", "/v1/destinations/{name}/pause"},
	{"POST", "/v1/destinations/{name}/resume"},
	{"POST", "/v1/destinations/{name}/replay"},
	{"POST", "/v1/destinations/{name}/test"},
	{"GET", "/v1/destinations/{name}/deliveries"},
}

var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openapiLoad reads and decodes the embedded document's source file.
func openapiLoad(t *testing.T) ([]byte, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return raw, doc
}

// openapiPointer resolves a local reference such as
// "#/components/schemas/Error" against doc.
func openapiPointer(doc map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func TestOpenAPIDocument(t *testing.T) {
	_, doc := openapiLoad(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi = %q, want 3.x", v)
	}
	paths, _ := doc["paths"].(map[string]any)

	want := map[string]bool{}
	for _, r := range openapiRoutes {
		key := strings.ToLower(r.method) + " " + r.path
		want[key] = true
		item, _ := paths[r.path].(map[string]any)
		if _, ok := item[strings.ToLower(r.method)].(map[string]any); !ok {
			t.Errorf("%s %s is not documented", r.method, r.path)
		}
	}

	opIDs := map[string]string{}
	for path, v := range paths {
		item, _ := v.(map[string]any)
		for _, m := range openapiMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			where := strings.ToUpper(m) + " " + path
			if !want[m+" "+path] {
				t.Errorf("%s is documented but not a registered route", where)
			}
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", where)
			} else if prev, dup := opIDs[id]; dup {
				t.Errorf("operationId %q used by %s and %s", id, prev, where)
			}
			opIDs[id] = where
			if resp, _ := op["responses"].(map[string]any); len(resp) == 0 {
				t.Errorf("%s has no responses", where)
			}
		}
	}

	var walk func(v any, at string)
	refs := 0
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				refs++
				if !strings.HasPrefix(r, "#/components/") {
					t.Errorf("%s: $ref %q does not point into components", at, r)
				} else if _, ok := openapiPointer(doc, r); !ok {
					t.Errorf("%s: $ref %q does not resolve", at, r)
				}
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for _, e := range v {
				walk(e, at+"/[]")
			}
		}
	}
	walk(doc, "#")
	if refs == 0 {
		t.Error("the document uses no $ref")
	}

	schemes, _ := openapiPointer(doc, "#/components/securitySchemes")
	for _, name := range []string{"basicAuth", "bearerAuth"} {
		if _, ok := schemes.(map[string]any)[name]; !ok {
			t.Errorf("security scheme %s is missing", name)
		}
	}
}

// TestOpenAPIEnums keeps the documented enums in step with the constants
// the code uses.
func TestOpenAPIEnums(t *testing.T) {
	_, doc := openapiLoad(t)
	for _, tc := range []struct {
		schema string
		want   []string
	}{
		{"ErrorCode", []string{kith.ECONFLICT, kith.EINTERNAL, kith.EINVALID, kith.ENOTFOUND, kith.EUNAUTHORIZED, kith.EFORBIDDEN, kith.ETOOLARGE, kith.EOVERLOADED, kith.EUNAVAILABLE}},
		{"RejectionReason", []string{kith.ReasonInvalidJSON, kith.ReasonMissingType, kith.ReasonUnknownType, kith.ReasonMissingID, kith.ReasonMissingEvent, kith.ReasonMissingPrevious, kith.ReasonMissingGroupID, kith.ReasonEventTooLarge, kith.ReasonMessageIDTooLong, kith.ReasonInvalidField}},
		{"Scope", []string{kith.ScopeAll, kith.ScopeSourcesWrite, kith.ScopeSourcesRead, kith.ScopeProfilesRead, kith.ScopeStatsRead, kith.ScopeInsightsRead, kith.ScopeInsightsWrite, kith.ScopeProfilesWrite, kith.ScopeDefinitionsWrite, kith.ScopeImportsWrite, kith.ScopeAdmin, kith.ScopeSourcesAdmin, kith.ScopePrivacyWrite, kith.ScopeAuditRead, kith.ScopePIIRead}},
	} {
		s, ok := openapiPointer(doc, "#/components/schemas/"+tc.schema)
		if !ok {
			t.Errorf("schema %s is missing", tc.schema)
			continue
		}
		var got []string
		for _, v := range s.(map[string]any)["enum"].([]any) {
			got = append(got, v.(string))
		}
		sort.Strings(got)
		sort.Strings(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s enum = %v, want %v", tc.schema, got, tc.want)
		}
	}
}

// openapiConform reports where v departs from schema: missing required
// properties, undocumented properties (unless additionalProperties is set),
// wrong JSON types and values outside an enum. It covers the subset of
// OpenAPI the document uses.
func openapiConform(doc map[string]any, schema map[string]any, v any, at string) []string {
	if r, ok := schema["$ref"].(string); ok {
		s, ok := openapiPointer(doc, r)
		if !ok {
			return []string{at + ": unresolved " + r}
		}
		return openapiConform(doc, s.(map[string]any), v, at)
	}
	var errs []string
	if all, ok := schema["allOf"].([]any); ok {
		// Merge the parts so that each part's properties are known to the
		// others' additionalProperties checks.
		merged := map[string]any{"type": "object", "properties": map[string]any{}}
		var required []any
		objects := false
		for _, part := range all {
			p := openapiDeref(doc, part.(map[string]any))
			if p["type"] != "object" && p["properties"] == nil {
				errs = append(errs, openapiConform(doc, p, v, at)...)
				continue
			}
			objects = true
			for k, s := range openapiMap(p["properties"]) {
				merged["properties"].(map[string]any)[k] = s
			}
			required = append(required, openapiSlice(p["required"])...)
			if ap, ok := p["additionalProperties"]; ok {
				merged["additionalProperties"] = ap
			}
		}
		if !objects {
			return errs
		}
		merged["required"] = required
		return append(errs, openapiConform(doc, merged, v, at)...)
	}
	for _, kw := range []string{"oneOf", "anyOf"} {
		alts, ok := schema[kw].([]any)
		if !ok {
			continue
		}
		for _, alt := range alts {
			if len(openapiConform(doc, alt.(map[string]any), v, at)) == 0 {
				return nil
			}
		}
		return []string{at + ": matches no " + kw + " alternative"}
	}
	switch typ, _ := schema["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{at + ": not an object"}
		}
		props := openapiMap(schema["properties"])
		for _, r := range openapiSlice(schema["required"]) {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, at+": missing required "+r.(string))
			}
		}
		ap, hasAP := schema["additionalProperties"]
		for k, e := range m {
			if ps, ok := props[k]; ok {
				errs = append(errs, openapiConform(doc, ps.(map[string]any), e, at+"."+k)...)
			} else if aps, ok := ap.(map[string]any); ok {
				errs = append(errs, openapiConform(doc, aps, e, at+"."+k)...)
			} else if !hasAP {
				errs = append(errs, at+": undocumented property "+k)
			} else if ap == false {
				errs = append(errs, at+": property "+k+" not allowed")
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return []string{at + ": not an array"}
		}
		items, _ := schema["items"].(map[string]any)
		for i, e := range a {
			if items != nil {
				errs = append(errs, openapiConform(doc, items, e, at+"["+strconv.Itoa(i)+"]")...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return []string{at + ": not a string"}
		}
	case "integer", "number":
		if _, ok := v.(float64); !ok {
			return []string{at + ": not a number"}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{at + ": not a boolean"}
		}
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, at+": value not in enum")
	}
	return errs
}

func openapiDeref(doc map[string]any, s map[string]any) map[string]any {
	for {
		r, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		t, _ := openapiPointer(doc, r)
		s, _ = t.(map[string]any)
	}
}

func openapiMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func openapiSlice(v any) []any        { s, _ := v.([]any); return s }

// openapiCall sends a request to the stack and returns status, headers and
// the raw body.
func openapiCall(t *testing.T, s *stack, method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func TestOpenAPIServed(t *testing.T) {
	raw, _ := openapiLoad(t)
	s := startStack(t, t.TempDir(), time.Now)
	code, hdr, body := openapiCall(t, s, "GET", "/openapi.json", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", code)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.Equal(body, raw) {
		t.Errorf("served document (%d bytes) differs from openapi.json (%d bytes)", len(body), len(raw))
	}
}

// TestOpenAPIResponsesConform checks real responses against the documented
// schemas, so the document cannot drift from the handlers unnoticed.
func TestOpenAPIResponsesConform(t *testing.T) {
	_, doc := openapiLoad(t)
	s := startStack(t, t.TempDir(), time.Now)
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}

	check := func(method, path string, body string, hdr map[string]string, wantStatus int) any {
		t.Helper()
		code, h, data := openapiCall(t, s, method, path, []byte(body), hdr)
		if code != wantStatus {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, wantStatus, data)
		}
		tmpl := path
		if i := strings.IndexByte(tmpl, '?'); i >= 0 {
			tmpl = tmpl[:i]
		}
		if strings.HasPrefix(tmpl, "/v1/profiles/") {
			rest := strings.TrimPrefix(tmpl, "/v1/profiles/")
			tmpl = "/v1/profiles/{ref}"
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				tmpl += rest[i:]
			}
		} else if strings.HasPrefix(tmpl, "/v1/sources/") {
			tmpl = "/v1/sources/{id}"
		}
		item, _ := doc["paths"].(map[string]any)[tmpl].(map[string]any)
		op, _ := item[strings.ToLower(method)].(map[string]any)
		resp, ok := op["responses"].(map[string]any)[strconv.Itoa(code)].(map[string]any)
		if !ok {
			t.Fatalf("%s %s: status %d is not documented", method, tmpl, code)
		}
		resp = openapiDeref(doc, resp)
		media, ok := openapiMap(resp["content"])["application/json"].(map[string]any)
		if !ok {
			t.Fatalf("%s %s: %d has no application/json content", method, tmpl, code)
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		for _, e := range openapiConform(doc, media["schema"].(map[string]any), v, method+" "+tmpl) {
			t.Error(e)
		}
		return v
	}

	src := check("POST", "/v1/sources", `{"name":"web"}`, bearer, 201).(map[string]any)
	key := src["writeKey"].(string)
	wk := map[string]string{"Authorization": basic(key)}
	check("POST", "/v1/identify", `{"userId":"u1","anonymousId":"a1","traits":{"email":"ann@example.com","plan":"pro"},"context":{"externalIds":[{"id":"c-1","type":"crm_id","collection":"users","encoding":"none"}]}}`, wk, 200)
	check("POST", "/v1/track", `{"anonymousId":"a1","event":"Viewed","properties":{"revenue":3}}`, wk, 200)
	check("POST", "/v1/page", `{"userId":"u2","name":"Home","writeKey":"`+key+`"}`, nil, 200)
	check("POST", "/v1/batch", `{"batch":[{"type":"track","userId":"u1","event":"Bought"},{"type":"alias","userId":"u1"},{"type":"group","userId":"u1","groupId":"g"},{"type":"alias","userId":"u1","previousId":"u2"}],"sentAt":"2026-01-01T00:00:00Z"}`, wk, 200)
	check("POST", "/v1/track", `{"userId":"u1"}`, wk, 400)
	check("POST", "/v1/track", `{"userId":"u1","event":"x"}`, nil, 401)
	check("POST", "/v1/track", `{"userId":"u1","event":"x"}`, map[string]string{"Authorization": basic("wk_nope")}, 401)

	check("GET", "/v1/sources", "", bearer, 200)
	check("POST", "/v1/tokens", `{"name":"ro","scopes":["profiles:read"]}`, bearer, 201)
	check("POST", "/v1/tokens", `{"name":"ro","scopes":["nope"]}`, bearer, 400)
	check("GET", "/v1/stats", "", nil, 401)
	check("GET", "/healthz", "", nil, 200)
	s.waitProcessed()
	check("GET", "/v1/stats", "", bearer, 200)

	ref := url.PathEscape("email:Ann@example.com")
	check("GET", "/v1/profiles/"+ref, "", bearer, 200)
	check("GET", "/v1/profiles/"+ref+"/traits", "", bearer, 200)
	vt := check("GET", "/v1/profiles/"+ref+"/traits?verbose=true", "", bearer, 200).(map[string]any)
	if len(openapiConform(doc, map[string]any{"$ref": "#/components/schemas/VerboseTraits"}, vt, "verbose traits")) != 0 {
		t.Error("verbose traits do not match VerboseTraits")
	}
	check("GET", "/v1/profiles/"+ref+"/identities?limit=2", "", bearer, 200)
	ev := check("GET", "/v1/profiles/"+ref+"/events", "", bearer, 200).(map[string]any)
	if len(openapiSlice(ev["data"])) == 0 {
		t.Error("no events to check against StoredMessage")
	}
	check("GET", "/v1/profiles/"+ref+"/events?limit=0", "", bearer, 400)
	check("GET", "/v1/profiles/"+ref+"/merges", "", bearer, 200)
	check("GET", "/v1/profiles/user_id:nobody", "", bearer, 404)

	check("PATCH", "/v1/sources/"+src["id"].(string), `{"disabled":true}`, bearer, 200)
	check("PATCH", "/v1/sources/src_missing", `{"disabled":true}`, bearer, 404)
	check("POST", "/v1/track", `{"userId":"u1","event":"x"}`, wk, 403)

	code, h, body := openapiCall(t, s, "GET", "/metrics", nil, map[string]string{"Authorization": "Bearer " + adminToken})
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", code, h.Get("Content-Type"))
	}
	op, _ := openapiPointer(doc, "#/paths/~1metrics/get/description")
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if !strings.Contains(op.(string), name) {
				t.Errorf("metric %s is not named in the /metrics description", name)
			}
		}
	}
}
