package privacy

import (
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
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

// TestPersonalRead: which reads of a definition are personal data, the
// one decision behind the pii:read checks (issue 14).
func TestPersonalRead(t *testing.T) {
	tests := []struct {
		name     string
		read     audience.Read
		personal bool
	}{
		{"declared trait", audience.Read{Trait: "email", Op: "starts_with", Value: "a"}, true},
		{"declared trait, exists", audience.Read{Trait: "phone", Op: "exists"}, true},
		{"nested in a declared trait", audience.Read{Trait: "address.city", Op: "=", Value: "Delft"}, true},
		{"plain trait", audience.Read{Trait: "plan", Op: "=", Value: "pro"}, false},
		{"through a computed trait", audience.Read{Path: "traits.email", Fn: audience.FnLast, Via: []string{"computed trait contact"}}, true},
		{"event traits", audience.Read{Path: "traits.email", Op: "exists"}, true},
		{"event property", audience.Read{Path: "properties.email", Op: "=", Value: "x"}, true},
		{"context traits", audience.Read{Path: "context.traits.lastName", Op: "starts_with", Value: "L"}, true},
		{"all of context traits", audience.Read{Path: "context.traits", Fn: audience.FnLast}, true},
		{"context traits, plain", audience.Read{Path: "context.traits.plan", Op: "=", Value: "pro"}, false},
		{"ip", audience.Read{Path: "context.ip", Op: "starts_with", Value: "203"}, true},
		{"external ids", audience.Read{Path: "context.externalIds", Fn: audience.FnUniqueList}, true},
		{"plain property", audience.Read{Path: "properties.total", Fn: audience.FnSum}, false},
		{"plain context", audience.Read{Path: "context.campaign.name", Op: "=", Value: "spring"}, false},
		{"path equals", audience.Read{Path: "properties.path", Op: "=", Value: "/pricing"}, false},
		{"path starts with", audience.Read{Path: "context.page.path", Op: "starts_with", Value: "/blog"}, false},
		{"path in", audience.Read{Path: "properties.url", Op: "in", Value: []any{"/a", "/b"}}, false},
		{"path exists", audience.Read{Path: "properties.referrer", Op: "exists"}, false},
		{"path counted", audience.Read{Path: "properties.path", Fn: audience.FnUniqueCount}, false},
		{"query in the value", audience.Read{Path: "properties.path", Op: "starts_with", Value: "/reset?email=a"}, true},
		{"query in a list", audience.Read{Path: "properties.url", Op: "in", Value: []any{"/a", "/reset?e=1"}}, true},
		{"contains reaches the query", audience.Read{Path: "context.page.url", Op: "contains", Value: "email="}, true},
		{"ends with reaches the query", audience.Read{Path: "properties.search", Op: "ends_with", Value: ".com"}, true},
		{"ordering reaches the query", audience.Read{Path: "properties.url", Op: ">", Value: "/reset?e"}, true},
		{"the address as a value", audience.Read{Path: "context.page.url", Fn: audience.FnLast}, true},
		{"all of context.page", audience.Read{Path: "context.page", Fn: audience.FnLast}, true},
	}
	for _, tt := range tests {
		r, got := PersonalRead([]audience.Read{{Trait: "plan", Op: "exists"}, tt.read})
		if got != tt.personal {
			t.Errorf("%s: personal = %v, want %v", tt.name, got, tt.personal)
		}
		if got && !reflect.DeepEqual(r, tt.read) {
			t.Errorf("%s: PersonalRead named %+v", tt.name, r)
		}
	}
}

func TestCheckReads(t *testing.T) {
	reads := []audience.Read{{Path: "traits.email", Fn: audience.FnLast, Via: []string{"computed trait contact"}}}
	err := CheckReads(kith.Token{Scopes: []string{kith.ScopeProfilesRead}}, "the dry run", reads)
	if kith.ErrorCode(err) != kith.EFORBIDDEN || !strings.Contains(err.Error(), "traits.email of events (through computed trait contact)") {
		t.Errorf("without pii:read: %v", err)
	}
	if err := CheckReads(kith.Token{Scopes: []string{kith.ScopeProfilesRead, kith.ScopePIIRead}}, "the dry run", reads); err != nil {
		t.Errorf("with pii:read: %v", err)
	}
	if err := CheckReads(kith.Token{Scopes: []string{kith.ScopeProfilesRead}}, "the dry run", []audience.Read{{Trait: "plan", Op: "exists"}}); err != nil {
		t.Errorf("plain data: %v", err)
	}
}

// savedReads is a Definitions over fixed reads.
type savedReads map[string][]audience.Read

func (s savedReads) SavedReads(kind, key string) ([]audience.Read, bool) {
	r, ok := s[kind+":"+key]
	return r, ok
}

// TestMaskTraitsComputed: a computed trait derived from personal data is
// masked whatever its key; others are not.
func TestMaskTraitsComputed(t *testing.T) {
	defs := savedReads{
		"computed_trait:contact": {{Path: "traits.email", Fn: audience.FnLast}},
		"computed_trait:orders":  {{Path: "properties.total", Fn: audience.FnSum}},
	}
	in := []kith.Trait{
		{Key: "contact", Value: json.RawMessage(`"ada@example.com"`), Provenance: kith.ProvenanceComputed},
		{Key: "orders", Value: json.RawMessage(`12`), Provenance: kith.ProvenanceComputed},
		{Key: "contact", Value: json.RawMessage(`"an event trait"`), Provenance: kith.ProvenanceEvent},
		{Key: "email", Value: json.RawMessage(`"ada@example.com"`), Provenance: kith.ProvenanceEvent},
		{Key: "gone", Value: json.RawMessage(`"x"`), Provenance: kith.ProvenanceComputed},
	}
	got := MaskTraits(in, defs)
	want := []string{`"a***@example.com"`, `12`, `"an event trait"`, `"a***@example.com"`, `"x***"`}
	for i := range want {
		if string(got[i].Value) != want[i] {
			t.Errorf("%s (%s) = %s, want %s", in[i].Key, in[i].Provenance, got[i].Value, want[i])
		}
	}
	if got := MaskTraits(in[:2], nil); string(got[0].Value) != `"ada@example.com"` {
		t.Errorf("without definitions: %s", got[0].Value)
	}
}

func TestMaskEventIP(t *testing.T) {
	for ip, want := range map[string]string{`"203.0.113.7"`: `"203.***"`, `"2001:db8::1"`: `"2001:***"`, `"localhost"`: `"l***"`, `42`: `null`} {
		ev := MaskEvent(json.RawMessage(`{"type":"track","context":{"ip":` + ip + `,"locale":"nl-NL"}}`))
		if !strings.Contains(string(ev), `"ip":`+want) || !strings.Contains(string(ev), `"locale":"nl-NL"`) {
			t.Errorf("ip %s masked: %s, want %s", ip, ev, want)
		}
	}
}
