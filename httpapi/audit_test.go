package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAuditLog: every admin action is recorded with its token, time,
// target and outcome, denied ones too; identifiers in targets are
// recorded as keyed hashes; the log can be filtered.
func TestAuditLog(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("web")
	s.send("identify", `{"userId":"u1","traits":{"email":"ada@example.com"}}`)
	s.waitProcessed()
	if code, _ := s.admin("GET", "/v1/profiles/email:ada@example.com", nil); code != 200 {
		t.Fatalf("profile read: %d", code)
	}
	// A reference the API does not understand may still be personal.
	if code, _ := s.admin("GET", "/v1/profiles/ada@example.com", nil); code != 404 {
		t.Fatalf("bare e-mail as a reference: %d", code)
	}
	code, tok := s.admin("POST", "/v1/tokens", map[string]any{"name": "reader", "scopes": []string{"profiles:read"}})
	if code != http.StatusCreated {
		t.Fatal(code)
	}
	reader := tok["token"].(string)
	// A denied action.
	if code, _ := s.request("POST", "/v1/sources", []byte(`{"name":"x"}`), map[string]string{"Authorization": "Bearer " + reader}); code != 403 {
		t.Fatalf("reader creating a source: %d", code)
	}
	if code, _ := s.request("GET", "/v1/profiles/user_id:u1", nil, map[string]string{"Authorization": "Bearer " + reader}); code != 200 {
		t.Fatalf("reader: %d", code)
	}
	if code, _ := s.admin("DELETE", "/v1/tokens/"+tok["id"].(string), nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	code, out := s.admin("GET", "/v1/audit?limit=1000", nil)
	if code != 200 {
		t.Fatalf("audit: %d %v", code, out)
	}
	raw, _ := json.Marshal(out)
	if strings.Contains(string(raw), "ada@example.com") || strings.Contains(string(raw), "u1") {
		t.Fatalf("the audit log holds an identifier in clear: %s", raw)
	}
	var got []string
	for _, x := range out["data"].([]any) {
		e := x.(map[string]any)
		target, _ := e["target"].(string)
		got = append(got, fmt.Sprintf("%s|%s|%s|%v|%s", e["tokenName"], e["action"], target, e["status"], e["outcome"]))
		if e["tokenId"] == "" || e["at"] == "" || e["seq"] == nil {
			t.Errorf("entry without token, time or seq: %v", e)
		}
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		"provisioned|POST /v1/sources||201|ok",
		"provisioned|GET /v1/profiles/{ref}|ref=email:#",
		"provisioned|POST /v1/tokens||201|ok",
		"reader|POST /v1/sources||403|denied",
		"reader|GET /v1/profiles/{ref}|ref=user_id:#",
		"provisioned|DELETE /v1/tokens/{id}|id=tok_",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no audit entry like %q in:\n%s", want, joined)
		}
	}
	// Filters: by action, and by a profile reference (hashed the same way).
	_, out = s.admin("GET", "/v1/audit?action=/v1/tokens", nil)
	if n := len(out["data"].([]any)); n != 2 {
		t.Errorf("action filter: %d entries, want 2 (create, revoke)", n)
	}
	_, out = s.admin("GET", "/v1/audit?target=ref=email:ada@example.com", nil)
	if n := len(out["data"].([]any)); n != 1 {
		t.Errorf("target filter: %d entries, want 1", n)
	}
}

// TestPIIMasked: traits declared personal, personal identifiers and the
// personal traits inside events are masked for a token without pii:read.
func TestPIIMasked(t *testing.T) {
	s := startStack(t, t.TempDir(), time.Now)
	s.createSource("web")
	// A visitor known by e-mail, then the account with the same e-mail:
	// the merge's evidence is the e-mail address.
	s.send("track", `{"anonymousId":"a2","event":"Viewed","context":{"traits":{"email":"ada@example.com"}}}`)
	s.send("track", `{"userId":"u1","event":"Signed In"}`)
	s.waitProcessed()
	s.send("identify", `{"userId":"u1","traits":{"email":"ada@example.com","lastName":"Lovelace","plan":"pro"}}`)
	s.waitProcessed()
	_, tok := s.admin("POST", "/v1/tokens", map[string]any{"name": "dashboards", "scopes": []string{"profiles:read"}})
	_, full := s.admin("POST", "/v1/tokens", map[string]any{"name": "crm", "scopes": []string{"profiles:read", "pii:read"}})
	get := func(token, path string) string {
		code, out := s.request("GET", path, nil, map[string]string{"Authorization": "Bearer " + token})
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	for _, path := range []string{"/v1/profiles/user_id:u1/traits?verbose=true", "/v1/profiles/user_id:u1/identities", "/v1/profiles/user_id:u1/events", "/v1/profiles/user_id:u1/merges"} {
		masked, clear := get(tok["token"].(string), path), get(full["token"].(string), path)
		if strings.Contains(masked, "ada@example.com") || strings.Contains(masked, "Lovelace") || !strings.Contains(masked, "a***@example.com") {
			t.Errorf("%s without pii:read: %s", path, masked)
		}
		if !strings.Contains(clear, "ada@example.com") {
			t.Errorf("%s with pii:read: %s", path, clear)
		}
	}
}
