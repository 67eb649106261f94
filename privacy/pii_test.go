package privacy

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"ada@example.com": "a***@example.com",
		"+31612345678":    "+31***78",
		"Lovelace":        "L***",
		"":                "",
	} {
		if got := MaskString(in); got != want {
			t.Errorf("MaskString(%q) = %q, want %q", in, got, want)
		}
	}
	ev := MaskEvent(json.RawMessage(`{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","plan":"pro","address":{"city":"Delft","street":"Oude Delft 1"}},
		"context":{"traits":{"phone":"+31612345678"},"externalIds":[{"id":"ada@example.com","type":"email"},{"id":"C1","type":"crm_id"}]}}`))
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		t.Fatal(err)
	}
	tr := m["traits"].(map[string]any)
	ctx := m["context"].(map[string]any)
	ext := ctx["externalIds"].([]any)
	if tr["email"] != "a***@example.com" || tr["plan"] != "pro" || tr["address"].(map[string]any)["street"] != "O***" ||
		ctx["traits"].(map[string]any)["phone"] != "+31***78" || ext[0].(map[string]any)["id"] != "a***@example.com" || ext[1].(map[string]any)["id"] != "C1" || m["userId"] != "u1" {
		t.Fatalf("masked event %s", ev)
	}
}

func TestMaskEventQueryStrings(t *testing.T) {
	ev := MaskEvent(json.RawMessage(`{"type":"page","properties":{"path":"/reset?email=ada@example.com","url":"https://shop.example.com/p/1"},"context":{"page":{"url":"https://shop.example.com/reset?email=ada@example.com"}}}`))
	if strings.Contains(string(ev), "ada@example.com") || !strings.Contains(string(ev), `"/reset?***"`) || !strings.Contains(string(ev), `"https://shop.example.com/p/1"`) {
		t.Fatalf("masked %s", ev)
	}
}

func TestMaskMerges(t *testing.T) {
	in := []kith.Merge{{ID: "m_1", IdentType: kith.IdentEmail, Ident: "ada@example.com"}, {ID: "m_2", IdentType: "crm_id", Ident: "C1"}}
	got := MaskMerges(in)
	if got[0].Ident != "a***@example.com" || got[1].Ident != "C1" || got[0].ID != "m_1" {
		t.Fatalf("MaskMerges = %+v", got)
	}
	if in[0].Ident != "ada@example.com" {
		t.Fatal("MaskMerges changed its input")
	}
}

func TestAuditRef(t *testing.T) {
	rules, keyer := identity.DefaultRules(), identity.NewKeyer([]byte("secret"))
	hash := func(typ, value string) string {
		k := keyer.Key(identity.Identifier{Type: typ, Value: value})
		return typ + ":#" + hex.EncodeToString(k[:8])
	}
	for _, tc := range []struct{ ref, want string }{
		{"email:Ada@Example.com", hash("email", "ada@example.com")}, // normalised before hashing
		{"p_01abc", "p_01abc"},
		{"ada@example.com", hash("unknown", "ada@example.com")},
		{"p_ada@example.com", hash("unknown", "p_ada@example.com")}, // not a profile id
	} {
		got := AuditRef(rules, keyer, tc.ref)
		if got != tc.want {
			t.Errorf("AuditRef(%q) = %q, want %q", tc.ref, got, tc.want)
		}
		if strings.Contains(got, "ada") || strings.Contains(got, "Ada") {
			t.Errorf("AuditRef(%q) = %q keeps personal data", tc.ref, got)
		}
	}
}
