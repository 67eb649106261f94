package kith

import (
	"context"
	"encoding/json"
	"time"
)

// NameTraits are the traits a customer can be found by name with.
var NameTraits = []string{"firstName", "lastName", "name", "first_name", "last_name"}

// TraitUpsert sets a trait on a profile unless the stored value comes from
// a later event time (the latest event time wins, not the latest arrival).
type TraitUpsert struct {
	ProfileID string
	Key       string
	Value     json.RawMessage
	SourceID  string
	MessageID string
	EventTime time.Time
}

// Trait provenances: where a trait value came from.
const (
	// ProvenanceEvent: set by an event's traits (identify, or a track's
	// context.traits); SourceID and MessageID name the event.
	ProvenanceEvent = "event"
	// ProvenancePredicted: written by an insight run (churn risk, CLV, RFM,
	// next-best products); RunID names the run, EventTime is when it ran.
	ProvenancePredicted = "predicted"
	// ProvenanceComputed: the value of a computed trait (package
	// audience), evaluated from the profile's events when read.
	ProvenanceComputed = "computed"
)

// Trait is a trait value with its provenance.
type Trait struct {
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"value"`
	Provenance string          `json:"provenance"`
	ProfileID  string          `json:"profileId"`
	SourceID   string          `json:"sourceId,omitempty"`
	MessageID  string          `json:"messageId,omitempty"`
	RunID      string          `json:"runId,omitempty"`
	EventTime  time.Time       `json:"eventTime"`
	// Others are the values of the same key that lost: older values held
	// by other members of a merged profile (latest first), and an event
	// value a prediction replaced. Merged profiles lose nothing.
	Others []Trait `json:"others,omitempty"`
}

// TimelineEntry places an event on the timeline of the profile it resolved
// to when it was indexed. Merges never rewrite these rows: a profile's
// timeline is the union over the profiles merged into it.
type TimelineEntry struct {
	ProfileID string
	Timestamp time.Time
	Seq       int64
	Type      string
	Event     string
}

// NewProfile is a profile the indexer created.
type NewProfile struct {
	ID        string
	CreatedAt time.Time
}

// IndexBatch is everything the indexer derived from a run of the log,
// applied by the store in one transaction together with the new cursor, so a
// crash replays exactly the unapplied tail. Merges are applied in order.
type IndexBatch struct {
	Cursor      int64
	Profiles    []NewProfile
	Identifiers []IdentifierUpsert
	Merges      []Merge
	Traits      []TraitUpsert
	Timeline    []TimelineEntry
	Orders      []Order
	// Consents are the consent decisions the events carried.
	Consents []Consent
	// Processed counts applied events per source.
	Processed map[string]int64
}

// IdentOwner says which profile an identifier is attached to, and which
// profile that one currently resolves to through the merge graph.
type IdentOwner struct {
	ProfileID string
	Canonical string
}

// ProfileSummary is the profile API's summary of a unified profile.
type ProfileSummary struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
	// Members are the profile ids merged into this one (itself included).
	Members      []string  `json:"members"`
	Identifiers  int       `json:"identifiers"`
	Traits       int       `json:"traits"`
	Events       int64     `json:"events"`
	FirstEventAt time.Time `json:"firstEventAt,omitzero"`
	LastEventAt  time.Time `json:"lastEventAt,omitzero"`
}

// TimelineQuery selects a page of a profile's timeline, newest first.
type TimelineQuery struct {
	Start, End time.Time // inclusive start, exclusive end; zero = open
	Type       string
	Event      string
	Limit      int
	// Before continues after the last entry of the previous page.
	Before *TimelineCursor
}

// TimelineCursor is the position of the last entry returned.
type TimelineCursor struct {
	Timestamp time.Time
	Seq       int64
}

// ProfileStore is the derived state the indexer maintains: identity graph,
// profiles, traits with provenance, timelines, and processed counters.
type ProfileStore interface {
	// IndexCursor returns the Seq of the last log event applied.
	IndexCursor(ctx context.Context) (int64, error)
	// LookupIdentifiers returns the owners of the keys that exist.
	LookupIdentifiers(ctx context.Context, keys []IdentKey) (map[IdentKey]IdentOwner, error)
	// ApplyIndexBatch applies b atomically; it fails with ECONFLICT if the
	// stored cursor is not the one b was derived from (another indexer ran).
	ApplyIndexBatch(ctx context.Context, from int64, b IndexBatch) error

	// Canonical resolves a profile id through the merge graph; ENOTFOUND if
	// no such profile exists.
	Canonical(ctx context.Context, profileID string) (string, error)
	Profile(ctx context.Context, canonicalID string) (ProfileSummary, error)
	// Traits returns the unified traits: for each key, the value from the
	// latest event time among the profile's members; then the latest
	// insight run's predicted traits, which replace an event trait of the
	// same key.
	Traits(ctx context.Context, canonicalID string) ([]Trait, error)
	Identities(ctx context.Context, canonicalID string) ([]Identity, error)
	Merges(ctx context.Context, canonicalID string) ([]Merge, error)
	Timeline(ctx context.Context, canonicalID string, q TimelineQuery) ([]TimelineEntry, error)
	// Consents returns every consent decision of the profile's members,
	// oldest first (by event time, then log position).
	Consents(ctx context.Context, canonicalID string) ([]Consent, error)

	// Cluster returns what re-deriving the unified profile needs;
	// ENOTFOUND if no such profile.
	Cluster(ctx context.Context, canonicalID string) (Cluster, error)
	// ReplaceCluster atomically replaces the derived rows of the member
	// profiles (profiles, identifiers, merges among them, traits,
	// timeline, orders) with b's, and records s if it is not nil. The index
	// cursor and the processed counters do not move.
	ReplaceCluster(ctx context.Context, members []string, b IndexBatch, s *Split) error
	// Splits lists every recorded split, oldest first.
	Splits(ctx context.Context) ([]Split, error)
	// ScanTraits calls fn once per canonical profile holding any of the
	// keys, with, per key, the value of the latest event time among its
	// members. The order of profiles is unspecified.
	ScanTraits(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
	// ProfileCount returns the number of unified profiles.
	ProfileCount(ctx context.Context) (int64, error)
	// FindByName returns up to limit canonical profiles with a name trait
	// (NameTraits) starting with prefix, byte for byte. No index holds
	// personal data, so this reads the name traits: seconds at millions of
	// profiles, fine for a person searching.
	FindByName(ctx context.Context, prefix string, limit int) ([]string, error)
}
