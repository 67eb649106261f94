package kith

import (
	"context"
	"encoding/json"
	"math"
	"time"
)

// Message is one accepted event in the append-only log, in Segment message
// shape. The typed fields are the ones that routing, identity, audiences and
// analytics read without decoding Raw; Raw is the full normalised message as
// JSON, exactly as it will be served back by the events API.
type Message struct {
	// Seq is the log position, assigned by the store at append; it orders
	// the log and is the cursor the indexer advances over.
	Seq         int64
	SourceID    string
	MessageID   string
	Type        string
	Event       string // track event name, or page/screen name
	UserID      string
	AnonymousID string
	// Timestamp is the corrected event time (see collect), ReceivedAt the
	// server's clock when the request arrived.
	Timestamp  time.Time
	ReceivedAt time.Time
	// Revenue is properties.revenue when it is a number, for analytics.
	Revenue *float64
	Raw     json.RawMessage
}

// EventTime is when the event happened as far as Kith trusts it: its
// corrected timestamp, but never after it was received, so a client clock
// far in the future cannot pin a trait or hold a time window open.
func (m Message) EventTime() time.Time {
	if !m.ReceivedAt.IsZero() && m.Timestamp.After(m.ReceivedAt) {
		return m.ReceivedAt
	}
	return m.Timestamp
}

// Rejection reasons. They are stable strings: clients and dashboards key on
// them, and they label the rejected counters.
const (
	ReasonInvalidJSON      = "invalid_json"
	ReasonMissingType      = "missing_type"
	ReasonUnknownType      = "unknown_type"
	ReasonMissingID        = "missing_user_or_anonymous_id"
	ReasonMissingEvent     = "missing_event"
	ReasonMissingPrevious  = "missing_previous_id"
	ReasonMissingGroupID   = "missing_group_id"
	ReasonEventTooLarge    = "event_too_large"
	ReasonMessageIDTooLong = "message_id_too_long"
	ReasonInvalidField     = "invalid_field"
)

// Counts is the accounting of one source. Every received event lands in
// exactly one of Accepted, Duplicate, Rejected or Suppressed; Processed counts accepted
// events the pipeline has applied to profiles.
type Counts struct {
	Received  int64            `json:"received"`
	Accepted  int64            `json:"accepted"`
	Duplicate int64            `json:"duplicate"`
	Rejected  map[string]int64 `json:"rejected"`
	// Suppressed counts events dropped because they carry an identifier
	// of an erased person who asked not to be tracked again.
	Suppressed int64 `json:"suppressed"`
	Processed  int64 `json:"processed"`
	// LastEventAt is when the source's latest accepted event arrived.
	LastEventAt time.Time `json:"lastEventAt,omitzero"`
}

// DayPrefix names the counters of accepted events per day of arrival
// ("day:2026-11-28"), which the console charts without scanning the log.
const DayPrefix = "day:"

// RejectedTotal sums the rejections over all reasons (saturating, like
// Add).
func (c Counts) RejectedTotal() int64 {
	var n int64
	for _, v := range c.Rejected {
		n = addCount(n, v)
	}
	return n
}

// Add adds o's counts to c (for totals over sources). Sums saturate at the
// largest int64 instead of wrapping to a negative count.
func (c *Counts) Add(o Counts) {
	c.Received = addCount(c.Received, o.Received)
	c.Accepted = addCount(c.Accepted, o.Accepted)
	c.Duplicate = addCount(c.Duplicate, o.Duplicate)
	c.Suppressed = addCount(c.Suppressed, o.Suppressed)
	c.Processed = addCount(c.Processed, o.Processed)
	if len(o.Rejected) > 0 && c.Rejected == nil {
		c.Rejected = map[string]int64{}
	}
	for reason, n := range o.Rejected {
		c.Rejected[reason] = addCount(c.Rejected[reason], n)
	}
	if o.LastEventAt.After(c.LastEventAt) {
		c.LastEventAt = o.LastEventAt
	}
}

// addCount adds two counts, saturating at the int64 bounds.
func addCount(a, b int64) int64 {
	switch s := a + b; {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	default:
		return s
	}
}

// AppendBatch is one group commit on the ack path: the accepted-so-far
// events of several requests plus the rejections those requests produced,
// so that counters and events become durable together.
type AppendBatch struct {
	Events []Message
	// Rejected counts rejections by source and reason.
	Rejected map[string]map[string]int64
	// Suppressed counts, by source, events dropped because they carry an
	// identifier of an erased person who asked not to be tracked again.
	// They are received, and neither stored nor rejected.
	Suppressed map[string]int64
}

// AppendResult says which events of an AppendBatch were stored.
type AppendResult struct {
	// Duplicate[i] is true when Events[i] repeated a messageId already in
	// the dedup window (or earlier in the same batch) and was not stored.
	Duplicate []bool
	// Seqs[i] is the Seq Events[i] was stored at (0 for a duplicate). A
	// store may leave Seqs nil; it is an optimisation (the indexer then
	// reads new events back from the log instead of taking them from
	// memory), never needed for correctness.
	Seqs []int64
}

// EventLog is the durable, append-only, time-ordered record of accepted
// events. Append is the ack path: when it returns nil, the events and the
// counters are on disk.
type EventLog interface {
	// Append stores the non-duplicate events with ascending Seq values and
	// updates received/accepted/duplicate/rejected counters, durably, in one
	// commit. Events are deduplicated by (SourceID, MessageID) within the
	// dedup window, across restarts.
	Append(ctx context.Context, b AppendBatch) (AppendResult, error)
	// ReadLog returns up to limit events with Seq > after, in Seq order.
	ReadLog(ctx context.Context, after int64, limit int) ([]Message, error)
	// LogHead returns the highest Seq stored (0 for an empty log).
	LogHead(ctx context.Context) (int64, error)
	// EventsBySeq returns the events with the given Seqs, in the given
	// order; Seqs that do not exist are skipped.
	EventsBySeq(ctx context.Context, seqs []int64) ([]Message, error)
}
