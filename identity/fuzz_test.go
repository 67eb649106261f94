package identity

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
)

// fuzzRules are rule sets that take different extraction paths: the
// defaults, rules that read many sources (among them a device-typed rule
// over anonymousId, which forces the full path), and rules with a default
// region for phones.
var fuzzRules = func() []*Rules {
	out := []*Rules{DefaultRules()}
	for _, src := range []string{
		`{"types":[{"name":"user_id","sources":["userId","externalIds"],"priority":1,"limit":1},
			{"name":"email","sources":["traits.email","context.traits.email","properties.email","externalIds"],"normalise":"email","priority":2},
			{"name":"crm","sources":["integrations.CRM.id","traits.crm.id","groupId"],"normalise":"lower","priority":3},
			{"name":"anon","sources":["anonymousId"],"byDeviceType":true,"priority":90}],
		  "blocked":{"exact":["x"],"patterns":["^a+$"]}}`,
		`{"types":[{"name":"phone","sources":["traits.phone","context.traits.phone","externalIds"],"normalise":"phone","priority":1,"window":"7d","limit":2},
			{"name":"idfa","sources":["context.device.advertisingId"],"byDeviceType":true,"priority":2},
			{"name":"anonymous_id","sources":["anonymousId"],"priority":3,"neverMerge":true}],
		  "defaultRegion":"nl","undeclared":{"priority":7,"limit":1}}`,
	} {
		r, err := ParseRules([]byte(src))
		if err != nil {
			panic(err)
		}
		out = append(out, r)
	}
	return out
}()

// FuzzParseRules checks the rules configuration parser: any input is
// refused with an error that says it is about identity rules, or gives
// rules that marshal and parse back to the same rules (a fixed point after
// one round), with lower-case, unique type names, no negative limit or
// window, and an undeclared rule as valid as a declared one.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		`{"types":[{"name":"User_ID","sources":["userId"],"priority":1,"limit":1,"window":"7d"}],"blocked":{"exact":["X"],"patterns":["^0+$"]},"defaultRegion":"nl"}`,
		`{"types":[{"name":"email","sources":["traits.email","externalIds"],"normalise":"email","priority":2,"window":604800}]}`,
		`{"types":[{"name":"a","sources":["userId"],"priority":1,"window":"infd"}]}`,
		`{"types":[{"name":"a","sources":["userId"],"priority":1,"window":"1xd"}]}`,
		`{"types":[{"name":"a","sources":["userId"],"priority":1}],"undeclared":{"priority":-3,"limit":-1,"normalise":"bogus"}}`,
		`{"types":[{"name":"a","sources":["bogus"],"priority":1}]}`,
		`{"types":[{"name":"a b","sources":["userId"],"priority":1}]}`,
		`{"types":[],"blocked":{"patterns":["("]}}`,
		`{"types":[{"name":"a","sources":["integrations."],"priority":1}]}`,
		`{"colour":1}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRules(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "identity rules: ") {
				t.Fatalf("ParseRules(%q): error %q does not say what it is about", b, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, ty := range append([]TypeRule{r.Undeclared}, r.Types...) {
			if ty.Priority < 1 || ty.Limit < 0 || ty.Window < 0 {
				t.Fatalf("ParseRules(%q): accepted %+v", b, ty)
			}
			switch ty.Normalise {
			case "", "trim", "lower", "email", "phone":
			default:
				t.Fatalf("ParseRules(%q): accepted normalisation %q", b, ty.Normalise)
			}
		}
		for _, ty := range r.Types {
			if ty.Name == "" || ty.Name != strings.ToLower(strings.TrimSpace(ty.Name)) || strings.ContainsAny(ty.Name, ": /") || seen[ty.Name] {
				t.Fatalf("ParseRules(%q): accepted type name %q", b, ty.Name)
			}
			seen[ty.Name] = true
		}
		once, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("ParseRules(%q) gave rules that do not marshal: %v", b, err)
		}
		r2, err := ParseRules(once)
		if err != nil {
			t.Fatalf("ParseRules(%q) gave rules that do not parse back from %s: %v", b, once, err)
		}
		twice, _ := json.Marshal(r2)
		if string(once) != string(twice) {
			t.Fatalf("ParseRules(%q): marshalled %s, then %s", b, once, twice)
		}
	})
}

// FuzzParseWindow checks that a window is a positive duration or an
// error, never a negative one (an overflow), and that a Go duration it
// prints parses back to itself.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"7d", "2w", "weekly", "168h", "1.5d", "ever", "", "infd", "1e300d", "+Infw", "1xd", "1 2d", "-1d", "0.5w", "9223372036854775807ns", "106751d", "106752d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseWindow(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseWindow(%q) = %v with error %v", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseWindow(%q) = %v, negative", s, d)
		}
		if back, err := ParseWindow(d.String()); err != nil || back != d {
			t.Fatalf("ParseWindow(%q) = %v, whose text %q parses to %v, %v", s, d, d.String(), back, err)
		}
	})
}

// FuzzNormalise checks identifier normalisation: it is idempotent (a
// stored value normalises to itself, so a profile reference typed from it
// finds it), trims, lower-cases types, gives phones as E.164 or digits,
// and a normalised identifier renders as a reference that parses back to
// it.
func FuzzNormalise(f *testing.F) {
	for _, s := range []struct{ typ, v string }{
		{"email", "  Ada@Example.COM "}, {"phone", "+31 (0)6-1234 5678"}, {"phone", "06 1234+5678"}, {"Phone", "+1 800 FLOWERS"},
		{"user_id", " 42 "}, {"crm", "AbC"}, {"email", "İSTANBUL@x.tr"}, {"email", "ẞ@x.de"}, {"phone", "+"}, {"phone", "tel:+1-650-555-1234;ext=1"},
		{"anonymous_id", "a:b"}, {"ios.id", " X "}, {"email", "\u00a0x@y.z\u2028"},
	} {
		f.Add(s.typ, s.v, uint8(0))
	}
	f.Fuzz(func(t *testing.T, typ, value string, rules uint8) {
		r := fuzzRules[int(rules)%len(fuzzRules)]
		id := r.Normalise(typ, value)
		if again := r.Normalise(id.Type, id.Value); again != id {
			t.Fatalf("Normalise(%q, %q) = %v, but normalising that gives %v", typ, value, id, again)
		}
		if id.Type != strings.ToLower(strings.TrimSpace(typ)) || id.Value != strings.TrimSpace(id.Value) {
			t.Fatalf("Normalise(%q, %q) = %v: not trimmed or not lower-case", typ, value, id)
		}
		if r.Rule(id.Type).Normalise == "phone" && strings.Trim(strings.TrimPrefix(id.Value, "+"), "0123456789") != "" {
			t.Fatalf("Normalise(%q, %q) = %v: not a phone number's digits", typ, value, id)
		}
		if id.Type == "" || strings.ContainsAny(id.Type, ": /") {
			return // not a type a reference can name
		}
		if back, ok := r.ParseRef(id.String()); !ok || back != id {
			t.Fatalf("ParseRef(%q) = %v, %v; want %v", id.String(), back, ok, id)
		}
	})
}

// FuzzExtract sends any message body through collection (as the indexer
// receives it) and extracts identities under several rule sets. A message
// collection accepted always extracts; its identifiers are normalised,
// storable, not blocked, unique and ordered by priority; the fast path
// agrees with the full one; and the traits are the message's own.
func FuzzExtract(f *testing.F) {
	endpoints := []string{"batch", "track", "identify", "page", "screen", "group", "alias"}
	for _, s := range []struct {
		ep   string
		body string
	}{
		{"batch", `{"batch":[{"type":"identify","userId":"u0","traits":{"phone":"06 12345678"}},{"type":"track","event":"x","anonymousId":"a0","properties":{"email":"E@x.io"}}]}`},
		{"identify", `{"userId":"u1","anonymousId":"a1","traits":{"email":" A@B.c ","phone":"+1 555 0100","plan":"pro"}}`},
		{"track", `{"anonymousId":"a2","event":"e","context":{"traits":{"email":"c@d.e"},"externalIds":[{"id":"C-9","type":"crm_id"},{"id":7,"type":"USER_ID"},{"id":"x","type":"a:b c"}]}}`},
		{"track", `{"userId":42,"anonymousId":"anonymous","event":"e","properties":{"email":"P@x.io"}}`},
		{"group", `{"userId":"u3","groupId":"g1","traits":{"email":"info@acme.io"}}`},
		{"alias", `{"userId":"u4","previousId":" old-1 "}`},
		{"screen", `{"anonymousId":"a5","context":{"device":{"type":"iOS","id":"D1","advertisingId":"AD","adTrackingEnabled":true}},"integrations":{"Google Analytics":{"clientId":"ga1"},"CRM":{"id":"K"}}}`},
		{"identify", `{"userId":"u6","traits":{"crm":{"id":"Z"},"email":["a@b.c"]},"context":{"traits":null}}`},
		{"page", `{"userId":"\u0075\u0037","anonymousId":"AAA"}`},
	} {
		f.Add(uint8(slices.Index(endpoints, s.ep)), []byte(s.body))
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ep uint8, body []byte) {
		if len(body) > 8<<10 {
			return
		}
		p := collect.Parse(body, endpoints[int(ep)%len(endpoints)], collect.Meta{ReceivedAt: now}, collect.DefaultLimits())
		for _, m := range p.Messages {
			for ri, r := range fuzzRules {
				ex, err := r.Extract(m)
				if err != nil {
					t.Fatalf("rules %d: Extract(%s): %v", ri, m.Raw, err)
				}
				full, err := r.extractFull(m)
				if err != nil {
					t.Fatalf("rules %d: extractFull(%s): %v", ri, m.Raw, err)
				}
				if !reflect.DeepEqual(ex.Identifiers, full.Identifiers) && (len(ex.Identifiers) > 0 || len(full.Identifiers) > 0) {
					t.Fatalf("rules %d: %s: fast path %v, full path %v", ri, m.Raw, ex.Identifiers, full.Identifiers)
				}
				checkExtracted(t, r, m, ex)
			}
		}
	})
}

func checkExtracted(t *testing.T, r *Rules, m kith.Message, ex Extracted) {
	t.Helper()
	seen := map[Identifier]bool{}
	for i, id := range ex.Identifiers {
		if seen[id] {
			t.Fatalf("%s: identifier %v twice", m.Raw, id)
		}
		seen[id] = true
		if id.Type == "" || id.Value == "" || r.Blocked(id.Value) {
			t.Fatalf("%s: identifier %v is empty or blocked", m.Raw, id)
		}
		if p := kith.TextProblem(id.Type + id.Value); p != "" {
			t.Fatalf("%s: identifier %q %s", m.Raw, id, p)
		}
		if again := r.Normalise(id.Type, id.Value); again != id {
			t.Fatalf("%s: identifier %v normalises to %v", m.Raw, id, again)
		}
		if i > 0 && r.Rule(ex.Identifiers[i-1].Type).Priority > r.Rule(id.Type).Priority {
			t.Fatalf("%s: identifiers %v not ordered by priority", m.Raw, ex.Identifiers)
		}
	}
	if ex.PreviousID != "" && (m.Type != "alias" || r.Blocked(ex.PreviousID) || ex.PreviousID != strings.TrimSpace(ex.PreviousID)) {
		t.Fatalf("%s: previousId %q", m.Raw, ex.PreviousID)
	}
	if ex.PreviousID != "" && kith.TextProblem(ex.PreviousID) != "" {
		t.Fatalf("%s: previousId %q cannot be stored", m.Raw, ex.PreviousID)
	}
	for k, v := range ex.Traits {
		if !json.Valid(v) || kith.TextProblem(k) != "" {
			t.Fatalf("%s: trait %q = %s", m.Raw, k, v)
		}
	}
}

// TestParseWindowRefusesJunk pins what FuzzParseWindow found: numbers
// with trailing junk, infinities and windows past a Duration's range were
// read as a day, or as a negative window.
func TestParseWindowRefusesJunk(t *testing.T) {
	for _, s := range []string{"1xd", "1 2d", "infd", "+Infw", "nand", "1e300d", "106752d", "15251w", "1e-300d"} {
		if d, err := ParseWindow(s); err == nil {
			t.Errorf("ParseWindow(%q) = %v, want an error", s, d)
		}
	}
	for s, want := range map[string]time.Duration{"106751d": 106751 * 24 * time.Hour, "1.5d": 36 * time.Hour, "2w": 14 * 24 * time.Hour, " 7D ": 7 * 24 * time.Hour} {
		if d, err := ParseWindow(s); err != nil || d != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", s, d, err, want)
		}
	}
}
