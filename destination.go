package kith

import (
	"context"
	"encoding/json"
	"fmt"
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
	// Traits lists the trait keys (computed, predicted or from events)
	// whose changes are sent, as identify calls.
	Traits []string `json:"traits,omitempty"`
	// Consent lists the consent categories a profile must have granted,
	// every one, for its data to be sent (privacy.Allowed).
	Consent []string `json:"consent,omitempty"`
	// Mapping, if set, reshapes the event and audience messages sent.
	Mapping *Mapping `json:"mapping,omitempty"`
	// RateLimit caps deliveries per second (0: no cap).
	RateLimit float64   `json:"rateLimit,omitempty"`
	Paused    bool      `json:"paused"`
	CreatedAt time.Time `json:"createdAt"`
}

// Settings returns the document stores keep a destination's settings as:
// d as JSON without its ID, Name, Config and CreatedAt, which stores keep
// in columns of their own (Config as given: the bytes the API passed,
// secrets untouched). One document, so that a new setting needs no
// migration; DestinationFromSettings reads it back.
func (d Destination) Settings() ([]byte, error) {
	name := d.Name
	d.ID, d.Name, d.Config, d.CreatedAt = "", "", nil, time.Time{}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode destination %q: %w", name, err)
	}
	return b, nil
}

// DestinationFromSettings returns the destination whose settings document
// (Destination.Settings) is settings, with the columns stored beside it;
// CreatedAt in UTC.
func DestinationFromSettings(id, name string, settings, config []byte, createdAt time.Time) (Destination, error) {
	var d Destination
	if err := json.Unmarshal(settings, &d); err != nil {
		return d, fmt.Errorf("decode destination %q: %w", name, err)
	}
	d.ID, d.Name, d.Config, d.CreatedAt = id, name, nil, createdAt.UTC()
	if config != nil {
		d.Config = json.RawMessage(config)
	}
	return d, nil
}

// Mapping reshapes the messages a destination is sent, so that a
// receiver gets the shape it expects. A path names a field through
// nested objects, dot-separated ("properties.revenue",
// "context.traits.email"). The steps apply in this order: Drop, Rename,
// Set, Traits. Deletion messages are not mapped: their shape is fixed.
type Mapping struct {
	// Drop removes fields.
	Drop []string `json:"drop,omitempty"`
	// Rename moves fields: from path → to path. Every source is read
	// before any target is written, so renames do not chain.
	Rename map[string]string `json:"rename,omitempty"`
	// Set sets fields to constant JSON values.
	Set map[string]json.RawMessage `json:"set,omitempty"`
	// Traits sets fields to the value of a trait of the profile the
	// message is about: path → trait key. A trait the profile lacks
	// leaves the field as it is.
	Traits map[string]string `json:"traits,omitempty"`
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
	// Sync, when above 0, says the destination is still being sent the
	// members its audiences had when it subscribed, before their
	// changes: the members of Audiences[Sync-1] after the member
	// SyncAfter (a profile id, in the store's member order; "" from the
	// first) are next. 0 once every audience's members were sent.
	Sync      int    `json:"sync,omitempty"`
	SyncAfter string `json:"syncAfter,omitempty"`
	// ReplayTo, when above ReplayAt, says a stretch of the log is being
	// sent again: its events with ReplayAt < Seq ≤ ReplayTo are next,
	// with delivery ids of their own (ReplayID, the replay's request
	// time in Unix milliseconds, tells them from the first sending and
	// from another replay's). All three are 0 when no replay is running.
	ReplayAt int64 `json:"replayAt,omitempty"`
	ReplayTo int64 `json:"replayTo,omitempty"`
	ReplayID int64 `json:"replayId,omitempty"`
	// TraitSeq: every trait change with Seq ≤ TraitSeq was delivered,
	// filtered, or is among the deliveries (0 for a destination
	// subscribed to no traits).
	TraitSeq int64 `json:"traitSeq,omitempty"`
}

// Extra returns p without its log and audience change positions: the
// trait change position and the first-sync and replay positions, which
// stores keep in a row of their own, present only while one is not zero.
func (p DestinationProgress) Extra() DestinationProgress {
	p.LogSeq, p.ChangeSeq = 0, 0
	return p
}

// Replaying reports whether a stretch of the log is being sent again.
func (p DestinationProgress) Replaying() bool { return p.ReplayTo > p.ReplayAt }

// Delivery is one message for one destination that did not go through at
// its first attempt: it waits for a retry, or is dead-lettered. Later
// messages of the same Key (a profile) wait behind it, so a destination
// receives each profile's messages in order while others flow.
type Delivery struct {
	// ID is stable across retries (the webhook-id a receiver
	// deduplicates by).
	ID string `json:"id"`
	// Destination is the ID of the destination it is for; stores fill it
	// in from the destination a delivery is stored under and ignore it
	// in a Put.
	Destination string `json:"destination"`
	Key         string `json:"key"`
	// Seq orders a key's deliveries: the order the worker took them in,
	// whichever stream each came from, so a profile's messages keep
	// their order across retries and restarts.
	Seq        int64           `json:"seq"`
	Kind       string          `json:"kind"` // event, audience, trait, delete
	Body       json.RawMessage `json:"body"`
	Attempts   int             `json:"attempts"`
	FirstAt    time.Time       `json:"firstAt"`
	NextAt     time.Time       `json:"nextAt"`
	LastStatus int             `json:"lastStatus,omitempty"`
	// LastError is why the last attempt failed. It comes from remote
	// servers and may hold any bytes; stores keep SafeText(LastError).
	LastError string `json:"lastError,omitempty"`
	Dead      bool   `json:"dead"`
}

// DestinationCounts is the accounting of one destination: every message
// it subscribed to is delivered, filtered (by reason), retrying or
// dead-lettered. The JSON names are the API's published ones
// (dead_lettered with an underscore, as the activation interface fixes
// them).
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
	// Progress is where the worker is now. A position never moves
	// backwards: a step with a position below the stored one is refused
	// (EINVALID) and changes nothing, since a worker that moves back is
	// a bug or a second worker on the same destination, and either would
	// send messages twice. A step that moves no stream (retries only)
	// passes the stored progress.
	Progress DestinationProgress
	// Put adds deliveries, or changes those with the same ID: their
	// Attempts, NextAt, LastStatus, LastError and Dead are replaced,
	// while the message itself (Key, Seq, Kind, Body, FirstAt) stays as
	// first put. Puts apply before Done.
	Put []Delivery
	// Done lists the IDs of deliveries to remove; unknown IDs are
	// ignored.
	Done []string
	// Delivered and Filtered (by reason) are added to the counters.
	Delivered int64
	Filtered  map[string]int64
	// Recipients are the profiles (by id) the step sent data about, or
	// tried to: the destination is recorded as having received them
	// (ReceivedBy), so that erasing one of them sends it a deletion.
	Recipients []string
	// Forget lists profiles (by id) that were erased: the deliveries
	// keyed by them (retrying and dead-lettered) are removed and counted
	// as Filtered[DeliveriesErased], and the record that the destination
	// received them is removed. Forget applies before Put, so a deletion
	// message put in the same step stays.
	Forget []string
}

// DeliveriesErased is the filtered reason of deliveries removed because
// the person they were about was erased (DestinationUpdate.Forget).
const DeliveriesErased = "erased"

// Check returns an EINVALID error when u cannot apply to a destination
// whose stored progress is from: its progress is behind from in either
// stream, or it would decrease a counter. Stores call it inside the
// transaction that applies u, so that they refuse the same steps.
func (u DestinationUpdate) Check(from DestinationProgress) error {
	if u.Progress.LogSeq < from.LogSeq || u.Progress.ChangeSeq < from.ChangeSeq || u.Progress.TraitSeq < from.TraitSeq {
		return Errorf(EINVALID, "destination progress would move backwards: log %d → %d, changes %d → %d, traits %d → %d",
			from.LogSeq, u.Progress.LogSeq, from.ChangeSeq, u.Progress.ChangeSeq, from.TraitSeq, u.Progress.TraitSeq)
	}
	if u.Delivered < 0 {
		return Errorf(EINVALID, "destination counter delivered would decrease by %d", -u.Delivered)
	}
	for reason, n := range u.Filtered {
		if n < 0 {
			return Errorf(EINVALID, "destination counter filtered %q would decrease by %d", reason, -n)
		}
	}
	return nil
}

// DestinationStore keeps destinations, their progress and deliveries.
type DestinationStore interface {
	// CreateDestination stores a new destination with its worker's
	// starting progress; ECONFLICT if the name or the ID is taken.
	CreateDestination(ctx context.Context, d Destination, start DestinationProgress) error
	// UpdateDestination replaces a destination's settings (by ID),
	// keeping its CreatedAt, progress, deliveries and counters; ENOTFOUND
	// if absent, ECONFLICT if it is renamed to a name taken.
	UpdateDestination(ctx context.Context, d Destination) error
	// Destination returns one by name; ENOTFOUND if absent.
	Destination(ctx context.Context, name string) (Destination, error)
	// Destinations lists them by name (byte order).
	Destinations(ctx context.Context) ([]Destination, error)
	// DeleteDestination removes one with its progress, deliveries and
	// counters; ENOTFOUND if absent.
	DeleteDestination(ctx context.Context, id string) error
	// DestinationProgress returns where a destination's worker is;
	// ENOTFOUND if the destination is absent.
	DestinationProgress(ctx context.Context, id string) (DestinationProgress, error)
	// AdvanceDestination applies one step of its worker atomically (see
	// DestinationUpdate): all of it or, on error, nothing. ENOTFOUND if
	// the destination is absent (deleted while its worker ran), EINVALID
	// if the progress moves backwards or the store refuses a value.
	AdvanceDestination(ctx context.Context, id string, u DestinationUpdate) error
	// Deliveries lists up to limit (> 0) of a destination's retrying
	// (dead false) or dead-lettered deliveries with ID > after, by ID
	// (byte order): the pages the API and the console show.
	Deliveries(ctx context.Context, id string, dead bool, after string, limit int) ([]Delivery, error)
	// PendingDeliveries returns all of a destination's retrying (not
	// dead) deliveries ordered by Key, then Seq, then ID: what a worker
	// reads when it starts, to know which keys are blocked and in which
	// order their messages wait. Paging by ID would give them in random
	// key order, leaving the worker to collect and sort them all anyway.
	PendingDeliveries(ctx context.Context, id string) ([]Delivery, error)
	// Delivery returns one of a destination's retrying or dead-lettered
	// deliveries by ID; ENOTFOUND if there is none (delivered, dropped,
	// never made, or the destination is gone).
	Delivery(ctx context.Context, id, delivery string) (Delivery, error)
	// ReceivedBy returns the IDs of the destinations recorded as having
	// received data about any of the profiles (DestinationUpdate's
	// Recipients), by ID.
	ReceivedBy(ctx context.Context, profiles []string) ([]string, error)
	// DestinationCounts returns the accounting of every destination by
	// ID: Delivered and Filtered from counters, Retrying and
	// DeadLettered counted from the deliveries.
	DestinationCounts(ctx context.Context) (map[string]DestinationCounts, error)
}
