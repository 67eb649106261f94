package privacy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
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

// Definitions tells what the saved audiences and computed traits read
// (audience.Engine does).
type Definitions interface {
	SavedReads(kind, key string) ([]audience.Read, bool)
}

// MaskTraits masks the personal traits in ts (and the values that lost to
// them): those declared personal (PIITraits), and the computed traits
// whose definitions, as defs tells, read personal data (PersonalRead) —
// last(traits.email of event *) is an e-mail address whatever its key.
// defs may be nil when there are no computed traits.
func MaskTraits(ts []kith.Trait, defs Definitions) []kith.Trait {
	out := make([]kith.Trait, len(ts))
	for i, t := range ts {
		if PIITraits[t.Key] || personalComputed(t, defs) {
			t.Value = MaskValue(t.Value)
			t.Others = MaskTraits(t.Others, defs)
		}
		out[i] = t
	}
	return out
}

// personalComputed reports whether t is a computed trait whose definition
// reads personal data.
func personalComputed(t kith.Trait, defs Definitions) bool {
	if t.Provenance != kith.ProvenanceComputed || defs == nil {
		return false
	}
	reads, ok := defs.SavedReads(kith.KindComputedTrait, t.Key)
	if !ok {
		return true // its definition just went: hide rather than guess
	}
	_, personal := PersonalRead(reads)
	return personal
}

// PersonalRead returns the first of a definition's reads that reads
// personal data, and whether there is one. It is the one decision of
// which conditions and computed traits need the pii:read scope, and it
// follows what MaskTraits and MaskEvent hide from a token without it, so
// a condition cannot recover, one starts_with at a time, what the token is
// shown masked:
//
//   - a profile trait declared personal (PIITraits);
//   - an event path into traits, properties or context.traits whose first
//     key is declared personal (traits.email, properties.phone,
//     context.traits.address.city), all of context.traits, context.ip and
//     context.externalIds;
//   - a page address (path, url, referrer, search in properties or
//     context.page, or all of context.page) read in a way that can reach
//     its query string: as the value of a first, last, most_frequent or
//     unique_list aggregate, or compared with anything but exists, or =,
//     !=, in and starts_with with values free of "?" — so
//     `properties.path = "/pricing"` needs no scope.
//
// Computed traits and audiences a definition refers to are followed
// (audience.Read.Via): a condition on a computed trait over traits.email
// reads personal data.
func PersonalRead(reads []audience.Read) (audience.Read, bool) {
	for _, r := range reads {
		if personalRead(r) {
			return r, true
		}
	}
	return audience.Read{}, false
}

func personalRead(r audience.Read) bool {
	if r.Path == "" {
		head, _, _ := strings.Cut(r.Trait, ".")
		return PIITraits[r.Trait] || PIITraits[head]
	}
	segs := strings.Split(r.Path, ".")
	if len(segs) < 2 {
		return true // not a path the language accepts: refuse rather than guess
	}
	switch head, first := segs[0], segs[1]; {
	case head == "context" && (first == "ip" || first == "externalIds"):
		return true
	case head == "context" && first == "traits":
		return len(segs) == 2 || PIITraits[segs[2]]
	case head == "context" && first == "page":
		return len(segs) == 2 || slices.Contains(queryFields, segs[2]) && queryReadable(r)
	case head == "context":
		return false
	case PIITraits[first]:
		return true
	case head == "properties" && slices.Contains(queryFields, first):
		return queryReadable(r)
	}
	return false
}

// queryReadable reports whether a read of a page address can reach its
// query string (see PersonalRead).
func queryReadable(r audience.Read) bool {
	if r.Op == "" {
		switch r.Fn {
		case audience.FnFirst, audience.FnLast, audience.FnMostFrequent, audience.FnUniqueList:
			return true
		}
		return false // a count or a number: no text of the address
	}
	hasQuery := func(v any) bool {
		s, ok := v.(string)
		return ok && strings.Contains(s, "?")
	}
	switch r.Op {
	case "exists":
		return false
	case "=", "!=", "starts_with":
		return hasQuery(r.Value)
	case "in":
		list, _ := r.Value.([]any)
		return slices.ContainsFunc(list, hasQuery)
	}
	return true // contains, ends_with, and orderings reach anywhere in it
}

// CheckReads refuses a definition that reads personal data (PersonalRead)
// unless tok has the pii:read scope: an EFORBIDDEN error naming what the
// definition reads. what names the definition in the message (`audience
// "vip"`, "the dry run"). The API and the console call it before
// saving, dry-running or listing the members of a definition.
func CheckReads(tok kith.Token, what string, reads []audience.Read) error {
	if tok.HasScope(kith.ScopePIIRead) {
		return nil
	}
	if r, ok := PersonalRead(reads); ok {
		return kith.Errorf(kith.EFORBIDDEN, "%s reads personal data, %s: that needs the %s scope", what, r, kith.ScopePIIRead)
	}
	return nil
}

// CheckSaved refuses a token without pii:read what the saved audience
// key's members, memberships and history show, when the audience reads
// personal data — or no longer exists: a deleted definition's memberships
// and history remain, and what it read is no longer known, so they are
// hidden rather than guessed at (as MaskTraits does for computed traits).
// The API and the console call it before listing any of them.
func CheckSaved(tok kith.Token, defs Definitions, key string) error {
	if tok.HasScope(kith.ScopePIIRead) {
		return nil
	}
	reads, ok := defs.SavedReads(kith.KindAudience, key)
	if !ok {
		return kith.Errorf(kith.EFORBIDDEN, "audience %q no longer exists, so what it read is not known: its members and history need the %s scope", key, kith.ScopePIIRead)
	}
	return CheckReads(tok, fmt.Sprintf("audience %q", key), reads)
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
// traits, context.traits and properties), personal external ids, the
// client's IP address (context.ip) and the query strings of page
// addresses.
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
		if ip, ok := ctx["ip"]; ok {
			ctx["ip"] = maskIP(ip)
		}
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

// maskIP keeps the first part of an IP address (the network's first
// octet or group): "203.0.113.7" becomes "203.***", "2001:db8::1"
// "2001:***". Anything else is masked as a value.
func maskIP(v any) any {
	s, ok := v.(string)
	if !ok {
		return maskJSON(v)
	}
	if i := strings.IndexAny(s, ".:"); i > 0 {
		return s[:i+1] + "***"
	}
	return MaskString(s)
}

// queryFields are the page-address fields (in properties and
// context.page) whose query strings MaskEvent hides: they often carry an
// e-mail address or a token.
var queryFields = []string{"path", "url", "referrer", "search"}

// maskQuery hides the query strings of page addresses (queryFields).
func maskQuery(o any) {
	t, ok := o.(map[string]any)
	if !ok {
		return
	}
	for _, k := range queryFields {
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
