package httpapi_test

import (
	"net/url"
	"testing"
	"time"
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
