package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPersonalDataNeedsPIIRead: conditions and computed traits over
// personal data (issue 14: 474 dry runs of `traits.email starts_with
// "<prefix>"` recovered a masked e-mail address one character at a time)
// need the pii:read scope, directly or through a computed trait or an
// audience; computed traits derived from personal data are masked like
// personal traits; context.ip is masked in events.
func TestPersonalDataNeedsPIIRead(t *testing.T) {
	s := startStackWith(t, t.TempDir(), time.Now, stackOptions{audiences: true})
	s.createSource("web")
	s.send("identify", `{"userId":"u1","traits":{"email":"ada@example.com","plan":"pro"},"context":{"ip":"203.0.113.7"}}`)
	s.send("page", `{"userId":"u1","name":"Pricing","properties":{"path":"/pricing","url":"https://shop.example.com/pricing?email=ada@example.com"},"context":{"ip":"203.0.113.7"}}`)
	s.waitProcessed()
	token := func(name string, scopes ...string) string {
		code, out := s.admin("POST", "/v1/tokens", map[string]any{"name": name, "scopes": scopes})
		if code != http.StatusCreated {
			t.Fatalf("create token %s: %d %v", name, code, out)
		}
		return out["token"].(string)
	}
	reader := token("reader", "profiles:read")
	piiReader := token("pii-reader", "profiles:read", "pii:read")
	definer := token("definer", "definitions:write", "profiles:read")
	piiDefiner := token("pii-definer", "definitions:write", "profiles:read", "pii:read")
	call := func(tok, method, path string, body any) (int, map[string]any) {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		return s.request(method, path, b, map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
	}
	errMsg := func(out map[string]any) string {
		e, _ := out["error"].(map[string]any)
		msg, _ := e["message"].(string)
		return msg
	}
	// expect checks a status and, for a refusal, that the message names
	// what the definition reads.
	expect := func(what string, code int, out map[string]any, want int, names string) {
		t.Helper()
		if code != want {
			t.Errorf("%s: %d %v, want %d", what, code, out, want)
			return
		}
		if want == http.StatusForbidden && (!strings.Contains(errMsg(out), names) || !strings.Contains(errMsg(out), "pii:read")) {
			t.Errorf("%s: message %q does not name %q and pii:read", what, errMsg(out), names)
		}
	}

	// Saving definitions.
	code, out := call(definer, "POST", "/v1/audiences", map[string]any{"key": "emails", "definition": `traits.email ends_with "@example.com"`})
	expect("create audience over traits.email without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(definer, "POST", "/v1/audiences", map[string]any{"key": "emails", "condition": map[string]any{"trait": "email", "op": "ends_with", "value": "@example.com"}})
	expect("create audience over traits.email (JSON tree) without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(definer, "POST", "/v1/computed-traits", map[string]any{"key": "contact", "definition": `last(traits.email of event *)`})
	expect("create computed trait over traits.email without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(piiDefiner, "POST", "/v1/audiences", map[string]any{"key": "emails", "definition": `traits.email ends_with "@example.com"`})
	expect("create audience over traits.email with pii:read", code, out, http.StatusCreated, "")
	code, out = call(piiDefiner, "POST", "/v1/computed-traits", map[string]any{"key": "contact", "definition": `last(traits.email of event *)`})
	expect("create computed trait over traits.email with pii:read", code, out, http.StatusCreated, "")
	code, out = call(definer, "PUT", "/v1/audiences/emails", map[string]any{"definition": `traits.email ends_with "@example.org"`})
	expect("change an audience over traits.email without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(definer, "POST", "/v1/audiences", map[string]any{"key": "pro", "definition": `traits.plan = "pro" and count(event "Pricing" where properties.path = "/pricing") >= 1`})
	expect("create audience over plain data without pii:read", code, out, http.StatusCreated, "")

	// Dry runs, directly and through the definitions just saved.
	for _, tc := range []struct {
		definition string
		names      string // what the refusal names; "" if a reader may run it
	}{
		{`traits.email starts_with "a"`, "traits.email"},
		{`traits.phone starts_with "+31"`, "traits.phone"},
		{`traits.contact starts_with "a"`, "computed trait contact"},
		{`audience "emails"`, "audience emails"},
		{`count(event * where context.ip starts_with "203") >= 1`, "context.ip"},
		{`count(event * where properties.url contains "email=a") >= 1`, "properties.url"},
		{`count(event * where traits.email exists) >= 1`, "traits.email"},
		{`traits.plan = "pro"`, ""},
		{`audience "pro"`, ""},
		{`count(event "Pricing" where properties.path = "/pricing") >= 1`, ""},
	} {
		body := map[string]any{"definition": tc.definition, "sample": 1000}
		code, out := call(reader, "POST", "/v1/audiences/dry-run", body)
		if tc.names == "" {
			expect("dry run "+tc.definition+" without pii:read", code, out, http.StatusOK, "")
			continue
		}
		expect("dry run "+tc.definition+" without pii:read", code, out, http.StatusForbidden, tc.names)
		code, out = call(piiReader, "POST", "/v1/audiences/dry-run", body)
		expect("dry run "+tc.definition+" with pii:read", code, out, http.StatusOK, "")
	}

	// Wait for the backfill of the saved definitions.
	traits := func(tok string) map[string]any {
		t.Helper()
		code, out := call(tok, "GET", "/v1/profiles/user_id:u1/traits", nil)
		if code != http.StatusOK {
			t.Fatalf("traits: %d %v", code, out)
		}
		return out["traits"].(map[string]any)
	}
	for deadline := time.Now().Add(10 * time.Second); traits(piiReader)["contact"] == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("computed trait not there: %v", traits(piiReader))
		}
	}
	// Each audience is backfilled on its own: wait for both memberships.
	memberships := func() string {
		_, out := call(piiReader, "GET", "/v1/profiles/user_id:u1/audiences", nil)
		b, _ := json.Marshal(out["data"])
		return string(b)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(memberships(), `"pro"`) || !strings.Contains(memberships(), `"emails"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("memberships not there: %s", memberships())
		}
	}

	// The member list of an audience over personal data, and the
	// profile's memberships.
	code, out = call(reader, "GET", "/v1/audiences/emails/members", nil)
	expect("members of emails without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(piiReader, "GET", "/v1/audiences/emails/members", nil)
	expect("members of emails with pii:read", code, out, http.StatusOK, "")
	code, out = call(reader, "GET", "/v1/audience-changes?audience=emails", nil)
	expect("changes of emails without pii:read", code, out, http.StatusForbidden, "traits.email")
	for tok, want := range map[string]string{reader: `[{"audience":"pro"`, piiReader: `"audience":"emails"`} {
		_, out := call(tok, "GET", "/v1/profiles/user_id:u1/audiences", nil)
		b, _ := json.Marshal(out["data"])
		if !strings.Contains(string(b), want) || tok == reader && strings.Contains(string(b), "emails") {
			t.Errorf("memberships %s, want %s", b, want)
		}
		_, out = call(tok, "GET", "/v1/audience-changes", nil)
		b, _ = json.Marshal(out["data"])
		if strings.Contains(string(b), `"emails"`) != (tok == piiReader) {
			t.Errorf("changes with pii:read %v: %s", tok == piiReader, b)
		}
	}

	// The computed trait over traits.email is masked like traits.email.
	if got := fmt.Sprint(traits(reader)["contact"]); got != "a***@example.com" {
		t.Errorf("computed trait over traits.email without pii:read = %q, want it masked", got)
	}
	if got := fmt.Sprint(traits(piiReader)["contact"]); got != "ada@example.com" {
		t.Errorf("computed trait over traits.email with pii:read = %q", got)
	}

	// context.ip is masked in the events.
	events := func(tok string) string {
		code, out := call(tok, "GET", "/v1/profiles/user_id:u1/events", nil)
		if code != http.StatusOK {
			t.Fatalf("events: %d %v", code, out)
		}
		b, _ := json.Marshal(out["data"])
		return string(b)
	}
	if ev := events(reader); strings.Contains(ev, "203.0.113.7") || !strings.Contains(ev, `"ip":"203.***"`) {
		t.Errorf("events without pii:read show the IP address: %s", ev)
	}
	if ev := events(piiReader); !strings.Contains(ev, "203.0.113.7") {
		t.Errorf("events with pii:read lack the IP address: %s", ev)
	}

	// Replacing an audience over personal data needs pii:read (its history
	// stays under the key), and once it is deleted, its history stays
	// hidden: what it read is no longer known.
	code, out = call(definer, "PUT", "/v1/audiences/emails", map[string]any{"definition": `traits.plan = "pro"`})
	expect("replace emails without pii:read", code, out, http.StatusForbidden, "traits.email")
	code, out = call(definer, "DELETE", "/v1/audiences/emails", nil)
	if code != http.StatusNoContent {
		t.Fatalf("delete emails: %d %v", code, out)
	}
	code, out = call(reader, "GET", "/v1/audience-changes?audience=emails", nil)
	expect("changes of the deleted emails without pii:read", code, out, http.StatusForbidden, "emails")
	_, out = call(reader, "GET", "/v1/audience-changes", nil)
	if b, _ := json.Marshal(out["data"]); strings.Contains(string(b), `"emails"`) {
		t.Errorf("the change stream shows the deleted personal audience without pii:read: %s", b)
	}
	if code, out := call(piiReader, "GET", "/v1/audience-changes?audience=emails", nil); code != http.StatusOK {
		t.Errorf("changes of the deleted emails with pii:read: %d %v", code, out)
	}
}
