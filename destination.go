package kith

import (
	"context"
	"encoding/json"
	"time"
)

// Destination types: how a destination receives what it subscribes to.
const (
	// DestinationWebhook POSTs each message (or a batch) as JSON, signed
	// per the Standard Webhooks specification.
	DestinationWebhook = "webhook"
	// DestinationSegment forwards in the Segment HTTP Tracking API format
	// (/v1/batch with a write key) to any compatible receiver.
	DestinationSegment = "segment"
)

// How audience changes reach a destination.
const (
	// AudienceAsTrack sends a track "Audience Entered" / "Audience Exited"
	// with properties.audience_key (the default).
	AudienceAsTrack = "track"
	// AudienceAsIdentify sends an identify with the trait
	// <audience_key>: true|false.
	AudienceAsIdentify = "identify"
)

// Destination is a tool Kith delivers data to, and what it subscribes to.
// Its progress is a position in the event log and one in the audience
// change stream, plus the deliveries that wait for a retry: fan-out never
// copies an event once per destination.
type Destination struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
	// Config is the type's settings (URL, headers, timeout, batching …).
	// It holds secrets, which the API never serves back.
	Config json.RawMessage `json:"config"`
	// Events selects the accepted events sent; nil sends none.
	Events *EventFilter `json:"events,omitempty"`
	// Audiences lists the audience keys whose entries and exits are
	// sent, as AudienceAs says.
	Audiences  []string `json:"audiences,omitempty"`
	AudienceAs string   `json:"audienceAs,omitempty"`
	// Consent lists the consent categories a profile must have granted,
	// every one, for its data to be sent (privacy.Allowed).
	Consent []string `json:"consent,omitempty"`
	// RateLimit caps deliveries per second (0: no cap).
	RateLimit float64   `json:"rateLimit,omitempty"`
	Paused    bool      `json:"paused"`
	CreatedAt time.Time `json:"createdAt"`
}

// EventFilter selects events by call type, event name and source; an
// empty list allows any.
type EventFilter struct {
	Types   []string `json:"types,omitempty"`
	Events  []string `json:"events,omitempty"`
	Sources []string `json:"sources,omitempty"`
}

// DestinationProgress is how far a destination got in each stream it
// reads: every event with Seq ≤ LogSeq and every membership change with
// Seq ≤ ChangeSeq was delivered, filtered, or is among its deliveries.
type DestinationProgress struct {
	LogSeq    int64 `json:"logSeq"`
	ChangeSeq int64 `json:"changeSeq"`
}

// Delivery is one message for one destination that did not go through at
// its first attempt: it waits for a retry, or is dead-lettered. Later
// messages of the same Key (a profile) wait behind it, so a destination
// receives each profile's messages in order while others flow.
type Delivery struct {
	// ID is stable across retries (the webhook-id a receiver
	// deduplicates by).
	ID          string          `json:"id"`
	Destination string          `json:"destination"`
	Key         string          `json:"key"`
	Seq         int64           `json:"seq"`
	Kind        string          `json:"kind"` // event, audience, trait, delete
	Body        json.RawMessage `json:"body"`
	Attempts    int             `json:"attempts"`
	FirstAt     time.Time       `json:"firstAt"`
	NextAt      time.Time       `json:"nextAt"`
	LastStatus  int             `json:"lastStatus,omitempty"`
	LastError   string          `json:"lastError,omitempty"`
	Dead        bool            `json:"dead"`
}

// DestinationCounts is the accounting of one destination: every message
// it subscribed to is delivered, filtered (by reason), retrying or
// dead-lettered.
type DestinationCounts struct {
	Delivered    int64            `json:"delivered"`
	Retrying     int64            `json:"retrying"`
	DeadLettered int64            `json:"dead_lettered"`
	Filtered     map[string]int64 `json:"filtered,omitempty"`
}

// DestinationUpdate is one step of a destination's worker, applied
// atomically: its new progress, deliveries added or changed (Put) and
// finished (Done: delivered, or dropped from the dead-letter list by a
// replay), and counter increments.
type DestinationUpdate struct {
	Progress  DestinationProgress
	Put       []Delivery
	Done      []string
	Delivered int64
	Filtered  map[string]int64
}

// DestinationStore keeps destinations, their progress and deliveries.
type DestinationStore interface {
	// CreateDestination stores a new destination; ECONFLICT if the name
	// is taken.
	CreateDestination(ctx context.Context, d Destination, start DestinationProgress) error
	// UpdateDestination replaces a destination's settings (by ID);
	// ENOTFOUND if absent.
	UpdateDestination(ctx context.Context, d Destination) error
	// Destination returns one by name; ENOTFOUND if absent.
	Destination(ctx context.Context, name string) (Destination, error)
	// Destinations lists them by name.
	Destinations(ctx context.Context) ([]Destination, error)
	// DeleteDestination removes one with its progress, deliveries and
	// counters; ENOTFOUND if absent.
	DeleteDestination(ctx context.Context, id string) error
	// DestinationProgress returns where a destination's worker is.
	DestinationProgress(ctx context.Context, id string) (DestinationProgress, error)
	// AdvanceDestination applies one step of its worker atomically.
	AdvanceDestination(ctx context.Context, id string, u DestinationUpdate) error
	// Deliveries lists up to limit of a destination's retrying (dead
	// false) or dead-lettered deliveries with ID > after, by ID.
	Deliveries(ctx context.Context, id string, dead bool, after string, limit int) ([]Delivery, error)
	// DestinationCounts returns each destination's accounting by ID.
	DestinationCounts(ctx context.Context) (map[string]DestinationCounts, error)
}
