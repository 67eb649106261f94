package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kithcdp/kith"
)

// ErrAlreadyOne is in the chain of a Link error when the two profiles are
// one already (the error's code is ECONFLICT).
var ErrAlreadyOne = errors.New("pipeline: the profiles are one already")

// Link asks the running indexer (Run) to join two profiles that no event
// links (an admin's decision, or probabilistic matching's). l.A and l.B
// are any profile ids; ID, AtSeq and At are filled in. The link is refused
// with ECONFLICT when the identity rules forbid the join (a split between
// them, a never-merge type, a limit), and answers the merge it made.
func (ix *Indexer) Link(ctx context.Context, l kith.Link) (kith.Merge, error) {
	v, err := ix.askKeep(ctx, func(ctx context.Context) (any, error) { return ix.link(ctx, l) })
	m, _ := v.(kith.Merge)
	return m, err
}

// LinkNow is Link for an indexer driven by Step (never beside Run).
func (ix *Indexer) LinkNow(ctx context.Context, l kith.Link) (kith.Merge, error) {
	v, err := ix.now(ctx, func(ctx context.Context) (any, error) { return ix.link(ctx, l) })
	m, _ := v.(kith.Merge)
	return m, err
}

// link records a link at the current log position and applies it.
func (ix *Indexer) link(ctx context.Context, l kith.Link) (kith.Merge, error) {
	for _, p := range []string{l.A, l.B} {
		c, err := ix.store.Canonical(ctx, p)
		if err != nil {
			return kith.Merge{}, err
		}
		if c != p {
			ix.parent[p] = c
		}
	}
	if l.ID == "" {
		l.ID = kith.NewID("link_")
	}
	if l.At.IsZero() {
		l.At = time.Now()
	}
	l.At = l.At.UTC()
	l.AtSeq = ix.cursor.Load()
	if a, b := ix.find(l.A), ix.find(l.B); a == b {
		return kith.Merge{}, errors.Join(ErrAlreadyOne, kith.Errorf(kith.ECONFLICT, "%s and %s are already one profile (%s)", l.A, l.B, a))
	}
	b := kith.IndexBatch{Cursor: l.AtSeq}
	if err := ix.applyLink(ctx, &b, l); err != nil {
		return kith.Merge{}, err
	}
	if len(b.Merges) == 0 {
		return kith.Merge{}, kith.Errorf(kith.ECONFLICT, "the identity rules keep %s and %s apart (a split, a never-merge type or a limit)", l.A, l.B)
	}
	// The decision first, durably; then its effect (a crash between the two
	// is repaired by the next rebuild, which applies recorded links).
	if err := ix.store.SaveLink(ctx, l); err != nil {
		return kith.Merge{}, err
	}
	if err := ix.store.ApplyIndexBatch(ctx, l.AtSeq, b); err != nil {
		// Undo the decision rather than leave a link a rebuild would apply
		// and the live state lacks.
		if derr := ix.store.DeleteLink(ctx, l.ID); derr != nil {
			ix.log.Error("a recorded link could not be applied nor removed; a rebuild of the derived state would apply it", "link", l.ID, "err", derr)
		}
		return kith.Merge{}, fmt.Errorf("pipeline: apply link: %w", err)
	}
	ix.links = append(ix.links, l)
	m := b.Merges[0]
	ix.replaced(m.Survivor, m.Absorbed)
	ix.log.Info("linked", "link", l.ID, "kind", l.Kind, "survivor", m.Survivor, "absorbed", m.Absorbed, "by", l.By)
	// The stored merge carries its id.
	stored, err := ix.store.Merges(ctx, m.Survivor)
	if err != nil {
		return m, err
	}
	for _, sm := range stored {
		if sm.MessageID == l.ID {
			return sm, nil
		}
	}
	return m, nil
}

// resolve finds where a profile resolves now: through the cached graph,
// else (the cache was dropped since it learned of p) through the store.
func (ix *Indexer) resolve(ctx context.Context, p string) (string, error) {
	if _, cached := ix.parent[p]; !cached {
		c, err := ix.store.Canonical(ctx, p)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			return p, nil // derived later in this batch, or not at all
		} else if err != nil {
			return "", fmt.Errorf("pipeline: resolve %s: %w", p, err)
		}
		if c != p {
			ix.parent[p] = c
		}
	}
	return ix.find(p), nil
}

// applyLink joins a link's profiles in b when the rules allow it; a link
// the rules now forbid (split since) stays recorded and has no effect.
func (ix *Indexer) applyLink(ctx context.Context, b *kith.IndexBatch, l kith.Link) error {
	a, err := ix.resolve(ctx, l.A)
	if err != nil {
		return err
	}
	c, err := ix.resolve(ctx, l.B)
	if err != nil {
		return err
	}
	if a == c {
		return nil
	}
	ok, err := ix.allowed(ctx, []string{a, c}, nil, nil, l.At, true)
	if err != nil {
		return err
	}
	if !ok {
		ix.log.Info("link not applied: the identity rules keep its profiles apart", "link", l.ID)
		return nil
	}
	ident := l.Reason
	if l.Kind == kith.LinkProbabilistic {
		ident = "match weight " + strconv.FormatFloat(l.Weight, 'f', 2, 64)
	}
	b.Merges = append(b.Merges, kith.Merge{
		Survivor: a, Absorbed: c, SourceID: "link", MessageID: l.ID, IdentType: l.Kind, Ident: ident, At: l.At,
	})
	ix.mergeIdents(a, c)
	ix.parent[c] = a
	return nil
}
