// Package kith holds Kith's domain: the types every layer shares (messages,
// sources, profiles, identifiers, traits, merges, accounting), the storage
// interface the embedded and PostgreSQL stores implement, and the error type
// that the HTTP layer turns into stable machine-readable codes.
//
// Adapters live in packages named for their technology (sqlite, postgres,
// httpapi); the engine that turns the event log into profiles lives in
// pipeline; the Segment wire protocol is parsed in collect. They talk to each
// other only through the types declared here.
package kith

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// Source is one channel that sends data (a webshop, an app, a POS, a CRM
// import). Only the hash of its write key is stored.
type Source struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"createdAt"`
	// KeyHash is SHA-256 of the write key; the key itself is shown once.
	KeyHash []byte `json:"-"`
}

// Token is an admin API credential. Only its hash is stored.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"createdAt"`
	Hash      []byte    `json:"-"`
}

// Scope names for admin tokens. ScopeAll and ScopeAdmin grant every scope
// (ScopeAdmin alone also manages tokens and the identity rules);
// ScopeSourcesAdmin grants both source scopes.
const (
	ScopeAll          = "*"
	ScopeAdmin        = "admin"
	ScopeSourcesAdmin = "sources:admin"
	ScopeSourcesWrite = "sources:write"
	ScopeSourcesRead  = "sources:read"
	ScopeProfilesRead = "profiles:read"
	// ScopeProfilesWrite changes profiles (unmerge).
	ScopeProfilesWrite = "profiles:write"
	ScopeStatsRead     = "stats:read"
	// ScopeInsightsRead lists insight runs and reports; ScopeInsightsWrite
	// starts runs.
	ScopeInsightsRead  = "insights:read"
	ScopeInsightsWrite = "insights:write"
	// ScopeDefinitionsWrite creates, changes and deletes audiences and
	// computed traits (reading them needs profiles:read).
	ScopeDefinitionsWrite = "definitions:write"
	// ScopeImportsWrite imports files (CRM, POS, e-mail exports) and DMP
	// audiences into sources.
	ScopeImportsWrite = "imports:write"
	// ScopePrivacyWrite erases people, exports what is held about them
	// and sets their consent.
	ScopePrivacyWrite = "privacy:write"
	// ScopeAuditRead reads the audit log.
	ScopeAuditRead = "audit:read"
	// ScopePIIRead shows traits declared personal (e-mail, phone, name,
	// address, birthday) in full on the profile API; without it they are
	// masked.
	ScopePIIRead = "pii:read"
)

// Scopes lists every scope a token may be given.
var Scopes = []string{ScopeAll, ScopeAdmin, ScopeSourcesAdmin, ScopeSourcesRead, ScopeSourcesWrite,
	ScopeProfilesRead, ScopeProfilesWrite, ScopeStatsRead, ScopeInsightsRead, ScopeInsightsWrite,
	ScopeDefinitionsWrite, ScopeImportsWrite, ScopePrivacyWrite, ScopeAuditRead, ScopePIIRead}

// HasScope reports whether the token grants scope.
func (t Token) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		switch {
		case s == ScopeAll || s == ScopeAdmin || s == scope:
			return true
		case s == ScopeSourcesAdmin && (scope == ScopeSourcesRead || scope == ScopeSourcesWrite || scope == ScopeSourcesAdmin):
			return true
		}
	}
	return false
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
	// ReasonSuppressed is not a rejection: an event carrying an identifier
	// of an erased, suppressed person is dropped at ingest and counted in
	// Counts.Suppressed.
	ReasonSuppressed = "suppressed"
)

// Counts is the accounting of one source. Every received event lands in
// exactly one of Accepted, Duplicate or Rejected; Processed counts accepted
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

// NameTraits are the traits a customer can be found by name with.
var NameTraits = []string{"firstName", "lastName", "name", "first_name", "last_name"}

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

// Identifier types the spine extracts. Later configuration adds custom ones
// (externalIds types pass through as their own type).
const (
	IdentUserID      = "user_id"
	IdentAnonymousID = "anonymous_id"
	IdentEmail       = "email"
	IdentPhone       = "phone"
)

// IdentKey is the opaque key of an identifier: a keyed hash of its type and
// normalised value, so keys and index prefixes never contain personal data.
type IdentKey [16]byte

// MarshalText writes the key in hex (where a key is shown or stored as
// JSON, as an erasure's).
func (k IdentKey) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(k[:])), nil }

// UnmarshalText reads a key written by MarshalText.
func (k *IdentKey) UnmarshalText(b []byte) error {
	n, err := hex.Decode(k[:], b)
	if err != nil || n != len(k) {
		return fmt.Errorf("kith: an identifier key is %d hex bytes", len(k))
	}
	return nil
}

// IdentifierUpsert attaches an identifier to a profile or refreshes when it
// was last seen. FirstSeen/LastSeen are merged as min/max by the store.
type IdentifierUpsert struct {
	Key       IdentKey
	Type      string
	Value     string
	ProfileID string // the profile the identifier was first attached to
	SourceID  string
	MessageID string
	FirstSeen time.Time
	LastSeen  time.Time
}

// Identity is an identifier as the profile API shows it.
type Identity struct {
	Type      string    `json:"type"`
	Value     string    `json:"value"`
	ProfileID string    `json:"profileId"`
	SourceID  string    `json:"sourceId"`
	MessageID string    `json:"messageId"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Merge is a recorded fact: Absorbed became part of Survivor because the
// event MessageID from SourceID carried an identifier of both.
type Merge struct {
	// ID names the merge for an unmerge ("m_" and a number). A split
	// re-derives the profiles involved, and the merges that remain get new
	// ids.
	ID        string    `json:"id"`
	Survivor  string    `json:"survivor"`
	Absorbed  string    `json:"absorbed"`
	SourceID  string    `json:"sourceId"`
	MessageID string    `json:"messageId"`
	IdentType string    `json:"identifierType"`
	Ident     string    `json:"identifier"`
	At        time.Time `json:"at"`
}

// Split is the recorded undoing of a merge: Survivor and Absorbed (the
// profiles the merge joined) are kept apart from then on, whatever links
// them, and the profiles they belong to were re-derived from their events.
// Merge is the undone merge's evidence, By the admin token that asked, and
// Reason why.
type Split struct {
	ID       string    `json:"id"`
	Survivor string    `json:"survivor"`
	Absorbed string    `json:"absorbed"`
	Merge    Merge     `json:"merge"`
	By       string    `json:"by"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Link is a decision that two profiles are one person, taken without an
// event that links them: by an admin (Kind "manual") or by probabilistic
// matching (Kind "probabilistic", with the match weight and its breakdown
// as Evidence). The indexer applies it as a merge once the log has been
// applied up to AtSeq, so a rebuild of the derived state from the log
// applies it at the same point again.
type Link struct {
	ID       string          `json:"id"`
	A        string          `json:"a"`
	B        string          `json:"b"`
	Kind     string          `json:"kind"`
	Weight   float64         `json:"weight,omitempty"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
	By       string          `json:"by"`
	Reason   string          `json:"reason"`
	AtSeq    int64           `json:"atSeq"`
	At       time.Time       `json:"at"`
}

// Link kinds.
const (
	LinkManual        = "manual"
	LinkProbabilistic = "probabilistic"
)

// Detachment is the recorded removal of an identifier from a profile (a
// shared family e-mail, a till's card number typed for the wrong
// customer): from then on the identifier identifies no one, and the
// profile it was on was re-derived without it. Only the identifier's type
// and keyed hash are kept.
type Detachment struct {
	ID      string    `json:"id"`
	Key     IdentKey  `json:"-"`
	Type    string    `json:"type"`
	Profile string    `json:"profile"`
	By      string    `json:"by"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// ReviewItem is a candidate pair probabilistic matching was not sure
// enough about to merge: a person accepts (a Link follows) or rejects it.
type ReviewItem struct {
	ID          string          `json:"id"`
	A           string          `json:"a"`
	B           string          `json:"b"`
	Probability float64         `json:"probability"`
	Weight      float64         `json:"weight"`
	Evidence    json.RawMessage `json:"evidence,omitempty"`
	RunID       string          `json:"runId"`
	Status      string          `json:"status"`
	CreatedAt   time.Time       `json:"createdAt"`
	DecidedAt   time.Time       `json:"decidedAt,omitzero"`
	DecidedBy   string          `json:"decidedBy,omitempty"`
	Reason      string          `json:"reason,omitempty"`
}

// PairKey names an unordered pair of profiles: the review queue holds a
// pair once, whichever way round it was found.
func PairKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// Review statuses.
const (
	ReviewPending  = "pending"
	ReviewAccepted = "accepted"
	ReviewRejected = "rejected"
)

// DecisionStore keeps the identity decisions people and matching take:
// links and the review queue. They are not derived from the log, so they
// are kept durably, apart from the derived state.
type DecisionStore interface {
	SaveLink(ctx context.Context, l Link) error
	// DeleteLink removes a link that could not take effect.
	DeleteLink(ctx context.Context, id string) error
	// Links lists every link, in AtSeq order.
	Links(ctx context.Context) ([]Link, error)
	// AddReviewItems queues candidates; a pair (in either order) already
	// queued, accepted or rejected is not queued again.
	AddReviewItems(ctx context.Context, items []ReviewItem) (added int, err error)
	// ReviewItems lists at most limit items with the status ("" for
	// all), newest first.
	ReviewItems(ctx context.Context, status string, limit int) ([]ReviewItem, error)
	ReviewItem(ctx context.Context, id string) (ReviewItem, error)
	// DecideReview sets a pending item's status; ECONFLICT if it is not
	// pending any more.
	DecideReview(ctx context.Context, id, status, by, reason string, at time.Time) error
	SaveDetachment(ctx context.Context, d Detachment) error
	// Detachments lists every detachment, oldest first.
	Detachments(ctx context.Context) ([]Detachment, error)
	// IdentityRules returns the identity rules set through the admin API
	// (JSON), or nil if none were.
	IdentityRules(ctx context.Context) ([]byte, error)
	SetIdentityRules(ctx context.Context, rules []byte) error
}

// Cluster is what re-deriving a unified profile needs: its member profile
// ids, the identifier keys they own, and the log positions of the events
// on their timelines.
type Cluster struct {
	Members []string
	Keys    []IdentKey
	Seqs    []int64
}

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

// OrderItem is one product line of an order, as the Segment e-commerce
// spec's products[] carries it.
type OrderItem struct {
	ProductID string  `json:"product_id,omitempty"`
	SKU       string  `json:"sku,omitempty"`
	Name      string  `json:"name,omitempty"`
	Category  string  `json:"category,omitempty"`
	Price     float64 `json:"price,omitempty"`
	Quantity  float64 `json:"quantity,omitempty"`
}

// Order is an `Order Completed` event as the insights read it, kept by the
// indexer on the profile the event resolved to (like a timeline entry).
type Order struct {
	ProfileID string
	Seq       int64
	Timestamp time.Time
	SourceID  string
	OrderID   string
	// Revenue is the order's value: properties.revenue, else total, else
	// the sum of price × quantity over its products.
	Revenue  float64
	Currency string
	Items    []OrderItem
}

// CustomerOrders is one unified profile's orders, oldest first.
type CustomerOrders struct {
	ProfileID string // canonical
	Orders    []Order
}

// ProfileInsights is what one insight run predicted for one profile: trait
// values keyed by trait name (p_alive, clv_365d, rfm_segment, ...).
type ProfileInsights struct {
	ProfileID string
	Traits    map[string]json.RawMessage
}

// InsightRun is the record of one insight run: when and why it ran, on what
// data, and its report (fitted parameters, log-likelihoods, convergence,
// validation), which the insights package defines.
type InsightRun struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Trigger    string          `json:"trigger"`
	StartedAt  time.Time       `json:"startedAt"`
	FinishedAt time.Time       `json:"finishedAt,omitzero"`
	Error      string          `json:"error,omitempty"`
	Report     json.RawMessage `json:"report,omitempty"`
}

// Insight run statuses.
const (
	RunRunning  = "running"
	RunFinished = "finished"
	RunFailed   = "failed"
)

// InsightStore gives the insights engine its input (orders per unified
// profile) and keeps its output (predicted traits and run records).
type InsightStore interface {
	// ScanOrders calls fn once per canonical profile that has orders, with
	// its orders across all merged members oldest first. The order in
	// which profiles are visited is unspecified. An error from fn stops
	// the scan and is returned.
	ScanOrders(ctx context.Context, fn func(CustomerOrders) error) error
	// WriteInsights stores the predicted traits of run for ps, replacing
	// what earlier runs predicted for those profiles.
	WriteInsights(ctx context.Context, runID string, at time.Time, ps []ProfileInsights) error
	// SaveInsightRun creates or updates a run record.
	SaveInsightRun(ctx context.Context, r InsightRun) error
	// InsightRun returns one run; ENOTFOUND if absent.
	InsightRun(ctx context.Context, id string) (InsightRun, error)
	// InsightRuns lists the latest runs, newest first.
	InsightRuns(ctx context.Context, limit int) ([]InsightRun, error)
	// ScanPredicted calls fn once per canonical profile holding predicted
	// values of any of the keys, with those values (the latest run's; for
	// a merged profile, its members' latest). The order of profiles is
	// unspecified. Audiences read it when a definition starts using a
	// predicted trait.
	ScanPredicted(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
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
}

// SourceStore keeps sources and admin tokens.
type SourceStore interface {
	CreateSource(ctx context.Context, s Source) error
	Sources(ctx context.Context) ([]Source, error)
	// SetSourceDisabled enables or disables a source; ENOTFOUND if absent.
	SetSourceDisabled(ctx context.Context, id string, disabled bool) error
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash finds a token by the SHA-256 of its secret; ENOTFOUND.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	// Tokens lists the tokens, oldest first.
	Tokens(ctx context.Context) ([]Token, error)
	// RevokeToken deletes a token, so its secret no longer authenticates;
	// ENOTFOUND if absent.
	RevokeToken(ctx context.Context, id string) error
}

// Store is everything Kith persists. The sqlite and postgres packages
// implement it and pass the same conformance suite (storetest).
type Store interface {
	EventLog
	ProfileStore
	SourceStore
	InsightStore
	DecisionStore
	AudienceStore
	DMPStore
	AuditStore
	PrivacyStore
	RetentionStore
	// Counts returns the accounting per source id.
	Counts(ctx context.Context) (map[string]Counts, error)
	// Secret returns the per-installation key for identifier hashing,
	// created on first use and stable afterwards.
	Secret(ctx context.Context) ([]byte, error)
	// PruneDedup forgets messageIds received before cutoff.
	PruneDedup(ctx context.Context, cutoff time.Time) error
	// DailyEvents returns the events accepted per day of arrival (UTC,
	// "2006-01-02") over all sources, for the days from since on.
	DailyEvents(ctx context.Context, since time.Time) (map[string]int64, error)
	Close() error
}

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

// AuditEntry is one admin action in the append-only audit log: who (the
// token), when, what (the route), on what (the target, with identifiers
// replaced by keyed hashes), and how it ended.
type AuditEntry struct {
	Seq       int64     `json:"seq"`
	At        time.Time `json:"at"`
	TokenID   string    `json:"tokenId"`
	TokenName string    `json:"tokenName"`
	// Action is the route, "METHOD /path/{param}".
	Action string `json:"action"`
	// Target names what the action was on: the route's parameters
	// ("ref=p_0000…", "key=loyal_customers").
	Target string `json:"target,omitempty"`
	// Status is the HTTP status; Outcome "ok", "denied" (403) or
	// "failed".
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
}

// AuditOutcome names the outcome of a request that answered status.
func AuditOutcome(status int) string {
	switch {
	case status == 403: // Forbidden
		return "denied"
	case status >= 400:
		return "failed"
	}
	return "ok"
}

// AuditQuery selects audit entries, oldest first.
type AuditQuery struct {
	After   int64
	TokenID string
	// Action and Target match entries containing them.
	Action, Target string
	Limit          int
	// Newest returns the latest entries first (After is then ignored).
	Newest bool
}

// AuditStore keeps the audit log. There is no way to change or delete an
// entry.
type AuditStore interface {
	AppendAudit(ctx context.Context, es []AuditEntry) error
	AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
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
}

// ErasureScope is what erasing one unified profile removes: its member
// profiles, the identifiers they own and the log positions of their events.
type ErasureScope struct {
	Members []string
	Keys    []IdentKey
	Seqs    []int64
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
	ErasePeople(ctx context.Context, s ErasureScope) (map[string]int64, error)
	// AddSuppressions records identifier keys whose later events are
	// dropped at ingest.
	AddSuppressions(ctx context.Context, keys []IdentKey, at time.Time) error
	// Suppressions lists them.
	Suppressions(ctx context.Context) ([]IdentKey, error)
}

// RetentionStore is what the retention sweeper needs beyond reads.
type RetentionStore interface {
	// ProfileIDs lists canonical profile ids after after, in id order.
	ProfileIDs(ctx context.Context, after string, limit int) ([]string, error)
	// ProfileCount returns the number of unified profiles.
	ProfileCount(ctx context.Context) (int64, error)
	// FindByName returns up to limit canonical profiles with a name trait
	// (NameTraits) starting with prefix, byte for byte. No index holds
	// personal data, so this reads the name traits: seconds at millions of
	// profiles, fine for a person searching.
	FindByName(ctx context.Context, prefix string, limit int) ([]string, error)
	// ExpireEvents deletes the events at seqs from the log together with
	// the timeline entries and orders derived from them on the given
	// member profiles, and says how many events it deleted. Consent
	// decisions stay (an expired withdrawal must not bring back an older
	// grant); they go with the profile.
	ExpireEvents(ctx context.Context, members []string, seqs []int64) (int64, error)
}
