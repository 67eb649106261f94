package kith

import (
	"context"
	"time"
)

// Consent is one consent decision about one category (Segment's
// context.consent.categoryPreferences, on any event, or a `Segment Consent
// Preference Updated` event; the admin API records one as such an event),
// kept on the profile the event resolved to, with its history.
type Consent struct {
	ProfileID string    `json:"profileId"`
	Category  string    `json:"category"`
	Granted   bool      `json:"granted"`
	At        time.Time `json:"at"`
	SourceID  string    `json:"sourceId"`
	MessageID string    `json:"messageId"`
	Seq       int64     `json:"seq"`
}

// Erasure statuses.
const (
	ErasureAccepted = "accepted"
	ErasureRunning  = "running"
	ErasureFinished = "finished"
	ErasureFailed   = "failed"
)

// Erasure is a request to erase a person: the whole unified profile an
// identifier belongs to, with everything derived from it. The identifier
// itself is not kept: only its type and keyed hash.
type Erasure struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	IdentType string `json:"identifierType"`
	// IdentKey is the keyed hash of the identifier (hex in JSON).
	IdentKey    IdentKey         `json:"identifierKey"`
	Suppress    bool             `json:"suppress"`
	RequestedBy string           `json:"requestedBy,omitempty"`
	CreatedAt   time.Time        `json:"createdAt"`
	StartedAt   time.Time        `json:"startedAt,omitzero"`
	FinishedAt  time.Time        `json:"finishedAt,omitzero"`
	Counts      map[string]int64 `json:"counts,omitempty"`
	Error       string           `json:"error,omitempty"`
	// Destinations are the destinations that had received the person's
	// data and were sent a deletion message, with how that went.
	Destinations []ErasureDestination `json:"destinations,omitempty"`
}

// How a deletion message to a destination is doing.
const (
	DeletionSent    = "sent"    // the destination acknowledged it
	DeletionPending = "pending" // waiting for its first attempt or a retry
	DeletionFailed  = "failed"  // dead-lettered (replayable)
	// DeletionDropped: the destination was deleted before the deletion
	// went through.
	DeletionDropped = "dropped"
)

// ErasureDestination is one destination an erasure sent a deletion
// message to. Status and Error are read when the erasure is: they change
// as the deletion is retried.
type ErasureDestination struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Deliveries are the ids of its deletion messages (one per userId,
	// and per anonymousId beyond the first), as its delivery lists show
	// them.
	Deliveries []string `json:"deliveries"`
	Status     string   `json:"status,omitempty"`
	Attempts   int      `json:"attempts,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// PrivacyStore keeps erasure requests and suppressions, and erases.
type PrivacyStore interface {
	// SaveErasure creates or updates an erasure request.
	SaveErasure(ctx context.Context, e Erasure) error
	// Erasure returns one; ENOTFOUND if absent.
	Erasure(ctx context.Context, id string) (Erasure, error)
	// Erasures lists the latest, newest first.
	Erasures(ctx context.Context, limit int) ([]Erasure, error)
	// ErasePeople deletes everything the scope names, in every file or
	// table: the events, the derived rows (profiles, identifiers, merges,
	// traits, timeline, orders), predicted traits, third-party audiences
	// of the identifiers, and identity decisions and review items naming
	// the members. It returns what it deleted, by kind. Audience data is
	// the audience engine's (EraseAudienceHistory).
	ErasePeople(ctx context.Context, s Cluster) (map[string]int64, error)
	// AddSuppressions records identifier keys whose later events are
	// dropped at ingest.
	AddSuppressions(ctx context.Context, keys []IdentKey, at time.Time) error
	// Suppressions lists them.
	Suppressions(ctx context.Context) ([]IdentKey, error)
}
