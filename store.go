package kith

import (
	"context"
	"time"
)

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
	DestinationStore
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

// RetentionStore is what the retention sweeper needs beyond reads: the
// profiles to visit, and the expiry of events.
type RetentionStore interface {
	// ProfileIDs lists canonical profile ids after after, in id order.
	ProfileIDs(ctx context.Context, after string, limit int) ([]string, error)
	// ExpireEvents deletes the events at seqs from the log together with
	// the timeline entries and orders derived from them on the given
	// member profiles, and says how many events it deleted. Consent
	// decisions stay (an expired withdrawal must not bring back an older
	// grant); they go with the profile.
	ExpireEvents(ctx context.Context, members []string, seqs []int64) (int64, error)
}
