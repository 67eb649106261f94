package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/kithcdp/kith"
)

// Unmerge is an admin's request to undo a merge.
type Unmerge struct {
	// Profile is the canonical profile that holds the merge.
	Profile string
	MergeID string
	// By is who asks (an admin token id); Reason why.
	By, Reason string
	At         time.Time
}

// UnmergeResult names the two profiles the merge's sides resolve to
// afterwards, and the recorded split.
type UnmergeResult struct {
	Profiles [2]string  `json:"profiles"`
	Split    kith.Split `json:"split"`
}

// request is work the running indexer does between two batches, with
// nothing in flight: graph operations an admin or matching asks for.
// keep says the work kept the caches right (a link updates them), so they
// need not be dropped after it.
type request struct {
	do    func(ctx context.Context) (any, error)
	reply chan reply
	keep  bool
}

type reply struct {
	v   any
	err error
}

// ask hands do to the running indexer (Run) and waits for its outcome.
func (ix *Indexer) ask(ctx context.Context, do func(ctx context.Context) (any, error)) (any, error) {
	return ix.send(ctx, request{do: do, reply: make(chan reply, 1)})
}

// askKeep is ask for work that keeps the caches right.
func (ix *Indexer) askKeep(ctx context.Context, do func(ctx context.Context) (any, error)) (any, error) {
	return ix.send(ctx, request{do: do, reply: make(chan reply, 1), keep: true})
}

func (ix *Indexer) send(ctx context.Context, req request) (any, error) {
	select {
	case ix.requests <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serve runs a request; the caches are dropped after it, as the request
// changed the graph behind them.
func (ix *Indexer) serve(ctx context.Context, req request) {
	if req.keep {
		ix.loadRules()
		v, err := req.do(ctx)
		if err != nil {
			ix.reset() // a failed change may have left the caches half-updated
		}
		req.reply <- reply{v, err}
		return
	}
	v, err := ix.now(ctx, req.do)
	req.reply <- reply{v, err}
}

// now runs do with the cursor and decisions loaded, then drops the caches.
func (ix *Indexer) now(ctx context.Context, do func(ctx context.Context) (any, error)) (any, error) {
	if err := ix.load(ctx); err != nil {
		return nil, err
	}
	ix.loadRules()
	v, err := do(ctx)
	ix.reset()
	return v, err
}

// Unmerge asks the running indexer (Run) to undo a merge between two
// batches and waits for the outcome.
func (ix *Indexer) Unmerge(ctx context.Context, u Unmerge) (UnmergeResult, error) {
	v, err := ix.ask(ctx, func(ctx context.Context) (any, error) { return ix.unmerge(ctx, u) })
	res, _ := v.(UnmergeResult)
	return res, err
}

// UnmergeNow undoes a merge synchronously; only for an indexer driven by
// Step (never beside Run).
func (ix *Indexer) UnmergeNow(ctx context.Context, u Unmerge) (UnmergeResult, error) {
	v, err := ix.now(ctx, func(ctx context.Context) (any, error) { return ix.unmerge(ctx, u) })
	res, _ := v.(UnmergeResult)
	return res, err
}

// unmerge splits a merge. Events are never rewritten: the cluster that
// holds the merge is re-derived from its own events, in log order, by a
// private indexer that knows only the cluster's identifiers and keeps the
// merge's two profiles apart (a split is a rule like never-merge, recorded
// for every later event too). Profile ids derive from the events that
// create them, so both sides get their original ids back, and every event,
// identifier, trait and order lands on the side its identifiers belong to.
// The event that linked the two sides stays on one side, its other side's
// identifier dropped as a rule violation would drop it.
func (ix *Indexer) unmerge(ctx context.Context, u Unmerge) (UnmergeResult, error) {
	merges, err := ix.store.Merges(ctx, u.Profile)
	if err != nil {
		return UnmergeResult{}, err
	}
	var m *kith.Merge
	for i := range merges {
		if merges[i].ID == u.MergeID {
			m = &merges[i]
		}
	}
	if m == nil {
		return UnmergeResult{}, kith.Errorf(kith.ENOTFOUND, "profile %s has no merge %q", u.Profile, u.MergeID)
	}
	cluster, err := ix.store.Cluster(ctx, u.Profile)
	if err != nil {
		return UnmergeResult{}, err
	}
	msgs, err := ix.store.EventsBySeq(ctx, cluster.Seqs)
	if err != nil {
		return UnmergeResult{}, fmt.Errorf("pipeline: unmerge: read events: %w", err)
	}
	at := u.At
	if at.IsZero() {
		at = time.Now()
	}
	split := kith.Split{ID: kith.NewID("split_"), Survivor: m.Survivor, Absorbed: m.Absorbed, Merge: *m, By: u.By, Reason: u.Reason, At: at.UTC()}

	b, sub, err := ix.rederive(ctx, cluster, msgs, [2]string{m.Survivor, m.Absorbed}, nil)
	if err != nil {
		return UnmergeResult{}, err
	}
	if err := ix.store.ReplaceCluster(ctx, cluster.Members, b, &split); err != nil {
		return UnmergeResult{}, fmt.Errorf("pipeline: unmerge: %w", err)
	}
	ix.replaced(cluster.Members...)
	ix.log.Info("unmerged", "merge", m.ID, "survivor", m.Survivor, "absorbed", m.Absorbed, "by", u.By, "split", split.ID)
	return UnmergeResult{Profiles: [2]string{sub.find(m.Survivor), sub.find(m.Absorbed)}, Split: split}, nil
}

// loadSplits reads the recorded splits and where their profiles resolve.
func (ix *Indexer) loadSplits(ctx context.Context) error {
	splits, err := ix.store.Splits(ctx)
	if err != nil {
		return fmt.Errorf("pipeline: read splits: %w", err)
	}
	ix.splits = ix.splits[:0]
	for _, s := range splits {
		ix.splits = append(ix.splits, [2]string{s.Survivor, s.Absorbed})
		for _, p := range []string{s.Survivor, s.Absorbed} {
			c, err := ix.store.Canonical(ctx, p)
			if kith.ErrorCode(err) == kith.ENOTFOUND {
				continue // not derived yet (a rebuild replaying the log)
			} else if err != nil {
				return fmt.Errorf("pipeline: read splits: %w", err)
			}
			if c != p {
				ix.parent[p] = c
			}
		}
	}
	return nil
}

// clusterStore is the empty world a cluster is re-derived in: nothing
// outside the cluster exists, and the cluster's own profiles are rebuilt
// from its events.
type clusterStore struct{ Store }

func (clusterStore) LookupIdentifiers(context.Context, []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error) {
	return nil, nil
}

func (clusterStore) Identities(context.Context, string) ([]kith.Identity, error) { return nil, nil }

// Canonical: every profile of the re-derived world is created by it, so the
// private indexer's own graph knows where each one resolves.
func (clusterStore) Canonical(_ context.Context, p string) (string, error) { return p, nil }

// rederive replays a cluster's events (msgs) in a private indexer that
// knows only the cluster's identifiers (minus detached), with the recorded
// splits, links and detachments and, if given, one more split and one more
// detached identifier. It returns the derived rows and the indexer (whose
// graph says where each profile ended).
func (ix *Indexer) rederive(ctx context.Context, cluster kith.Cluster, msgs []kith.Message, split [2]string, detach *kith.IdentKey) (kith.IndexBatch, *Indexer, error) {
	sub := &Indexer{
		store: clusterStore{}, keyer: ix.keyer, attr: ix.attr, rules: ix.rules, log: ix.log,
		allow: map[kith.IdentKey]bool{}, detached: map[kith.IdentKey]bool{},
	}
	sub.dropCaches()
	for _, k := range cluster.Keys {
		sub.allow[k] = true
	}
	for k := range ix.detached {
		sub.detached[k] = true
	}
	if detach != nil {
		sub.detached[*detach] = true
	}
	members := map[string]bool{}
	for _, p := range cluster.Members {
		members[p] = true
	}
	for _, l := range ix.links {
		if members[l.A] && members[l.B] {
			sub.links = append(sub.links, l)
		}
	}
	sub.splits = append(sub.splits, ix.splits...)
	if split != ([2]string{}) {
		sub.splits = append(sub.splits, split)
	}
	var b kith.IndexBatch
	if len(msgs) > 0 {
		var err error
		if b, err = sub.derive(ctx, msgs); err != nil {
			return b, nil, fmt.Errorf("pipeline: re-derive: %w", err)
		}
		// Links taken after the cluster's last event still hold.
		last := msgs[len(msgs)-1].Seq
		for _, l := range sub.links {
			if l.AtSeq > last {
				if err := sub.applyLink(ctx, &b, l); err != nil {
					return b, nil, fmt.Errorf("pipeline: re-derive: %w", err)
				}
			}
		}
	}
	b.Cursor, b.Processed = 0, nil
	return b, sub, nil
}
