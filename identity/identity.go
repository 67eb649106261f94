// Package identity owns identifiers: which fields of a message identify a
// person, how each type is normalised, which values are junk that must never
// link anything, and how an identifier becomes an opaque key (a keyed hash)
// so that storage keys never contain personal data.
package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"regexp"
	"strings"
	"sync"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/rawjson"
)

// Identifier is one typed, normalised identifier found on a message.
type Identifier struct {
	Type  string
	Value string
}

// String renders the identifier as a profile reference, "type:value".
func (id Identifier) String() string { return id.Type + ":" + id.Value }

// Keyer turns identifiers into opaque keys with a per-installation secret.
// It is safe for concurrent use.
type Keyer struct{ macs *sync.Pool }

// NewKeyer returns a Keyer for the store's secret.
func NewKeyer(secret []byte) Keyer {
	secret = append([]byte(nil), secret...)
	return Keyer{macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// Key returns the keyed hash of a normalised identifier.
func (k Keyer) Key(id Identifier) kith.IdentKey {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	var buf [128]byte
	b := append(append(append(buf[:0], id.Type...), 0), id.Value...)
	m.Write(b)
	var sum [sha256.Size]byte
	var out kith.IdentKey
	copy(out[:], m.Sum(sum[:0]))
	k.macs.Put(m)
	return out
}

// blocked matches values that SDKs and forms send when they have no real
// identifier; linking on them would merge strangers.
var blockedPattern = regexp.MustCompile(`^[0-]*$`)

var blockedValues = map[string]bool{
	"-1": true, "null": true, "nil": true, "undefined": true, "none": true,
	"anonymous": true, "unknown": true, "n/a": true, "[object object]": true,
}

// Blocked reports whether a normalised value must never link profiles.
func Blocked(value string) bool {
	v := strings.ToLower(strings.TrimSpace(value))
	return v == "" || blockedValues[v] || blockedPattern.MatchString(v)
}

// Normalise returns the canonical form of a value of the given type:
// e-mails trimmed and lower-cased, phones reduced to digits with a leading
// '+' kept, types lower-cased, other values trimmed.
func Normalise(typ, value string) Identifier {
	typ = strings.ToLower(strings.TrimSpace(typ))
	value = strings.TrimSpace(value)
	switch typ {
	case kith.IdentEmail:
		value = strings.ToLower(value)
	case kith.IdentPhone:
		var b strings.Builder
		for i, r := range value {
			if r >= '0' && r <= '9' || (r == '+' && i == 0) {
				b.WriteRune(r)
			}
		}
		value = b.String()
	}
	return Identifier{Type: typ, Value: value}
}

// ParseRef splits a profile reference "type:value" and normalises it. ok
// is false when ref has no type prefix (it is then a profile id).
func ParseRef(ref string) (Identifier, bool) {
	typ, value, found := strings.Cut(ref, ":")
	if !found || typ == "" || strings.ContainsAny(typ, " /") {
		return Identifier{}, false
	}
	return Normalise(typ, value), true
}

// fields is the part of a message identity extraction reads.
type fields struct {
	UserID, AnonymousID, PreviousID json.RawMessage
	Traits                          map[string]json.RawMessage
	Context                         struct {
		Traits      map[string]json.RawMessage
		ExternalIDs []struct {
			ID   json.RawMessage `json:"id"`
			Type string          `json:"type"`
		}
	}
}

// readFields splits a stored message one level at a time, decoding only
// the external ids (rare) in full.
func readFields(raw json.RawMessage) (fields, error) {
	var f fields
	top, err := rawjson.Object(raw)
	if err != nil || top == nil {
		return f, fmt.Errorf("identity: message is not a JSON object: %v", err)
	}
	f.UserID, f.AnonymousID, f.PreviousID = top["userId"], top["anonymousId"], top["previousId"]
	if f.Traits, err = rawjson.Object(top["traits"]); err != nil {
		return f, fmt.Errorf("identity: traits: %w", err)
	}
	ctx, err := rawjson.Object(top["context"])
	if err != nil {
		return f, fmt.Errorf("identity: context: %w", err)
	}
	if f.Context.Traits, err = rawjson.Object(ctx["traits"]); err != nil {
		return f, fmt.Errorf("identity: context.traits: %w", err)
	}
	if x, ok := ctx["externalIds"]; ok {
		_ = json.Unmarshal(x, &f.Context.ExternalIDs) // not a list of {id,type}: no external ids
	}
	return f, nil
}

// Extracted is what a message says about who it is from.
type Extracted struct {
	// Identifiers are the message's identifiers, deduplicated, blocked
	// values removed, in priority order (user_id, email, phone, external
	// ids, anonymous_id).
	Identifiers []Identifier
	// PreviousID is an alias's previousId (normalised, not blocked).
	PreviousID string
	// Traits are identify traits overlaid with context.traits (the
	// message's own traits win).
	Traits map[string]json.RawMessage
}

// Extract reads identifiers and traits from a normalised message.
func Extract(m kith.Message) (Extracted, error) {
	var ex Extracted
	// Most events (track, page, screen) carry no traits and no external
	// ids: their identifiers are the typed userId and anonymousId, and the
	// message need not be decoded at all.
	// (A message with \u escapes takes the full path: a key could be
	// spelled with them.)
	if m.Type != "identify" && m.Type != "alias" && !bytes.Contains(m.Raw, []byte(`"traits"`)) &&
		!bytes.Contains(m.Raw, []byte(`"externalIds"`)) && !bytes.Contains(m.Raw, []byte(`\u`)) {
		for _, id := range []Identifier{Normalise(kith.IdentUserID, m.UserID), Normalise(kith.IdentAnonymousID, m.AnonymousID)} {
			if !Blocked(id.Value) {
				ex.Identifiers = append(ex.Identifiers, id)
			}
		}
		return ex, nil
	}
	f, err := readFields(m.Raw)
	if err != nil {
		return Extracted{}, err
	}
	seen := map[Identifier]bool{}
	add := func(typ string, v json.RawMessage) {
		s := scalar(v)
		if s == "" {
			return
		}
		id := Normalise(typ, s)
		if id.Type == "" || Blocked(id.Value) || seen[id] {
			return
		}
		seen[id] = true
		ex.Identifiers = append(ex.Identifiers, id)
	}
	add(kith.IdentUserID, f.UserID)
	// Top-level traits describe the person only on identify; on group they
	// describe the company (its e-mail must not link its members).
	personal := []map[string]json.RawMessage{f.Context.Traits}
	if m.Type == "identify" {
		personal = append(personal, f.Traits)
	}
	for _, t := range personal {
		add(kith.IdentEmail, t["email"])
	}
	for _, t := range personal {
		add(kith.IdentPhone, t["phone"])
	}
	for _, x := range f.Context.ExternalIDs {
		typ := strings.ToLower(strings.TrimSpace(x.Type))
		switch typ {
		case "user_id", "userid":
			typ = kith.IdentUserID
		case "anonymous_id", "anonymousid":
			typ = kith.IdentAnonymousID
		}
		add(typ, x.ID)
	}
	add(kith.IdentAnonymousID, f.AnonymousID)
	if m.Type == "alias" {
		if p := strings.TrimSpace(scalar(f.PreviousID)); p != "" && !Blocked(p) {
			ex.PreviousID = p
		}
	}
	if m.Type == "identify" || len(f.Context.Traits) > 0 {
		ex.Traits = map[string]json.RawMessage{}
		for k, v := range f.Context.Traits {
			ex.Traits[k] = v
		}
		if m.Type == "identify" {
			for k, v := range f.Traits {
				ex.Traits[k] = v
			}
		}
	}
	return ex, nil
}

// scalar renders a JSON string or number as an identifier value; anything
// else (objects, arrays, booleans, null) is not an identifier.
func scalar(raw json.RawMessage) string {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw)
	}
	return ""
}
