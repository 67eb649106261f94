// Package pipeline owns the indexer: the single in-process consumer that
// applies the event log, in order and in large batches, to the derived state
// — identity graph, profiles, traits with provenance, timelines and the
// processed counters. Each batch is applied in one transaction together with
// the log position it reached, so after a crash the indexer replays exactly
// the unapplied tail and nothing is applied twice.
//
// Identity stitching here is deterministic: a message's identifiers that
// match no profile create one, that match one profile attach to it, and that
// match several merge them into the one owning the highest-priority
// identifier. Merges are recorded facts; events and traits are never
// rewritten, reads resolve through the graph.
package pipeline

import (
	"context"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/commerce"
	"github.com/kithcdp/kith/identity"
)

// Store is what the indexer reads and writes.
type Store interface {
	ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error)
	LogHead(ctx context.Context) (int64, error)
	IndexCursor(ctx context.Context) (int64, error)
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
	ApplyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error
	// Identities lists a unified profile's identifiers (limits are checked
	// against them).
	Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error)
	// For splits (see unmerge.go).
	Canonical(ctx context.Context, profileID string) (string, error)
	Merges(ctx context.Context, canonicalID string) ([]kith.Merge, error)
	Cluster(ctx context.Context, canonicalID string) (kith.Cluster, error)
	EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error)
	ReplaceCluster(ctx context.Context, members []string, b kith.IndexBatch, s *kith.Split) error
	Splits(ctx context.Context) ([]kith.Split, error)
	// For links (see links.go).
	SaveLink(ctx context.Context, l kith.Link) error
	DeleteLink(ctx context.Context, id string) error
	Links(ctx context.Context) ([]kith.Link, error)
	SaveDetachment(ctx context.Context, d kith.Detachment) error
	Detachments(ctx context.Context) ([]kith.Detachment, error)
	// For erasure (see erase.go).
	ErasePeople(ctx context.Context, s kith.Cluster) (map[string]int64, error)
}

// Indexer applies the log to the derived state. Run it in one goroutine.
type Indexer struct {
	store     Store
	keyer     identity.Keyer
	batchSize int
	log       *slog.Logger
	wake      chan struct{}
	headWake  chan struct{}
	tail      tail

	// Caches of the graph, valid because this indexer is the only writer of
	// the state. ids maps identifier keys to the profile they are attached
	// to, with the first/last-seen times this indexer has written (an
	// event inside [first, last+lastSeenSlack] does not rewrite the row:
	// last seen is kept to within a minute); parent is a union-find over
	// profiles mirroring merges.
	ids      identCache
	parent   map[string]string
	maxCache int
	// maxProfiles bounds idents: past it, idents is dropped (with the
	// store caught up) and reloads a profile at a time as needed. Most
	// events bring only identifiers their profile already has, which need
	// no limits check and so no idents entry.
	maxProfiles int
	// idents holds, per canonical profile the indexer has checked limits
	// for, its identifier keys with their types and last-seen times (a
	// few per profile, so a slice: 32 bytes an identifier, no pointers,
	// where nested maps took ~250 bytes a profile). Every profile a batch
	// changes is here before it changes.
	idents heldSet
	// attr reads whom events are from under the rules in force; rules
	// are those rules as loaded for the unit of work in progress (a
	// batch, or a request between two batches: see loadRules).
	attr  *Attribution
	rules *identity.Rules
	// splits are the profile pairs that must never be in one cluster.
	splits [][2]string
	// allow, when set, restricts the identifiers derive links to these
	// keys (re-deriving one cluster must not touch anyone else's).
	allow    map[kith.IdentKey]bool
	requests chan request
	// links are the recorded links (see links.go), in AtSeq order.
	links []kith.Link
	// detached identifiers identify no one (see Detach).
	detached map[kith.IdentKey]bool

	// observer hears of every change applied (the audience engine).
	observer Observer

	loaded bool // cursor read from the store
	cursor atomic.Int64
	head   atomic.Int64
	// rebuildTo is the log head when the indexer first found the derived
	// state empty with events in the log (a state discarded after an OS
	// crash, or a new state on an old log): until the cursor reaches it,
	// the indexer is rebuilding (see Rebuild). 0: it was not.
	rebuildTo atomic.Int64
	// When the rebuild began and its progress was last logged, and
	// whether its end was (advance).
	rebuildStart, rebuildLogged time.Time
	rebuildEnded                bool
	started                     bool // the rebuild check ran (at the first load)

	// status is the indexer's health for /healthz and /metrics.
	status kith.WorkerStatus
	// narrow, while set, makes batches smaller to find the one event whose
	// derived rows the store refuses (see isolate); poison holds the
	// events found, which are then processed with nothing derived.
	narrow narrowing
	poison map[int64]bool
	// lastSkipped is the last event set aside, so that a batch derived
	// again after a failure does not count its skips twice.
	lastSkipped int64
}

// narrowing caps batches at size events until the log position until.
type narrowing struct {
	until int64
	size  int
}

// applyError is a batch the store could not apply.
type applyError struct {
	from, last int64 // the cursor it started from; its last event
	n          int   // its events
	err        error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("pipeline: apply batch after seq %d: %v", e.from, e.err)
}

func (e *applyError) Unwrap() error { return e.err }

// Config tunes an Indexer.
type Config struct {
	// BatchSize is the most log events applied per transaction.
	BatchSize int
	// MaxCache bounds the cached identifiers: when half of it were used
	// since the last time, those not used since are dropped (the store
	// stays the source of truth). Past half of it in the merge graph's
	// cache, every cache is dropped and reloaded from the store as at
	// start (the cached identifiers name profiles the graph resolves).
	MaxCache int
	// MaxProfiles bounds the profiles whose identifiers are cached for
	// the identity rules' limits checks (default MaxCache/2).
	MaxProfiles int
	Logger      *slog.Logger
	// Rules returns the identity rules in force (identity.Current's Load,
	// shared with everyone else who reads identifiers); nil means
	// identity.DefaultRules. They are loaded once per batch: rules
	// replaced there apply to the events still to come, from the next
	// batch on; events already applied keep what the old rules decided (a
	// rebuild would re-decide them with the new rules).
	Rules func() *identity.Rules
	// Observer, if set, is told of every applied batch and every
	// re-derived cluster, after the store has them.
	Observer Observer
}

// Observer follows the derived state: the audience engine folds applied
// batches into its own state and rebuilds re-derived clusters. Its methods
// must not block (the indexer calls them between batches).
type Observer interface {
	// Applied reports a batch the store applied, with its events.
	Applied(b kith.IndexBatch, msgs []kith.Message)
	// Replaced reports profiles whose derived state was replaced (an
	// unmerge, a detachment, a link, a repair).
	Replaced(members []string)
}

// replaced tells the observer about re-derived profiles.
func (ix *Indexer) replaced(members ...string) {
	if ix.observer != nil {
		ix.observer.Replaced(members)
	}
}

// New returns an indexer over store; secret keys the identifier hashes.
func New(store Store, secret []byte, cfg Config) *Indexer {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 20000
	}
	if cfg.MaxCache <= 0 {
		cfg.MaxCache = 2_000_000
	}
	if cfg.MaxProfiles <= 0 {
		cfg.MaxProfiles = max(cfg.MaxCache/2, 1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keyer := identity.NewKeyer(secret)
	attr := NewAttribution(cfg.Rules, keyer, cfg.Logger, "indexer")
	ix := &Indexer{
		attr: attr, rules: attr.Rules(), observer: cfg.Observer, requests: make(chan request),
		store: store, keyer: keyer, batchSize: cfg.BatchSize, log: cfg.Logger,
		wake: make(chan struct{}, 1), headWake: make(chan struct{}, 1), maxCache: cfg.MaxCache, maxProfiles: cfg.MaxProfiles,
		tail: tail{max: 4 * cfg.BatchSize}, status: kith.WorkerStatus{Name: "indexer"}, poison: map[int64]bool{},
	}
	ix.dropCaches()
	return ix
}

// lastSeenSlack is how far an identifier's stored last-seen time may lag
// behind its latest event: rewriting the row for every event would double
// the indexer's writes for no practical gain.
const lastSeenSlack = int64(time.Minute / time.Microsecond)

// Notify tells the indexer that msgs (in log order, Seq set) were
// committed; it takes them from memory instead of reading them back from
// the log when they continue where it is. msgs may be nil (the store did
// not report Seqs): the indexer then reads the log.
func (ix *Indexer) Notify(msgs []kith.Message) {
	ix.tail.offer(msgs)
	for _, c := range []chan struct{}{ix.wake, ix.headWake} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// WatchHead keeps the log head that Backlog measures against current, on
// its own, so the backlog keeps growing (and collection answers 429) even
// while the indexer is slow or failing. Run it beside Run until ctx is done.
func (ix *Indexer) WatchHead(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ix.headWake:
		case <-t.C:
		}
		if h, err := ix.store.LogHead(ctx); err == nil {
			ix.raiseHead(h)
		}
		sleep(ctx, 20*time.Millisecond) // at most ~50 look-ups a second
	}
}

// raiseHead moves the head forward, never back.
func (ix *Indexer) raiseHead(h int64) {
	for {
		cur := ix.head.Load()
		if h <= cur || ix.head.CompareAndSwap(cur, h) {
			return
		}
	}
}

// Backlog returns how many committed events are not yet applied, as of the
// indexer's last look at the log.
func (ix *Indexer) Backlog() int64 { return max(0, ix.head.Load()-ix.cursor.Load()) }

// Waiting returns how many committed events wait to be applied that were
// not already in the log when a rebuild of the derived state began (see
// Rebuild): the backlog that new events make, on which collection and
// imports are refused (MaxBacklog). Without a rebuild it is Backlog. The
// events a rebuild re-applies were acknowledged long before, and the log
// holds them whether or not collection goes on; counting them would refuse
// every new event for as long as the rebuild takes.
func (ix *Indexer) Waiting() int64 {
	return max(0, ix.head.Load()-max(ix.cursor.Load(), ix.rebuildTo.Load()))
}

// Cursor returns the seq of the last applied event.
func (ix *Indexer) Cursor() int64 { return ix.cursor.Load() }

// Run applies the log until ctx is done. Deriving a batch (decoding and
// resolving identities) and applying the previous one to the store run
// concurrently, so both cores work. Store errors are logged and retried with
// backoff from the stored cursor, and reported in Health. The one exception
// is data the store refuses (EINVALID): the indexer narrows its batches
// down to the event that derives it and sets that event aside — processed,
// with nothing derived from it, logged and counted in Health — so one
// poisoned event cannot stop the indexer for everyone.
func (ix *Indexer) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := ix.runPipelined(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			continue // restarted to drop a full cache
		}
		ix.status.Fail(err, time.Now())
		ix.reset()
		if ix.isolate(err) {
			continue
		}
		ix.log.Error("indexer failed; retrying from the stored cursor", "err", err, "backoff", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// Health reports whether the indexer is making progress.
// Events it could not read identifiers from are among the skipped.
func (ix *Indexer) Health() kith.WorkerHealth {
	h := ix.status.Health()
	h.Skipped += ix.attr.Undecodable()
	return h
}

// isolate reacts to a batch whose data the store refused: it halves the
// batches up to that batch's last event, and once the batch is one event,
// sets that event aside. It reports false for any other error.
func (ix *Indexer) isolate(err error) bool {
	var ae *applyError
	if !errors.As(err, &ae) || kith.ErrorCode(err) != kith.EINVALID {
		return false
	}
	if ae.n <= 1 {
		if ix.poison[ae.last] {
			// Set aside already, and the store still refuses the batch:
			// what it refuses is not the event's. Back off and retry.
			return false
		}
		ix.poison[ae.last] = true
		ix.status.Skip(1)
		ix.narrow = narrowing{}
		ix.log.Error("indexer: the store refuses what this event derives; it is set aside (processed, nothing derived from it)", "seq", ae.last, "err", ae.err)
		return true
	}
	ix.narrow = narrowing{until: ae.last, size: (ae.n + 1) / 2}
	ix.log.Warn("indexer: the store refused a batch's data; retrying in smaller batches to find the event", "after", ae.from, "events", ae.n, "err", ae.err)
	return true
}

type job struct {
	from int64
	b    kith.IndexBatch
	msgs []kith.Message
}

// runPipelined derives batches in this goroutine and applies them in
// another, one batch ahead at most. It returns on the first error.
func (ix *Indexer) runPipelined(ctx context.Context) error {
	if err := ix.load(ctx); err != nil {
		return err
	}
	jobs := make(chan job, 1)
	applied := make(chan error, 1)
	go func() {
		for j := range jobs {
			if err := ix.store.ApplyIndexBatch(ctx, j.from, j.b); err != nil {
				applied <- &applyError{from: j.from, last: j.b.Cursor, n: len(j.msgs), err: err}
				for range jobs {
				}
				return
			}
			ix.status.OK()
			ix.advance(j.b.Cursor)
			if ix.observer != nil {
				ix.observer.Applied(j.b, j.msgs)
			}
		}
		applied <- nil
	}()
	stop := func(err error) error {
		close(jobs)
		if aerr := <-applied; aerr != nil {
			return aerr
		}
		return err
	}
	// handle serves an admin request: the store catches up first, so it
	// acts with nothing in flight; the loop then restarts from the cursor.
	handle := func(req request) error {
		if err := stop(nil); err != nil {
			req.reply <- reply{err: err}
			return err
		}
		ix.serve(ctx, req)
		return nil
	}
	next := ix.cursor.Load()
	for {
		select {
		case err := <-applied:
			close(jobs)
			return err
		case req := <-ix.requests:
			return handle(req)
		default:
		}
		if ctx.Err() != nil {
			return stop(nil)
		}
		msgs, err := ix.next(ctx, next)
		if err != nil {
			return stop(err)
		}
		if len(msgs) == 0 {
			ix.raiseHead(next)
			select {
			case <-ctx.Done():
			case <-ix.wake:
			case <-time.After(250 * time.Millisecond):
			case err := <-applied:
				close(jobs)
				return err
			case req := <-ix.requests:
				return handle(req)
			}
			continue
		}
		ix.raiseHead(msgs[len(msgs)-1].Seq) // WatchHead tracks the rest
		ix.loadRules()
		b, err := ix.derive(ctx, msgs)
		if err != nil {
			return stop(err)
		}
		jobs <- job{from: next, b: b, msgs: msgs}
		next = b.Cursor
		if ix.cachesFull() {
			// Let the store catch up before dropping from the caches, so
			// the next lookups see everything derived so far.
			if err := stop(nil); err != nil {
				return err
			}
			ix.trimCaches()
			return nil
		}
	}
}

// next returns the events after seq: from the committer's hand-over when it
// continues exactly there, else from the log.
func (ix *Indexer) next(ctx context.Context, after int64) ([]kith.Message, error) {
	limit := ix.batchSize
	// Narrowing holds until the batch that ends at narrow.until is past.
	// It is not cleared here: while one batch is applied the next is read
	// ahead, and a read-ahead past the refused batch must not end the
	// narrowing if that apply fails. isolate replaces it.
	if ix.narrow.size > 0 && after < ix.narrow.until {
		limit = ix.narrow.size
	}
	if msgs := ix.tail.take(after, limit); len(msgs) > 0 {
		return msgs, nil
	}
	msgs, err := ix.store.ReadLog(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("pipeline: read log: %w", err)
	}
	return msgs, nil
}

// tail holds committed events handed over by the committer, in log order,
// so that the indexer need not read back what was just written. It is
// bounded: when the indexer falls behind it is dropped, and the indexer
// reads the log until it catches up with what is handed over next.
type tail struct {
	mu   sync.Mutex
	msgs []kith.Message
	max  int
}

func (t *tail) offer(msgs []kith.Message) {
	if len(msgs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.msgs); n > 0 && t.msgs[n-1].Seq+1 != msgs[0].Seq {
		t.msgs = nil // a gap: keep only what continues from here
	}
	if len(t.msgs)+len(msgs) > t.max {
		t.msgs = nil
		if len(msgs) > t.max {
			return
		}
	}
	t.msgs = append(t.msgs, msgs...)
}

// take removes and returns up to limit events that continue exactly after
// seq, or nil when the hand-over does not start there.
func (t *tail) take(after int64, limit int) []kith.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := 0
	for i < len(t.msgs) && t.msgs[i].Seq <= after {
		i++ // already applied (read from the log meanwhile)
	}
	t.msgs = t.msgs[i:]
	if len(t.msgs) == 0 || t.msgs[0].Seq != after+1 {
		return nil
	}
	n := min(limit, len(t.msgs))
	out := make([]kith.Message, n)
	copy(out, t.msgs[:n])
	t.msgs = t.msgs[n:]
	if len(t.msgs) == 0 {
		t.msgs = nil // let the backing array go
	}
	return out
}

// load reads the cursor from the store if it is not known.
func (ix *Indexer) load(ctx context.Context) error {
	if ix.loaded {
		return nil
	}
	c, err := ix.store.IndexCursor(ctx)
	if err != nil {
		return fmt.Errorf("pipeline: read cursor: %w", err)
	}
	if err := ix.loadSplits(ctx); err != nil {
		return err
	}
	links, err := ix.store.Links(ctx)
	if err != nil {
		return fmt.Errorf("pipeline: read links: %w", err)
	}
	ix.links = links
	ds, err := ix.store.Detachments(ctx)
	if err != nil {
		return fmt.Errorf("pipeline: read detachments: %w", err)
	}
	ix.detached = map[kith.IdentKey]bool{}
	for _, d := range ds {
		ix.detached[d.Key] = true
	}
	ix.loadRules() // a repair re-derives clusters
	if err := ix.repair(ctx, ds); err != nil {
		return err
	}
	if !ix.started && c == 0 {
		h, err := ix.store.LogHead(ctx)
		if err != nil {
			return fmt.Errorf("pipeline: read log head: %w", err)
		}
		if h > 0 {
			ix.rebuildTo.Store(h)
			ix.rebuildStart, ix.rebuildLogged = time.Now(), time.Now()
			ix.raiseHead(h)
			ix.log.Info("indexer: the derived state is empty: rebuilding it from the log", "to", h)
		}
	}
	ix.started = true
	ix.cursor.Store(c)
	ix.loaded = true
	return nil
}

// rebuildLogEvery is how often a rebuild's progress is logged.
const rebuildLogEvery = 10 * time.Second

// advance records that the store has applied everything up to cursor.
// During a rebuild it logs the progress every rebuildLogEvery, and once
// when the rebuild has caught up. Only the goroutine that applies calls it.
func (ix *Indexer) advance(cursor int64) {
	ix.cursor.Store(cursor)
	to := ix.rebuildTo.Load()
	if to == 0 || ix.rebuildEnded {
		return
	}
	now := time.Now()
	if cursor >= to {
		ix.rebuildEnded = true
		ix.log.Info("indexer: rebuilt the derived state from the log", "to", to, "took", now.Sub(ix.rebuildStart).Round(time.Second).String())
		return
	}
	if now.Sub(ix.rebuildLogged) >= rebuildLogEvery {
		ix.rebuildLogged = now
		p := ix.Rebuild()
		ix.log.Info("indexer: rebuilding the derived state from the log", "position", p.Position, "of", p.Of, "percent", p.Percent())
	}
}

// Rebuild reports a rebuild of the derived state from the log.
func (ix *Indexer) Rebuild() kith.RebuildProgress {
	to, c := ix.rebuildTo.Load(), ix.cursor.Load()
	return kith.RebuildProgress{Position: c, Of: to, Active: to > 0 && c < to}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Step derives and applies at most one batch, synchronously, and returns
// how many events it applied. Only one goroutine may call Step or Run.
func (ix *Indexer) Step(ctx context.Context) (int, error) {
	if err := ix.load(ctx); err != nil {
		return 0, err
	}
	from := ix.cursor.Load()
	msgs, err := ix.next(ctx, from)
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		ix.raiseHead(from)
		return 0, nil
	}
	ix.raiseHead(msgs[len(msgs)-1].Seq) // WatchHead tracks the rest
	ix.loadRules()
	b, err := ix.derive(ctx, msgs)
	if err != nil {
		ix.reset()
		return 0, err
	}
	if err := ix.store.ApplyIndexBatch(ctx, from, b); err != nil {
		ix.reset()
		err = &applyError{from: from, last: b.Cursor, n: len(msgs), err: err}
		ix.status.Fail(err, time.Now())
		ix.isolate(err)
		return 0, err
	}
	ix.status.OK()
	ix.advance(b.Cursor)
	if ix.observer != nil {
		ix.observer.Applied(b, msgs)
	}
	if ix.cachesFull() {
		ix.trimCaches()
	}
	return len(msgs), nil
}

// reset drops the caches and the cursor; they reload from the store.
func (ix *Indexer) reset() {
	ix.loaded = false
	ix.dropCaches()
}

// dropCaches empties the identifier cache, the merge graph and the
// profiles' identifiers; what is needed reloads from the store.
func (ix *Indexer) dropCaches() {
	ix.ids = newIdentCache()
	ix.parent = map[string]string{}
	ix.idents = newHeldSet()
}

// cachesFull says a cache has reached its bound (see trimCaches).
func (ix *Indexer) cachesFull() bool {
	return ix.ids.young() > ix.maxCache/2 || len(ix.parent) > ix.maxCache/2 || ix.idents.len() > ix.maxProfiles
}

// trimCaches brings the caches within their bounds: the identifiers not
// used since the last trim are dropped; the merge graph and the profiles'
// identifiers, past their bounds, whole. The store must have applied
// everything derived: what is dropped reloads from it.
func (ix *Indexer) trimCaches() {
	if len(ix.parent) > ix.maxCache/2 {
		// Cached identifiers name the profiles they are attached to,
		// which parent resolves: they go together.
		ix.reset()
		return
	}
	if ix.ids.young() > ix.maxCache/2 {
		ix.ids.rotate()
	}
	if ix.idents.len() > ix.maxProfiles {
		// They reload from the store when a profile next gains one.
		ix.idents = newHeldSet()
	}
}

// find resolves a profile through the cached merge graph.
func (ix *Indexer) find(p string) string {
	root := p
	for {
		next, ok := ix.parent[root]
		if !ok || next == root {
			break
		}
		root = next
	}
	for p != root { // path compression
		next := ix.parent[p]
		ix.parent[p] = root
		p = next
	}
	return root
}

type extracted struct {
	ids  []identity.Identifier
	keys []kith.IdentKey
	// prev are the candidate keys of an alias's previousId.
	prev    [2]kith.IdentKey
	prevID  string
	traits  map[string]json.RawMessage
	invalid bool
}

// loadRules loads the rules in force for the next unit of work: a batch
// is derived, and a request served, under one set of rules. A change thus
// takes effect between two batches, for the events still to come.
func (ix *Indexer) loadRules() { ix.rules = ix.attr.Rules() }

// Undecodable counts the events the indexer could not read identifiers
// from (processed without identity, each logged as a warning).
func (ix *Indexer) Undecodable() int64 { return ix.attr.Undecodable() }

// derive computes the IndexBatch for msgs against the current graph, under
// ix.rules.
func (ix *Indexer) derive(ctx context.Context, msgs []kith.Message) (kith.IndexBatch, error) {
	ex := make([]extracted, len(msgs))
	var missing []kith.IdentKey
	want := map[kith.IdentKey]bool{}
	need := func(k kith.IdentKey) {
		if _, ok := ix.ids.get(k); !ok && !want[k] {
			want[k] = true
			missing = append(missing, k)
		}
	}
	for i, m := range msgs {
		if why := ix.unindexable(m); why != "" {
			// Events isolate found are counted there; an event whose text
			// no store can hold, once (a batch is derived again after a
			// failure).
			if !ix.poison[m.Seq] && m.Seq > ix.lastSkipped {
				ix.lastSkipped = m.Seq
				ix.status.Skip(1)
				ix.log.Error("indexer: event set aside (processed, nothing derived from it)", "seq", m.Seq, "source", m.SourceID, "why", why)
			}
			ex[i].invalid = true
			continue
		}
		e, keys, ok := ix.attr.Read(ix.rules, m)
		if !ok {
			ex[i].invalid = true // processed without identity (Read warned)
			continue
		}
		ex[i].traits = e.Traits
		ex[i].ids, ex[i].keys = ix.usableOnly(e.Identifiers, keys)
		for _, k := range ex[i].keys {
			need(k)
		}
		if e.PreviousID != "" {
			ex[i].prevID = e.PreviousID
			ex[i].prev[0] = ix.keyer.Key(ix.rules.Normalise(kith.IdentUserID, e.PreviousID))
			ex[i].prev[1] = ix.keyer.Key(ix.rules.Normalise(kith.IdentAnonymousID, e.PreviousID))
			need(ex[i].prev[0])
			need(ex[i].prev[1])
		}
	}
	if len(missing) > 0 {
		found, err := ix.store.LookupIdentifiers(ctx, missing)
		if err != nil {
			return kith.IndexBatch{}, fmt.Errorf("pipeline: lookup identifiers: %w", err)
		}
		for k, o := range found {
			ix.ids.attach(k, o.ProfileID)
			if o.Canonical != o.ProfileID {
				ix.parent[o.ProfileID] = o.Canonical
			}
		}
	}

	b := kith.IndexBatch{Cursor: msgs[len(msgs)-1].Seq, Processed: map[string]int64{}}
	// Links taken inside this stretch of the log (a replay) are applied
	// where they were taken: right after event AtSeq.
	nextLink := sort.Search(len(ix.links), func(i int) bool { return ix.links[i].AtSeq >= msgs[0].Seq })
	idents := map[kith.IdentKey]int{} // index into b.Identifiers
	traits := map[[2]string]int{}     // (profile, key) -> index into b.Traits
	for i, m := range msgs {
		if i%256 == 255 {
			runtime.Gosched() // keep request latency low while a big batch is derived
		}
		b.Processed[m.SourceID]++
		for ; nextLink < len(ix.links) && ix.links[nextLink].AtSeq < m.Seq; nextLink++ {
			if err := ix.applyLink(ctx, &b, ix.links[nextLink]); err != nil {
				return kith.IndexBatch{}, err
			}
		}
		e := &ex[i]
		if e.invalid {
			continue
		}
		if e.prevID != "" {
			// An alias links previousId, known as a user or anonymous id,
			// to userId; an unknown previousId becomes an anonymous id.
			id := ix.rules.Normalise(kith.IdentAnonymousID, e.prevID)
			key := e.prev[1]
			if _, ok := ix.ids.get(e.prev[0]); ok {
				id, key = ix.rules.Normalise(kith.IdentUserID, e.prevID), e.prev[0]
			}
			if ix.usable(key) && !containsKey(e.keys, key) {
				e.ids = append(e.ids, id)
				e.keys = append(e.keys, key)
			}
		}
		if err := ix.admit(ctx, e, m.Timestamp, m.Type == "alias"); err != nil {
			return kith.IndexBatch{}, err
		}
		if len(e.ids) == 0 {
			continue // only blocked identifiers: nothing to link
		}
		// Distinct profiles the identifiers resolve to, in priority order,
		// with the first identifier that led to each.
		var profiles []string
		via := map[string]int{}
		for j, k := range e.keys {
			owner, ok := ix.ids.owner(k)
			if !ok {
				continue
			}
			c := ix.find(owner)
			if _, seen := via[c]; !seen {
				via[c] = j
				profiles = append(profiles, c)
			}
		}
		var survivor string
		if len(profiles) == 0 {
			survivor = profileID(m.Seq)
			b.Profiles = append(b.Profiles, kith.NewProfile{ID: survivor, CreatedAt: m.ReceivedAt})
			ix.idents.set(survivor, nil) // cached: it holds nothing yet
		} else {
			survivor = profiles[0]
			for _, absorbed := range profiles[1:] {
				ix.mergeIdents(survivor, absorbed)
				id := e.ids[via[absorbed]]
				b.Merges = append(b.Merges, kith.Merge{
					Survivor: survivor, Absorbed: absorbed, SourceID: m.SourceID, MessageID: m.MessageID,
					IdentType: id.Type, Ident: id.Value, At: m.ReceivedAt,
				})
				ix.parent[absorbed] = survivor
			}
		}
		ix.noteIdents(survivor, e.ids, e.keys, m.Timestamp)
		for j, k := range e.keys {
			cached, known := ix.ids.get(k)
			owner := cached.owner
			if !known {
				owner = survivor
				ix.ids.attach(k, survivor)
			}
			if at, ok := idents[k]; ok {
				u := &b.Identifiers[at]
				if m.Timestamp.Before(u.FirstSeen) {
					u.FirstSeen = m.Timestamp
				}
				if m.Timestamp.After(u.LastSeen) {
					u.LastSeen = m.Timestamp
				}
				continue
			}
			if known {
				ts := m.Timestamp.UnixMicro()
				if cached.written && ts >= cached.first && ts <= cached.last+lastSeenSlack {
					continue // the stored row already covers this sighting
				}
			}
			idents[k] = len(b.Identifiers)
			b.Identifiers = append(b.Identifiers, kith.IdentifierUpsert{
				Key: k, Type: e.ids[j].Type, Value: e.ids[j].Value, ProfileID: owner,
				SourceID: m.SourceID, MessageID: m.MessageID, FirstSeen: m.Timestamp, LastSeen: m.Timestamp,
			})
		}
		traitTime := m.EventTime()
		for key, v := range e.traits {
			t := kith.TraitUpsert{ProfileID: survivor, Key: key, Value: v, SourceID: m.SourceID, MessageID: m.MessageID, EventTime: traitTime}
			tk := [2]string{survivor, key}
			if at, ok := traits[tk]; ok {
				if !t.EventTime.Before(b.Traits[at].EventTime) {
					b.Traits[at] = t
				}
				continue
			}
			traits[tk] = len(b.Traits)
			b.Traits = append(b.Traits, t)
		}
		b.Timeline = append(b.Timeline, kith.TimelineEntry{ProfileID: survivor, Timestamp: m.Timestamp, Seq: m.Seq, Type: m.Type, Event: m.Event})
		for _, c := range consentOf(m) {
			c.ProfileID = survivor
			b.Consents = append(b.Consents, c)
		}
		if commerce.IsOrder(m) {
			o, err := commerce.ParseOrder(m)
			if err != nil {
				ix.log.Warn("indexer: order does not decode", "seq", m.Seq, "err", err)
				continue
			}
			o.ProfileID = survivor
			b.Orders = append(b.Orders, o)
		}
	}
	for ; nextLink < len(ix.links) && ix.links[nextLink].AtSeq <= b.Cursor; nextLink++ {
		if err := ix.applyLink(ctx, &b, ix.links[nextLink]); err != nil {
			return kith.IndexBatch{}, err
		}
	}
	for _, u := range b.Identifiers {
		ix.ids.wrote(u.Key, u.FirstSeen.UnixMicro(), u.LastSeen.UnixMicro())
	}
	return b, nil
}

// unindexable says why nothing may be derived from m ("" when it may):
// its text is not text every store can hold (collect refuses such events,
// but a log written before it did, or by the consent API before it checked,
// may hold some), or the store refused what it derives (see isolate).
func (ix *Indexer) unindexable(m kith.Message) string {
	if ix.poison[m.Seq] {
		return "the store refused what it derives"
	}
	for _, f := range [...]string{m.MessageID, m.Type, m.Event, m.UserID, m.AnonymousID} {
		if p := kith.TextProblem(f); p != "" {
			return "a typed field " + p
		}
	}
	if p := kith.JSONTextProblem(m.Raw); p != "" {
		return "its body " + p
	}
	return ""
}

// usable reports whether an identifier may link: not detached, and inside
// the cluster when one is being re-derived.
func (ix *Indexer) usable(k kith.IdentKey) bool {
	return !ix.detached[k] && (ix.allow == nil || ix.allow[k])
}

// usableOnly returns the identifiers (and their keys) that may link; the
// slices themselves when all may.
func (ix *Indexer) usableOnly(ids []identity.Identifier, keys []kith.IdentKey) ([]identity.Identifier, []kith.IdentKey) {
	for j, k := range keys {
		if ix.usable(k) {
			continue
		}
		// Detached, or outside the cluster being re-derived: keep the rest.
		outIDs, outKeys := slices.Clone(ids[:j]), slices.Clone(keys[:j])
		for j++; j < len(keys); j++ {
			if ix.usable(keys[j]) {
				outIDs, outKeys = append(outIDs, ids[j]), append(outKeys, keys[j])
			}
		}
		return outIDs, outKeys
	}
	return ids, keys
}

func containsKey(keys []kith.IdentKey, k kith.IdentKey) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// profileEncoding is base32 with an alphabet in ASCII order, so encoded
// ids sort like the numbers they encode.
var profileEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// profileID names the profile created by the event at seq: the log
// position, fixed-width in base32, so that
//   - a replay of the log (after a crash, or a power cut that lost the
//     derived state's last commits) gives every profile the same id again;
//   - ids grow with creation, so a new profile's rows (profile, traits,
//     identifiers by profile, timeline) are appended at the end of their
//     B-trees instead of being written at random places — the main cost of
//     indexing as the number of people grows.
//
// It carries no personal data; clients treat it as opaque.
func profileID(seq int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return "p_" + profileEncoding.EncodeToString(b[:])
}
