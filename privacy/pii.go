package privacy

import (
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// PIITraits are the traits declared personal: shown in full only to
// outputs that need them (a token with the pii:read scope, the
// data-subject export), masked everywhere else.
var PIITraits = map[string]bool{
	"email": true, "phone": true, "name": true, "firstName": true, "lastName": true,
	"first_name": true, "last_name": true, "address": true, "birthday": true,
	"dateOfBirth": true, "date_of_birth": true, "street": true, "postalCode": true, "postal_code": true,
}

// PIIIdentifiers are the identifier types whose values are personal.
var PIIIdentifiers = map[string]bool{kith.IdentEmail: true, kith.IdentPhone: true}

// MaskString keeps a hint of a value and hides the rest: "ada@example.com"
// becomes "a***@example.com", "+31612345678" "+3***78", "Lovelace" "L***".
func MaskString(s string) string {
	if s == "" {
		return s
	}
	if at := strings.LastIndexByte(s, '@'); at > 0 {
		return s[:1] + "***" + s[at:]
	}
	if len(s) > 6 && (s[0] == '+' || s[0] >= '0' && s[0] <= '9') {
		return s[:3] + "***" + s[len(s)-2:]
	}
	return s[:1] + "***"
}

// maskJSON masks every string in a JSON value (an address object is
// masked field by field); numbers and booleans become null.
func maskJSON(v any) any {
	switch x := v.(type) {
	case string:
		return MaskString(x)
	case map[string]any:
		for k, e := range x {
			x[k] = maskJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskJSON(e)
		}
		return x
	case nil:
		return nil
	default:
		return nil
	}
}

// MaskValue masks a trait value.
func MaskValue(v json.RawMessage) json.RawMessage {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return json.RawMessage(`"***"`)
	}
	b, _ := json.Marshal(maskJSON(x))
	return b
}

// MaskTraits masks the PII traits (and the values that lost to them).
func MaskTraits(ts []kith.Trait) []kith.Trait {
	out := make([]kith.Trait, len(ts))
	for i, t := range ts {
		if PIITraits[t.Key] {
			t.Value = MaskValue(t.Value)
			t.Others = MaskTraits(t.Others)
		}
		out[i] = t
	}
	return out
}

// MaskIdentities masks the values of personal identifier types.
func MaskIdentities(ids []kith.Identity) []kith.Identity {
	out := make([]kith.Identity, len(ids))
	for i, id := range ids {
		if PIIIdentifiers[id.Type] {
			id.Value = MaskString(id.Value)
		}
		out[i] = id
	}
	return out
}

// MaskMerges masks the identifier that caused each merge when its type
// is personal.
func MaskMerges(ms []kith.Merge) []kith.Merge {
	out := make([]kith.Merge, len(ms))
	for i, m := range ms {
		if PIIIdentifiers[m.IdentType] {
			m.Ident = MaskString(m.Ident)
		}
		out[i] = m
	}
	return out
}

// MaskEvent masks the PII an event carries under the declared keys (in
// traits, context.traits and properties) and personal external ids.
func MaskEvent(raw json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	maskObj := func(o any) {
		if t, ok := o.(map[string]any); ok {
			for k, v := range t {
				if PIITraits[k] {
					t[k] = maskJSON(v)
				}
			}
		}
	}
	maskObj(m["traits"])
	maskObj(m["properties"])
	maskQuery(m["properties"])
	if ctx, ok := m["context"].(map[string]any); ok {
		maskObj(ctx["traits"])
		maskQuery(ctx["page"])
		if ext, ok := ctx["externalIds"].([]any); ok {
			for _, e := range ext {
				if x, ok := e.(map[string]any); ok {
					if typ, _ := x["type"].(string); PIIIdentifiers[typ] {
						x["id"] = maskJSON(x["id"])
					}
				}
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

// MaskEvidence masks the compared values (valueA, valueB) in a match
// explanation, keeping the weights and levels.
func MaskEvidence(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				if k == "valueA" || k == "valueB" {
					t[k] = maskJSON(e)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	b, _ := json.Marshal(v)
	return b
}

// maskQuery hides the query strings of page addresses (path, url,
// referrer, search), which often carry an e-mail address or a token.
func maskQuery(o any) {
	t, ok := o.(map[string]any)
	if !ok {
		return
	}
	for _, k := range []string{"path", "url", "referrer", "search"} {
		if v, ok := t[k].(string); ok {
			if i := strings.IndexByte(v, '?'); i >= 0 {
				t[k] = v[:i+1] + "***"
			}
		}
	}
}

// profileID matches the opaque profile ids Kith gives out.
var profileID = regexp.MustCompile(`^p_[0-9a-z]+$`)

// AuditRef is how a profile reference is written into the audit log, so
// that the log holds no personal data: an identifier ("email:ada@x.com")
// as its type and keyed hash ("email:#3fa2…"), a profile id as itself,
// anything else (it may be a bare e-mail address) hashed as type
// "unknown".
func AuditRef(rules *identity.Rules, keyer identity.Keyer, ref string) string {
	id, ok := rules.ParseRef(ref)
	if !ok {
		if profileID.MatchString(ref) {
			return ref
		}
		id = identity.Identifier{Type: "unknown", Value: ref}
	}
	k := keyer.Key(id)
	return id.Type + ":#" + hex.EncodeToString(k[:8])
}
