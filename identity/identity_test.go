package identity

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
)

func TestNormalise(t *testing.T) {
	tests := []struct {
		typ, in string
		want    Identifier
	}{
		{"email", "  Ada@Example.COM ", Identifier{"email", "ada@example.com"}},
		{"EMAIL", "x@y.z", Identifier{"email", "x@y.z"}},
		{"phone", "+31 (0)6-1234 5678", Identifier{"phone", "+3161234" + "5678"}},
		{"phone", "06 1234+5678", Identifier{"phone", "0612345678"}},
		{"user_id", " 42 ", Identifier{"user_id", "42"}},
		{"crm_id", "AbC", Identifier{"crm_id", "AbC"}},
	}
	for _, tc := range tests {
		if got := Normalise(tc.typ, tc.in); got != tc.want {
			t.Errorf("Normalise(%q, %q) = %v, want %v", tc.typ, tc.in, got, tc.want)
		}
	}
}

func TestBlocked(t *testing.T) {
	for _, v := range []string{"", " ", "0", "000-000", "-1", "null", "NULL", "undefined", "anonymous", "Unknown", "[object Object]"} {
		if !Blocked(v) {
			t.Errorf("Blocked(%q) = false, want true", v)
		}
	}
	for _, v := range []string{"u1", "10", "ada@example.com", "a-0"} {
		if Blocked(v) {
			t.Errorf("Blocked(%q) = true, want false", v)
		}
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		ref  string
		want Identifier
		ok   bool
	}{
		{"email:ADA@example.com", Identifier{"email", "ada@example.com"}, true},
		{"user_id:42", Identifier{"user_id", "42"}, true},
		{"anonymous_id:a:b", Identifier{"anonymous_id", "a:b"}, true},
		{"p_abcdef", Identifier{}, false},
		{":x", Identifier{}, false},
	}
	for _, tc := range tests {
		got, ok := ParseRef(tc.ref)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %v, %v", tc.ref, got, ok, tc.want, tc.ok)
		}
	}
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		raw    string
		ids    []Identifier
		prev   string
		traits []string
	}{
		{"identify with email and phone", "identify",
			`{"userId":"u1","anonymousId":"a1","traits":{"email":" A@B.c ","phone":"+1 555 0100","plan":"pro"}}`,
			[]Identifier{{"user_id", "u1"}, {"email", "a@b.c"}, {"phone", "+15550100"}, {"anonymous_id", "a1"}}, "", []string{"email", "phone", "plan"}},
		{"track with context traits and external ids", "track",
			`{"anonymousId":"a2","context":{"traits":{"email":"c@d.e"},"externalIds":[{"id":"C-9","type":"crm_id","collection":"users","encoding":"none"},{"id":"null","type":"loyalty"}]}}`,
			[]Identifier{{"email", "c@d.e"}, {"crm_id", "C-9"}, {"anonymous_id", "a2"}}, "", []string{"email"}},
		{"numeric user id", "track", `{"userId":42,"anonymousId":"anonymous"}`, []Identifier{{"user_id", "42"}}, "", nil},
		{"group traits describe the company", "group", `{"userId":"u3","groupId":"g1","traits":{"email":"info@acme.io","plan":"a"}}`,
			[]Identifier{{"user_id", "u3"}}, "", nil},
		{"plain track uses the typed ids", "track", `{"userId":"u7","anonymousId":" A7 "}`,
			[]Identifier{{"user_id", "u7"}, {"anonymous_id", "A7"}}, "", nil},
		{"plain page with a blocked anonymous id", "page", `{"userId":"u8","anonymousId":"undefined"}`,
			[]Identifier{{"user_id", "u8"}}, "", nil},
		{"alias", "alias", `{"userId":"u4","previousId":"old-1"}`, []Identifier{{"user_id", "u4"}}, "old-1", nil},
		{"blocked alias", "alias", `{"userId":"u4","previousId":"undefined"}`, []Identifier{{"user_id", "u4"}}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var typed struct {
				UserID      any `json:"userId"`
				AnonymousID any `json:"anonymousId"`
			}
			json.Unmarshal([]byte(tc.raw), &typed)
			str := func(v any) string {
				if v == nil {
					return ""
				}
				b, _ := json.Marshal(v)
				if s, ok := v.(string); ok {
					return s
				}
				return string(b)
			}
			ex, err := Extract(kith.Message{Type: tc.typ, UserID: str(typed.UserID), AnonymousID: str(typed.AnonymousID), Raw: json.RawMessage(tc.raw)})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ex.Identifiers, tc.ids) {
				t.Errorf("identifiers %v, want %v", ex.Identifiers, tc.ids)
			}
			if ex.PreviousID != tc.prev {
				t.Errorf("previousId %q, want %q", ex.PreviousID, tc.prev)
			}
			var keys []string
			for _, k := range []string{"email", "phone", "plan"} {
				if _, ok := ex.Traits[k]; ok {
					keys = append(keys, k)
				}
			}
			if !reflect.DeepEqual(keys, tc.traits) {
				t.Errorf("traits %v, want %v", keys, tc.traits)
			}
		})
	}
}

func TestKeyerIsKeyedAndStable(t *testing.T) {
	a, b := NewKeyer([]byte("secret-a")), NewKeyer([]byte("secret-b"))
	id := Identifier{"email", "ada@example.com"}
	if a.Key(id) != a.Key(id) {
		t.Fatal("key not stable")
	}
	if a.Key(id) == b.Key(id) {
		t.Fatal("key does not depend on the secret")
	}
	if a.Key(id) == a.Key(Identifier{"user_id", "ada@example.com"}) {
		t.Fatal("key does not depend on the type")
	}
}

// The fast extraction path must agree with the full one whatever the
// rules read: context.traits are traits even when no rule reads traits,
// and a device-typed rule over anonymousId gets the same type both ways.
func TestFastPathAgreesWithFullPath(t *testing.T) {
	parse := func(body string) []kith.Message {
		p := collect.Parse([]byte(`{"batch":[`+body+`]}`), "batch", collect.Meta{ReceivedAt: time.Now()}, collect.DefaultLimits())
		return p.Messages
	}
	r, err := ParseRules([]byte(`{"types":[{"name":"user_id","sources":["userId"],"priority":1},{"name":"anonymous_id","sources":["anonymousId"],"priority":90}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := r.Extract(parse(`{"type":"track","anonymousId":"a1","event":"x","context":{"traits":{"plan":"pro"}}}`)[0])
	if err != nil || string(ex.Traits["plan"]) != `"pro"` {
		t.Errorf("context.traits on a track = %v, %v; want plan pro", ex.Traits, err)
	}
	r2, err := ParseRules([]byte(`{"types":[{"name":"anon","sources":["anonymousId"],"byDeviceType":true,"priority":90},{"name":"email","sources":["properties.email"],"priority":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, m := range parse(`{"type":"track","anonymousId":"a1","event":"x"},{"type":"track","anonymousId":"a1","event":"y","properties":{"email":"e@x.io"}}`) {
		ex, _ := r2.Extract(m)
		for _, id := range ex.Identifiers {
			if id.Value == "a1" {
				types = append(types, id.Type)
			}
		}
	}
	if len(types) != 2 || types[0] != types[1] {
		t.Errorf("anonymous id typed %v across the two paths, want one type", types)
	}
}
