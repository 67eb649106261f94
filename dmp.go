package kith

import (
	"context"
	"time"
)

// ProvenanceThirdParty marks data a DMP supplied about a known customer
// (third-party audiences): it expires, and outputs that need first-party
// data leave it out.
const ProvenanceThirdParty = "third_party"

// DMPAudience says that a DMP (Partner) puts the person behind one of a
// profile's identifiers in one of its audiences, until ExpiresAt. It is kept
// against the identifier's key, not a profile id, so merges, splits and
// rebuilds of the derived state carry it to wherever the identifier goes.
type DMPAudience struct {
	Key IdentKey `json:"-"`
	// IDType is the identifier type that matched (anonymous_id for a
	// cookie id, ios.idfa for a mobile advertising id, email for a hashed
	// e-mail).
	IDType     string    `json:"idType"`
	Partner    string    `json:"partner"`
	Audience   string    `json:"audience"`
	ExpiresAt  time.Time `json:"expiresAt"`
	ImportedAt time.Time `json:"importedAt"`
}

// DMPStore keeps third-party audiences matched to known identifiers.
type DMPStore interface {
	// SaveDMPAudiences inserts the entries, or refreshes the expiry and
	// import time of those already present (same key, partner, audience).
	SaveDMPAudiences(ctx context.Context, as []DMPAudience) error
	// DMPAudiences returns the entries of the keys that have not expired
	// at now, ordered by partner, audience and identifier type.
	DMPAudiences(ctx context.Context, keys []IdentKey, now time.Time) ([]DMPAudience, error)
	// PruneDMPAudiences deletes the entries expired at now and says how
	// many.
	PruneDMPAudiences(ctx context.Context, now time.Time) (int64, error)
	// ScanIdentifiers calls fn for every identifier of type typ with its
	// key and value, in no particular order (matching hashed e-mails
	// needs every address's digest).
	ScanIdentifiers(ctx context.Context, typ string, fn func(key IdentKey, value string) error) error
}
