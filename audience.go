package kith

import (
	"context"
	"encoding/json"
	"time"
)

// Definition kinds: what a Definition defines.
const (
	// KindAudience is a segment: a condition every profile is a member of
	// or not.
	KindAudience = "audience"
	// KindComputedTrait is a value computed per profile from its events
	// (a count, a sum, the last value, ...), shown as a trait with
	// provenance "computed".
	KindComputedTrait = "computed_trait"
)

// Backfill states of a definition.
const (
	BackfillPending = "pending"
	BackfillRunning = "running"
	BackfillDone    = "done"
	BackfillFailed  = "failed"
)

// Definition is an audience or computed trait as the user saved it. Text is
// the readable form and Condition the equivalent JSON tree (package
// audience parses and prints both); Version grows with every change, so a
// backfill knows whether it is still current.
type Definition struct {
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	Text      string          `json:"definition"`
	Condition json.RawMessage `json:"condition"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Backfill  Backfill        `json:"backfill"`
}

// Backfill is the progress of evaluating a definition over every profile
// after it was created or changed.
type Backfill struct {
	State      string    `json:"state"`
	Done       int64     `json:"done"`
	Total      int64     `json:"total"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// Member is one profile's membership of an audience.
type Member struct {
	Audience  string    `json:"audience"`
	ProfileID string    `json:"id"`
	Since     time.Time `json:"since,omitzero"`
}

// MembershipChange is one entry into or exit from an audience: the
// membership history and the change stream that activation reads (as
// "Audience Entered" / "Audience Exited"). Seq is assigned by the store in
// the order changes are applied.
type MembershipChange struct {
	Seq       int64     `json:"seq"`
	Audience  string    `json:"audience"`
	ProfileID string    `json:"profileId"`
	Entered   bool      `json:"entered"`
	At        time.Time `json:"at"`
	// Cause says why: "event" (with the log seq in CauseSeq), "expiry"
	// (a time window ran out), "backfill", "merge", "split", "deleted".
	Cause    string `json:"cause"`
	CauseSeq int64  `json:"causeSeq,omitempty"`
}

// TraitChange is a new value of a computed, predicted or event trait of
// a profile, as the audience engine saw it change while folding in
// events, merges or an insight run (not as a time window slides): the
// trait change stream that activation reads (as identify calls). The
// engine records changes only of the traits it is asked to track
// (Engine.TrackTraits). Seq is assigned by the store in the order
// changes are applied.
type TraitChange struct {
	Seq       int64  `json:"seq"`
	ProfileID string `json:"profileId"`
	Key       string `json:"key"`
	// Value is the new value as JSON; null when the trait is gone.
	Value      json.RawMessage `json:"value"`
	Provenance string          `json:"provenance"`
	At         time.Time       `json:"at"`
	CauseSeq   int64           `json:"causeSeq,omitempty"`
}

// ProfileState is the audience engine's per-profile state (its
// aggregates and the traits it reads, encoded by package audience). A nil
// State deletes it.
type ProfileState struct {
	ProfileID string
	State     []byte
}

// BulkChange is many profiles entering, or leaving, one audience at once
// for one reason — what a backfill decides. The store records it as one
// history entry that covers len(ProfileIDs) consecutive change seqs, one
// per profile in the given order, so the change stream still shows every
// profile's entry with its own Seq while a backfill over a million
// profiles writes a handful of rows.
type BulkChange struct {
	Audience   string
	Entered    bool
	ProfileIDs []string // distinct
	At         time.Time
	Cause      string
}

// AudienceBatch is what the audience engine derived from a run of the log
// (or a backfill), applied in one transaction: states replaced, membership
// changes appended to the history and applied to the member lists and
// sizes (Changes one by one, then Bulk), and the engine's cursors moved.
type AudienceBatch struct {
	// Cursor, when > 0, is the log position the memberships reflect.
	Cursor int64
	// StatesCursor, when > 0, is the log position the stored states
	// reflect (the engine writes states behind memberships and replays
	// the stretch between the two after a restart).
	StatesCursor int64
	States       []ProfileState
	Changes      []MembershipChange
	Bulk         []BulkChange
	// TraitChanges are appended to the trait change stream.
	TraitChanges []TraitChange
}

// AudienceStore keeps definitions, the audience engine's derived state,
// memberships and their history. Only the engine writes states and
// memberships.
type AudienceStore interface {
	// SaveDefinition creates or replaces the definition (Kind, Key).
	SaveDefinition(ctx context.Context, d Definition) error
	// DeleteDefinition removes it; ENOTFOUND if absent.
	DeleteDefinition(ctx context.Context, kind, key string) error
	// Definitions lists every definition, by kind then key.
	Definitions(ctx context.Context) ([]Definition, error)

	// AudienceCursors returns the Cursor and StatesCursor last applied (0
	// at first).
	AudienceCursors(ctx context.Context) (cursor, statesCursor int64, err error)
	// ApplyAudienceBatch applies b atomically. An entry for a profile that
	// is already a member, or an exit for one that is not, is an error.
	ApplyAudienceBatch(ctx context.Context, b AudienceBatch) error
	// LoadStates returns the stored states of the profiles that have one.
	LoadStates(ctx context.Context, ids []string) (map[string][]byte, error)
	// LoadMemberships returns the memberships of the profiles that have
	// any (Since is when each entered).
	LoadMemberships(ctx context.Context, ids []string) (map[string][]Member, error)
	// LoadProfiles returns what LoadStates and LoadMemberships return for
	// ids, in one read of each profile: the audience engine loads both for
	// every profile a batch touches.
	LoadProfiles(ctx context.Context, ids []string) (states map[string][]byte, members map[string][]Member, err error)
	// ScanStates calls fn for every profile with a stored state or a
	// membership, with both (state nil when it has none), in a stable
	// order: the order in which profiles were first stored.
	ScanStates(ctx context.Context, fn func(id string, state []byte, members []Member) error) error

	// Members lists an audience's members in the same stable order,
	// continuing after the member with the given id ("" from the start),
	// at most limit. Since is not filled in.
	Members(ctx context.Context, audience, after string, limit int) ([]Member, error)
	// AudienceSize returns the number of members (0 for none or unknown).
	AudienceSize(ctx context.Context, audience string) (int64, error)
	// MembershipChanges returns up to limit changes with Seq > after, in
	// Seq order, optionally only for one audience and/or profile ("" for
	// any): the change stream and the history. Bulk changes appear as one
	// change per profile.
	MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]MembershipChange, error)
	// TraitChanges returns up to limit trait changes with Seq > after,
	// in Seq order.
	TraitChanges(ctx context.Context, after int64, limit int) ([]TraitChange, error)
	// TraitChangeHead returns the Seq of the latest trait change (0 for
	// none).
	TraitChangeHead(ctx context.Context) (int64, error)
	// LoadTraitValues returns the last value each of ids' tracked traits
	// was recorded with in the trait change stream (those recorded as
	// null are absent): the stores keep them with the stream, in the same
	// transaction, so the engine compares new values with what was
	// recorded, after a crash too.
	LoadTraitValues(ctx context.Context, ids []string) (map[string]map[string]json.RawMessage, error)
	// EraseAudienceHistory removes the profiles from the membership
	// history, bulk entries included (their seqs stay, naming no one),
	// from the trait change stream and its last values, and says how
	// many entries named them. The engine first makes them leave their audiences and drops
	// their states.
	EraseAudienceHistory(ctx context.Context, ids []string) (int64, error)
	// AudienceNetChanges returns, per day (UTC, "2006-01-02") from since
	// on, the audience's entries minus its exits, bulk entries counted
	// whole: with the current size it gives the size over time.
	AudienceNetChanges(ctx context.Context, audience string, since time.Time) (map[string]int64, error)
}
