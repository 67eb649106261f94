// Package identity owns identifiers: which fields of a message identify a
// person, how each type is normalised, which values are junk that must never
// link anything, and how an identifier becomes an opaque key (a keyed hash)
// so that storage keys never contain personal data.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"hash"
	"strings"
	"sync"

	"github.com/kithcdp/kith"
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

// defaults are the rules the package-level functions use.
var defaults = DefaultRules()

// Blocked reports whether a value must never link profiles, under the
// default rules.
func Blocked(value string) bool { return defaults.Blocked(value) }

// Normalise returns the canonical form of a value under the default rules:
// e-mails trimmed and lower-cased, phones in E.164 when they carry a
// country code (else their digits), types lower-cased, other values
// trimmed.
func Normalise(typ, value string) Identifier { return defaults.Normalise(typ, value) }

// ParseRef splits a profile reference "type:value" and normalises it under
// the default rules. ok is false when ref has no type prefix (it is then a
// profile id).
func ParseRef(ref string) (Identifier, bool) { return defaults.ParseRef(ref) }

// Extracted is what a message says about who it is from.
type Extracted struct {
	// Identifiers are the message's identifiers, deduplicated, blocked
	// values removed, strongest priority first.
	Identifiers []Identifier
	// PreviousID is an alias's previousId (normalised, not blocked).
	PreviousID string
	// Traits are identify traits overlaid with context.traits (the
	// message's own traits win).
	Traits map[string]json.RawMessage
}

// Extract reads identifiers and traits from a normalised message under the
// default rules.
func Extract(m kith.Message) (Extracted, error) { return defaults.Extract(m) }

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
