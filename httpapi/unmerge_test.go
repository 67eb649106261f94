package httpapi_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestUnmergeAPI(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	s.createSource("pos")
	for _, body := range []string{
		`{"type":"identify","userId":"u1","traits":{"email":"ann@x.io","name":"Ann"},"messageId":"e1"}`,
		`{"type":"identify","anonymousId":"till-2","traits":{"email":"bea@x.io","name":"Bea"},"messageId":"e2"}`,
		// The cashier typed Ann's e-mail for Bea.
		`{"type":"track","anonymousId":"till-2","event":"Order Completed","context":{"traits":{"email":"ann@x.io"}},"properties":{"revenue":9},"messageId":"e3"}`,
	} {
		if code, out := s.send("identify", body); code != 200 {
			t.Fatalf("%s: %d %v", body, code, out)
		}
		s.waitProcessed()
	}
	_, p := s.admin("GET", "/v1/profiles/user_id:u1", nil)
	id := p["id"].(string)
	code, mg := s.admin("GET", "/v1/profiles/"+url.PathEscape("email:ann@x.io")+"/merges", nil)
	data := mg["data"].([]any)
	if code != 200 || len(data) != 1 {
		t.Fatalf("merges: %d %v", code, mg)
	}
	m := data[0].(map[string]any)
	if m["id"] == "" || m["messageId"] != "e3" {
		t.Fatalf("merge = %v", m)
	}

	// While merged, both names are kept: one wins (the latest event time;
	// here a tie), the other is visible in the verbose traits.
	_, tr := s.admin("GET", "/v1/profiles/"+id+"/traits?verbose=true", nil)
	name := tr["traits"].(map[string]any)["name"].(map[string]any)
	others, _ := name["others"].([]any)
	if len(others) != 1 || !(name["value"] == "Ann" && others[0].(map[string]any)["value"] == "Bea" ||
		name["value"] == "Bea" && others[0].(map[string]any)["value"] == "Ann") {
		t.Errorf("merged name = %v, want one name with the other among the others", name)
	}

	for _, tc := range []struct {
		body map[string]any
		code int
	}{
		{map[string]any{"merge_id": m["id"]}, 400},                        // no reason
		{map[string]any{"merge_id": "m_999", "reason": "x"}, 404},         // no such merge
		{map[string]any{"merge_id": m["id"], "reason": "x", "y": 1}, 400}, // unknown field
	} {
		if code, out := s.admin("POST", "/v1/profiles/"+id+"/unmerge", tc.body); code != tc.code {
			t.Errorf("unmerge %v: %d %v, want %d", tc.body, code, out, tc.code)
		}
	}
	code, tok := s.admin("POST", "/v1/tokens", map[string]any{"name": "reader", "scopes": []string{"profiles:read"}})
	if code != 201 {
		t.Fatal(tok)
	}
	if code, _ := s.request("POST", "/v1/profiles/"+id+"/unmerge", []byte(`{"merge_id":"`+m["id"].(string)+`","reason":"x"}`),
		map[string]string{"Authorization": "Bearer " + tok["token"].(string)}); code != 403 {
		t.Errorf("unmerge with profiles:read: %d, want 403", code)
	}

	code, res := s.admin("POST", "/v1/profiles/"+id+"/unmerge", map[string]any{"merge_id": m["id"], "reason": "cashier typed the wrong e-mail"})
	if code != 200 {
		t.Fatalf("unmerge: %d %v", code, res)
	}
	ps := res["profiles"].([]any)
	_, a := s.admin("GET", "/v1/profiles/user_id:u1", nil)
	_, b := s.admin("GET", "/v1/profiles/anonymous_id:till-2", nil)
	if a["id"] == b["id"] || len(ps) != 2 || !(ps[0] == a["id"] && ps[1] == b["id"] || ps[0] == b["id"] && ps[1] == a["id"]) {
		t.Errorf("after unmerge: result %v, u1 %v, till-2 %v", ps, a["id"], b["id"])
	}
	split := res["split"].(map[string]any)
	if split["reason"] != "cashier typed the wrong e-mail" || split["by"] == "" {
		t.Errorf("split = %v", split)
	}
	_, tr = s.admin("GET", "/v1/profiles/anonymous_id:till-2/traits", nil)
	if tr["traits"].(map[string]any)["name"] != "Bea" {
		t.Errorf("Bea's traits after unmerge: %v", tr)
	}
	_, tr = s.admin("GET", "/v1/profiles/user_id:u1/traits", nil)
	if tr["traits"].(map[string]any)["name"] != "Ann" {
		t.Errorf("Ann's traits after unmerge: %v", tr)
	}
}

func TestManualMergeAndReviewQueue(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	s.createSource("crm")
	for _, body := range []string{
		`{"type":"identify","anonymousId":"crm-1","traits":{"name":"Ann Smith"}}`,
		`{"type":"identify","anonymousId":"pos-1","traits":{"name":"Anne Smith"}}`,
		`{"type":"identify","anonymousId":"crm-2","traits":{"name":"Bob Jones"}}`,
		`{"type":"identify","anonymousId":"pos-2","traits":{"name":"Rob Jones"}}`,
		`{"type":"identify","userId":"u1"}`,
		`{"type":"identify","userId":"u2"}`,
	} {
		if code, out := s.send("identify", body); code != 200 {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	s.waitProcessed()
	idOf := func(ref string) string {
		t.Helper()
		_, p := s.admin("GET", "/v1/profiles/"+url.PathEscape(ref), nil)
		return p["id"].(string)
	}

	// A manual merge.
	code, out := s.admin("POST", "/v1/profiles/anonymous_id:crm-1/merge", map[string]any{"with": "anonymous_id:pos-1", "reason": "same card holder"})
	if code != 200 || idOf("anonymous_id:crm-1") != idOf("anonymous_id:pos-1") {
		t.Fatalf("merge: %d %v", code, out)
	}
	if m := out["merge"].(map[string]any); m["identifierType"] != "manual" || m["id"] == "" {
		t.Errorf("merge evidence = %v", m)
	}
	for _, tc := range []struct {
		ref  string
		body map[string]any
		code int
	}{
		{"anonymous_id:crm-1", map[string]any{"with": "anonymous_id:pos-1", "reason": "again"}, 409}, // one profile already
		{"user_id:u1", map[string]any{"with": "user_id:u2", "reason": "x"}, 409},                     // two user ids
		{"anonymous_id:crm-2", map[string]any{"with": "anonymous_id:nobody", "reason": "x"}, 404},
		{"anonymous_id:crm-2", map[string]any{"with": "anonymous_id:pos-2"}, 400}, // no reason
	} {
		if code, out := s.admin("POST", "/v1/profiles/"+tc.ref+"/merge", tc.body); code != tc.code {
			t.Errorf("merge %s %v: %d %v, want %d", tc.ref, tc.body, code, out, tc.code)
		}
	}

	// The review queue: one candidate accepted, one rejected.
	n, err := s.store.AddReviewItems(t.Context(), []kith.ReviewItem{
		{ID: "rv1", A: idOf("anonymous_id:crm-2"), B: idOf("anonymous_id:pos-2"), Probability: 0.93, Weight: 7.5,
			Evidence: json.RawMessage(`{"surname":{"level":"exact","weight":6.1},"given_name":{"level":"jaro-winkler >= 0.8","weight":1.4}}`), RunID: "m1", CreatedAt: fixedNow},
		{ID: "rv2", A: idOf("user_id:u1"), B: idOf("anonymous_id:crm-1"), Probability: 0.6, Weight: 1, RunID: "m1", CreatedAt: fixedNow.Add(time.Second)},
	})
	if err != nil || n != 2 {
		t.Fatalf("seed review: %d %v", n, err)
	}
	code, list := s.admin("GET", "/v1/review", nil)
	if code != 200 || len(list["data"].([]any)) != 2 {
		t.Fatalf("review list: %d %v", code, list)
	}
	code, out = s.admin("POST", "/v1/review/rv1", map[string]any{"decision": "accept"})
	if code != 200 || out["item"].(map[string]any)["status"] != "accepted" || idOf("anonymous_id:crm-2") != idOf("anonymous_id:pos-2") {
		t.Fatalf("accept: %d %v", code, out)
	}
	if m := out["merge"].(map[string]any); m["identifierType"] != "probabilistic" || m["identifier"] != "match weight 7.50" {
		t.Errorf("accepted merge evidence = %v", m)
	}
	code, out = s.admin("POST", "/v1/review/rv2", map[string]any{"decision": "reject", "reason": "different people"})
	if code != 200 || out["item"].(map[string]any)["status"] != "rejected" || idOf("user_id:u1") == idOf("anonymous_id:crm-1") {
		t.Fatalf("reject: %d %v", code, out)
	}
	for _, tc := range []struct {
		id   string
		body map[string]any
		code int
	}{
		{"rv1", map[string]any{"decision": "reject"}, 409},
		{"rv9", map[string]any{"decision": "accept"}, 404},
		{"rv2", map[string]any{"decision": "maybe"}, 409}, // decided already comes first
	} {
		if code, out := s.admin("POST", "/v1/review/"+tc.id, tc.body); code != tc.code {
			t.Errorf("decide %s %v: %d %v, want %d", tc.id, tc.body, code, out, tc.code)
		}
	}
	code, list = s.admin("GET", "/v1/review?status=all", nil)
	if code != 200 || len(list["data"].([]any)) != 2 {
		t.Errorf("all: %d %v", code, list)
	}
	code, list = s.admin("GET", "/v1/review", nil)
	if code != 200 || len(list["data"].([]any)) != 0 {
		t.Errorf("pending after decisions: %d %v", code, list)
	}
	if code, _ := s.admin("GET", "/v1/review?status=odd", nil); code != 400 {
		t.Errorf("bad status: %d", code)
	}
}

func TestDetachAPI(t *testing.T) {
	s := startStack(t, t.TempDir(), func() time.Time { return fixedNow })
	s.createSource("web")
	for _, body := range []string{
		`{"type":"identify","anonymousId":"dad","traits":{"email":"family@x.io"}}`,
		`{"type":"identify","anonymousId":"kid","traits":{"email":"family@x.io"}}`,
	} {
		if code, out := s.send("identify", body); code != 200 {
			t.Fatalf("%d %v", code, out)
		}
	}
	s.waitProcessed()
	if code, _ := s.admin("POST", "/v1/profiles/anonymous_id:dad/identities/detach", map[string]any{"identifier": "email:family@x.io"}); code != 400 {
		t.Errorf("without a reason: %d", code)
	}
	if code, _ := s.admin("POST", "/v1/profiles/anonymous_id:dad/identities/detach", map[string]any{"identifier": "email:other@x.io", "reason": "x"}); code != 404 {
		t.Errorf("an identifier the profile lacks: %d", code)
	}
	code, out := s.admin("POST", "/v1/profiles/anonymous_id:dad/identities/detach", map[string]any{"identifier": "email:FAMILY@x.io", "reason": "shared family address"})
	if code != 200 || len(out["profiles"].([]any)) != 2 {
		t.Fatalf("detach: %d %v", code, out)
	}
	_, a := s.admin("GET", "/v1/profiles/anonymous_id:dad", nil)
	_, b := s.admin("GET", "/v1/profiles/anonymous_id:kid", nil)
	if a["id"] == b["id"] {
		t.Error("still one profile")
	}
	if code, _ := s.admin("GET", "/v1/profiles/email:family@x.io", nil); code != 404 {
		t.Errorf("the detached e-mail still resolves: %d", code)
	}
}
