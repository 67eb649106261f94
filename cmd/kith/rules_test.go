package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// sourceKey creates a source and returns its write key.
func sourceKey(t *testing.T, s *Server, name string) string {
	t.Helper()
	out, err := cli(t, s, "source", "create", name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out[strings.Index(out, "wk_"):])[0]
}

// collectBatch posts a batch with a write key and returns the answer.
func collectBatch(t *testing.T, s *Server, key, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d %v", resp.StatusCode, m)
	}
	return m
}

// A rule change through PUT /v1/identity/rules on the running server
// reaches every reader of identifiers at once, for the next events: the
// indexer (a value blocked since links nothing, a new source links), the
// privacy gate (a suppressed person's e-mail read from the new source is
// dropped at ingest) and the audience engine (an audience defined after
// the events is backfilled from the log with the events attributed as the
// indexer attributed them, and agrees with one kept in real time).
func TestIdentityRulesReachEveryReader(t *testing.T) {
	s := startServer(t)
	key := sourceKey(t, s, "web")
	collectBatch(t, s, key, `{"batch":[
		{"type":"identify","userId":"u1","traits":{"email":"shared@example.com"}},
		{"type":"identify","userId":"u2","traits":{"email":"bob@example.com"}},
		{"type":"identify","userId":"ada","traits":{"email":"ada@example.com"}}]}`)
	waitProcessed(t, s)
	code, e := apiJSON(t, s, "POST", "/v1/privacy/erasures", `{"identifier":"email:ada@example.com","suppress":true}`)
	if code != http.StatusAccepted {
		t.Fatalf("erasure: %d %v", code, e)
	}
	for deadline := time.Now().Add(30 * time.Second); e["status"] != "finished"; time.Sleep(20 * time.Millisecond) {
		if _, e = apiJSON(t, s, "GET", "/v1/privacy/erasures/"+e["id"].(string), ""); e["status"] == "failed" || time.Now().After(deadline) {
			t.Fatalf("erasure: %v", e)
		}
	}
	if code, m := apiJSON(t, s, "POST", "/v1/audiences", `{"key":"joined_live","definition":"count(event \"Joined\") >= 1"}`); code != 201 {
		t.Fatalf("audience: %d %v", code, m)
	}
	waitBackfilled(t, s, "/v1/audiences")

	// The new rules: shared@example.com is junk; an e-mail is also read
	// from properties.member.
	rules := identity.DefaultRules()
	rules.Blocklist.Exact = append(rules.Blocklist.Exact, "shared@example.com")
	for i := range rules.Types {
		if rules.Types[i].Name == kith.IdentEmail {
			rules.Types[i].Sources = append(rules.Types[i].Sources, "properties.member")
		}
	}
	raw, err := json.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	if code, m := apiJSON(t, s, "PUT", "/v1/identity/rules", string(raw)); code != 200 {
		t.Fatalf("put rules: %d %v", code, m)
	}

	got := collectBatch(t, s, key, `{"batch":[
		{"type":"track","event":"Joined","anonymousId":"a7","context":{"traits":{"email":"shared@example.com"}}},
		{"type":"track","event":"Visited","anonymousId":"a9","properties":{"member":"bob@example.com"}},
		{"type":"track","event":"Visited","anonymousId":"a8","properties":{"member":"ADA@example.com"}}]}`)
	// The privacy gate: Ada's e-mail, normalised, read from the new source.
	if got["accepted"] != 2.0 || got["suppressed"] != 1.0 {
		t.Fatalf("the gate does not read the new rules: %v, want 2 accepted and 1 suppressed", got)
	}
	waitProcessed(t, s)
	if err := s.audiences.WaitFor(t.Context(), s.indexer.Cursor()); err != nil {
		t.Fatal(err)
	}
	// The indexer.
	a7, u1 := canonicalOf(t, s, "anonymous_id:a7"), canonicalOf(t, s, "user_id:u1")
	if a7 == "" || a7 == u1 {
		t.Fatalf("the blocked e-mail linked a7 to u1's profile (%q, %q)", a7, u1)
	}
	if a9, u2 := canonicalOf(t, s, "anonymous_id:a9"), canonicalOf(t, s, "user_id:u2"); a9 != u2 {
		t.Fatalf("properties.member did not link a9 to u2's profile (%q, %q)", a9, u2)
	}
	if code, _ := apiJSON(t, s, "GET", "/v1/profiles/anonymous_id:a8", ""); code != 404 {
		t.Fatalf("the suppressed event made a profile: %d", code)
	}
	// The audience engine, in real time (following the indexer) and
	// reading the log itself (a backfill of an aggregate no definition
	// kept before).
	if code, m := apiJSON(t, s, "POST", "/v1/audiences", `{"key":"joined_backfilled","definition":"count(event \"Joined\" within 365d) >= 1"}`); code != 201 {
		t.Fatalf("audience: %d %v", code, m)
	}
	waitBackfilled(t, s, "/v1/audiences")
	for _, aud := range []string{"joined_live", "joined_backfilled"} {
		if got := members(t, s, aud); !slices.Equal(got, []string{a7}) {
			t.Errorf("%s = %v, want a7's profile %s (u1's is %s)", aud, got, a7, u1)
		}
	}
}
