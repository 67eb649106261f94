package pipeline

import (
	"context"
	"fmt"
)

import "github.com/kithcdp/kith"

// Erased is what erasing a unified profile removed.
type Erased struct {
	Scope  kith.Cluster
	Counts map[string]int64
}

// Erase deletes a unified profile (ECONFLICT if canonical is no longer a
// unified profile's own id) — its events, its identity graph, its
// derived rows — between two batches, so no event of the person is being
// applied meanwhile; the indexer's caches are dropped afterwards, so a
// later event with one of the person's identifiers starts a new profile.
func (ix *Indexer) Erase(ctx context.Context, canonical string) (Erased, error) {
	v, err := ix.ask(ctx, func(ctx context.Context) (any, error) { return ix.erase(ctx, canonical) })
	res, _ := v.(Erased)
	return res, err
}

// EraseNow is Erase for an indexer driven by Step (never beside Run).
func (ix *Indexer) EraseNow(ctx context.Context, canonical string) (Erased, error) {
	v, err := ix.now(ctx, func(ctx context.Context) (any, error) { return ix.erase(ctx, canonical) })
	res, _ := v.(Erased)
	return res, err
}

func (ix *Indexer) erase(ctx context.Context, canonical string) (Erased, error) {
	c, err := ix.store.Canonical(ctx, canonical)
	if err != nil {
		return Erased{}, err
	}
	if c != canonical {
		// Merged into another profile since the caller looked: what it
		// decided (an inactive profile, a person) may no longer hold.
		return Erased{}, kith.Errorf(kith.ECONFLICT, "profile %s was merged into %s", canonical, c)
	}
	cl, err := ix.store.Cluster(ctx, c)
	if err != nil {
		return Erased{}, err
	}
	scope := kith.Cluster{Members: cl.Members, Keys: cl.Keys, Seqs: cl.Seqs}
	counts, err := ix.store.ErasePeople(ctx, scope)
	if err != nil {
		return Erased{Scope: scope, Counts: counts}, fmt.Errorf("pipeline: erase %s: %w", c, err)
	}
	return Erased{Scope: scope, Counts: counts}, nil
}
