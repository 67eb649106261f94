package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// Detach is an admin's request to remove an identifier from a profile.
type Detach struct {
	Profile    string // canonical
	Identifier identity.Identifier
	By, Reason string
	At         time.Time
}

// DetachResult names the profiles the cluster became: without the
// identifier, what it alone joined falls apart.
type DetachResult struct {
	Profiles   []string        `json:"profiles"`
	Detachment kith.Detachment `json:"detachment"`
}

// Detach asks the running indexer (Run) to remove an identifier from a
// profile and waits for the outcome.
func (ix *Indexer) Detach(ctx context.Context, d Detach) (DetachResult, error) {
	v, err := ix.ask(ctx, func(ctx context.Context) (any, error) { return ix.detach(ctx, d) })
	res, _ := v.(DetachResult)
	return res, err
}

// DetachNow is Detach for an indexer driven by Step (never beside Run).
func (ix *Indexer) DetachNow(ctx context.Context, d Detach) (DetachResult, error) {
	v, err := ix.now(ctx, func(ctx context.Context) (any, error) { return ix.detach(ctx, d) })
	res, _ := v.(DetachResult)
	return res, err
}

// detach records that the identifier identifies no one from now on, and
// re-derives the profile's cluster from its events without it: events it
// alone attributed go where their other identifiers lead (or to profiles
// of their own), and profiles it alone joined are apart again.
func (ix *Indexer) detach(ctx context.Context, d Detach) (DetachResult, error) {
	key := ix.keyer.Key(d.Identifier)
	cluster, err := ix.store.Cluster(ctx, d.Profile)
	if err != nil {
		return DetachResult{}, err
	}
	if !slices.Contains(cluster.Keys, key) {
		return DetachResult{}, kith.Errorf(kith.ENOTFOUND, "profile %s has no identifier %s", d.Profile, d.Identifier)
	}
	msgs, err := ix.store.EventsBySeq(ctx, cluster.Seqs)
	if err != nil {
		return DetachResult{}, fmt.Errorf("pipeline: detach: read events: %w", err)
	}
	at := d.At
	if at.IsZero() {
		at = time.Now()
	}
	det := kith.Detachment{ID: kith.NewID("detach_"), Key: key, Type: d.Identifier.Type, Profile: d.Profile, By: d.By, Reason: d.Reason, At: at.UTC()}
	b, sub, err := ix.rederive(ctx, cluster, msgs, [2]string{}, &key)
	if err != nil {
		return DetachResult{}, err
	}
	// The decision first: a rebuild of the derived state applies it.
	if err := ix.store.SaveDetachment(ctx, det); err != nil {
		return DetachResult{}, err
	}
	if err := ix.store.ReplaceCluster(ctx, cluster.Members, b, nil); err != nil {
		return DetachResult{}, fmt.Errorf("pipeline: detach: %w", err)
	}
	ix.replaced(cluster.Members...)
	var profiles []string
	for _, p := range b.Profiles {
		if r := sub.find(p.ID); !slices.Contains(profiles, r) {
			profiles = append(profiles, r)
		}
	}
	slices.Sort(profiles)
	ix.log.Info("detached an identifier", "profile", d.Profile, "type", d.Identifier.Type, "by", d.By, "profiles", len(profiles))
	return DetachResult{Profiles: profiles, Detachment: det}, nil
}

// repair finishes decisions whose effect is missing: a split whose two
// profiles are still one, a detached identifier that still identifies
// someone. That happens when the decision was recorded and the process
// stopped (or the store failed) before the derived state was replaced —
// on SQLite the two live in different files. The affected clusters are
// re-derived, as the decision would have done.
func (ix *Indexer) repair(ctx context.Context, ds []kith.Detachment) error {
	var stale []string
	for _, sp := range ix.splits {
		if a, b := ix.find(sp[0]), ix.find(sp[1]); a == b {
			if _, err := ix.store.Canonical(ctx, a); err == nil && !slices.Contains(stale, a) {
				stale = append(stale, a)
			}
		}
	}
	if len(ds) > 0 {
		keys := make([]kith.IdentKey, len(ds))
		for i, d := range ds {
			keys[i] = d.Key
		}
		owners, err := ix.store.LookupIdentifiers(ctx, keys)
		if err != nil {
			return fmt.Errorf("pipeline: check detachments: %w", err)
		}
		for _, o := range owners {
			if !slices.Contains(stale, o.Canonical) {
				stale = append(stale, o.Canonical)
			}
		}
	}
	for _, p := range stale {
		cluster, err := ix.store.Cluster(ctx, p)
		if err != nil {
			return fmt.Errorf("pipeline: repair %s: %w", p, err)
		}
		msgs, err := ix.store.EventsBySeq(ctx, cluster.Seqs)
		if err != nil {
			return fmt.Errorf("pipeline: repair %s: %w", p, err)
		}
		b, _, err := ix.rederive(ctx, cluster, msgs, [2]string{}, nil)
		if err != nil {
			return err
		}
		if err := ix.store.ReplaceCluster(ctx, cluster.Members, b, nil); err != nil {
			return fmt.Errorf("pipeline: repair %s: %w", p, err)
		}
		ix.replaced(cluster.Members...)
		ix.log.Warn("re-derived a profile whose split or detachment had not taken effect", "profile", p)
	}
	if len(stale) > 0 {
		ix.dropCaches()
		return ix.loadSplits(ctx) // where the split profiles resolve now
	}
	return nil
}
