package kith

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

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

// Cluster is one unified profile as a set of rows: its member profile
// ids, the identifier keys they own, and the log positions of the events
// on their timelines. It is what re-deriving the profile needs, and what
// erasing it removes.
type Cluster struct {
	Members []string
	Keys    []IdentKey
	Seqs    []int64
}
