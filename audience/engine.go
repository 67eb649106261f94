package audience

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// Store is what the engine reads and writes: its own state, memberships and
// definitions, and (read-only) the log and the identity graph.
type Store interface {
	kith.AudienceStore
	ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error)
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
	Canonical(ctx context.Context, profileID string) (string, error)
	Cluster(ctx context.Context, canonicalID string) (kith.Cluster, error)
	EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error)
	ScanTraits(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
	ScanPredicted(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
	Traits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	IndexCursor(ctx context.Context) (int64, error)
}

// Config tunes an Engine.
type Config struct {
	// Secret keys identifier hashes (the store's), and Rules returns the
	// identity rules in force (identity.Current's Load, the indexer's
	// source too; nil: identity.DefaultRules): both are needed to
	// attribute events the engine reads from the log itself (behind the
	// indexer, after a restart, or for a backfill), which it does as the
	// indexer does (pipeline.Attribution).
	Secret []byte
	Rules  func() *identity.Rules
	// Now is the clock (tests set it); time.Now by default.
	Now    func() time.Time
	Logger *slog.Logger
	// QueueLimit bounds the handed-over events waiting (default 200,000);
	// past it the engine forgets them and reads the log instead.
	QueueLimit int
	// CacheStates bounds the decoded profile states kept in memory
	// (default 200,000).
	CacheStates int
	// FlushEvery is how long a changed state may stay unwritten (default
	// one second; negative writes whenever the engine is idle, for tests).
	// Memberships are written at once; states behind them, because a
	// state is rewritten by nearly every event while memberships change
	// rarely. After a crash the engine replays the log from where the
	// stored states are.
	FlushEvery time.Duration
}

// Engine keeps computed traits and audience memberships current. It
// follows the indexer: every applied batch is handed over (Applied), and
// the engine folds its events into the touched profiles' aggregate states,
// merges states when profiles merge, re-evaluates those profiles and
// records each entry and exit. A profile whose membership depends on time
// is scheduled for the instant it next changes. All of that runs in one
// goroutine (Run); definitions change through Put and Delete, which
// backfill in that goroutine with progress in the definition.
type Engine struct {
	// status is the engine's health for /healthz and /metrics.
	status kith.WorkerStatus

	store Store
	// attr attributes the events the engine reads from the log itself.
	attr  *pipeline.Attribution
	now   func() time.Time
	log   *slog.Logger
	limit int

	mu      sync.Mutex
	defs    []kith.Definition
	prog    *Program
	queue   []handover
	queued  int  // events in queue
	dropped bool // handovers were dropped: read the log
	replace [][]string
	erasing []eraseRequest
	refresh []kith.ProfileInsights
	reprog  bool
	wake    chan struct{}

	// tracked are the trait keys whose changes the engine records in
	// the trait change stream (TrackTraits); nil or empty: none.
	tracked atomic.Pointer[map[string]bool]

	cursor    atomic.Int64
	applied   chan struct{} // closed and replaced when the cursor moves
	lag       lags
	indexLag  lags         // arrival to the indexer's commit, for comparison
	scheduled atomic.Int64 // profiles with a scheduled change
	busy      int          // 1 while a handed-over batch is being applied (guarded by mu)

	// Engine goroutine only. cache holds the decoded states the engine
	// works on (it is their only writer); dirty ones are written behind,
	// at most flushEvery after they changed (see flush). storedCursor is
	// the membership cursor in the store.
	cache        map[string]*cached
	dirty        map[string]bool
	maxCache     int
	flushEvery   time.Duration
	lastFlush    time.Time
	storedCursor int64
	// progressSaved is when backfill progress was last stored.
	progressSaved time.Time
	due           dueHeap
	dueAt         map[string]int64
	started       bool
}

// cached is a state in memory and its encoding as last stored (nil when
// it is not stored).
type cached struct {
	st  *State
	enc []byte
	// sent are the tracked traits' values last recorded in the trait
	// change stream (JSON by key), once loaded (sentLoaded).
	sent       map[string]trackedValue
	sentLoaded bool
}

type handover struct {
	b    kith.IndexBatch
	msgs []kith.Message
}

// NewEngine returns an engine; call Start, then Run.
func NewEngine(store Store, cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 200_000
	}
	if cfg.CacheStates <= 0 {
		cfg.CacheStates = 200_000
	}
	if cfg.FlushEvery == 0 {
		cfg.FlushEvery = time.Second
	}
	return &Engine{
		store: store, attr: pipeline.NewAttribution(cfg.Rules, identity.NewKeyer(cfg.Secret), cfg.Logger, "audience engine"), now: cfg.Now, log: cfg.Logger,
		limit: cfg.QueueLimit, wake: make(chan struct{}, 1), applied: make(chan struct{}), dueAt: map[string]int64{},
		prog: &Program{}, maxCache: cfg.CacheStates, flushEvery: cfg.FlushEvery, dirty: map[string]bool{},
	}
}

// Program returns the current compiled definitions.
func (e *Engine) Program() *Program {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.prog
}

// Cursor is the log position the engine has applied.
func (e *Engine) Cursor() int64 { return e.cursor.Load() }

// WaitFor blocks until the engine has applied the log up to seq, or ctx
// ends.
func (e *Engine) WaitFor(ctx context.Context, seq int64) error {
	for {
		e.mu.Lock()
		ch := e.applied
		e.mu.Unlock()
		if e.cursor.Load() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (e *Engine) moved(c int64) {
	e.cursor.Store(c)
	e.mu.Lock()
	close(e.applied)
	e.applied = make(chan struct{})
	e.mu.Unlock()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Applied hands over a batch the indexer applied (b as applied, msgs its
// events). It never blocks the indexer: past the queue limit the batch is
// dropped and the engine reads those events from the log.
func (e *Engine) Applied(b kith.IndexBatch, msgs []kith.Message) {
	now := time.Now()
	for _, m := range msgs {
		if !m.ReceivedAt.IsZero() && now.Sub(m.ReceivedAt) < time.Minute {
			e.indexLag.add(now.Sub(m.ReceivedAt))
		}
	}
	e.mu.Lock()
	if e.queued+len(msgs) > e.limit {
		e.queue, e.queued, e.dropped = nil, 0, true
	} else if !e.dropped {
		e.queue = append(e.queue, handover{b: b, msgs: msgs})
		e.queued += len(msgs)
	}
	e.mu.Unlock()
	e.signal()
}

// Replaced tells the engine that the profiles in members were re-derived
// (an unmerge, a detachment): their states are rebuilt from their events.
func (e *Engine) Replaced(members []string) {
	e.mu.Lock()
	e.replace = append(e.replace, slices.Clone(members))
	e.mu.Unlock()
	e.signal()
}

type eraseRequest struct {
	ids  []string
	done chan eraseResult
}

type eraseResult struct {
	n   int64
	err error
}

// Erase makes the profiles (an erased person's members) leave their
// audiences, deletes their states and removes them from the membership
// history, on the engine's goroutine, and says how many history entries
// named them.
func (e *Engine) Erase(ctx context.Context, ids []string) (int64, error) {
	r := eraseRequest{ids: slices.Clone(ids), done: make(chan eraseResult, 1)}
	e.mu.Lock()
	e.erasing = append(e.erasing, r)
	e.mu.Unlock()
	e.signal()
	select {
	case res := <-r.done:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// EraseNow is Erase for an engine driven by Step (never beside Run).
func (e *Engine) EraseNow(ctx context.Context, ids []string) (int64, error) {
	w := e.newWork(ctx)
	if err := w.load(ids); err != nil {
		return 0, err
	}
	now := e.now()
	for _, id := range ids {
		if st := w.states[id]; st != nil {
			for _, k := range sortedKeys(st.Members) {
				w.changes = append(w.changes, kith.MembershipChange{Audience: k, ProfileID: id, At: now, Cause: "erased"})
			}
		}
		delete(w.states, id)
		delete(w.touched, id)
		w.gone[id] = true
	}
	exits := int64(len(w.changes))
	if err := w.commit(0); err != nil {
		return 0, err
	}
	if err := e.flush(ctx); err != nil {
		return 0, err
	}
	n, err := e.store.EraseAudienceHistory(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("audience: erase history: %w", err)
	}
	// The exits just written are erased too; they are not history the
	// person had.
	return n - exits, nil
}

// Predicted hands over what an insight run predicted, so audiences on
// predicted traits (churn risk, CLV, RFM segment) follow each run.
func (e *Engine) Predicted(ps []kith.ProfileInsights) {
	e.mu.Lock()
	e.refresh = append(e.refresh, ps...)
	e.mu.Unlock()
	e.signal()
}

// Start loads and compiles the definitions and the schedule. A definition
// that no longer compiles is an error: nothing is evaluated against a
// half-understood set.
func (e *Engine) Start(ctx context.Context) error {
	defs, err := e.store.Definitions(ctx)
	if err != nil {
		return fmt.Errorf("audience: load definitions: %w", err)
	}
	prog, err := Compile(defs)
	if err != nil {
		return fmt.Errorf("audience: compile stored definitions: %w", err)
	}
	c, sc, err := e.store.AudienceCursors(ctx)
	if err != nil {
		return fmt.Errorf("audience: read cursor: %w", err)
	}
	e.mu.Lock()
	e.defs, e.prog = defs, prog
	for _, d := range defs {
		if d.Backfill.State == kith.BackfillPending || d.Backfill.State == kith.BackfillRunning {
			e.reprog = true // interrupted: run it again
		}
	}
	e.mu.Unlock()
	// The stored states reflect the log up to sc, memberships up to c:
	// the engine goes on from sc (re-applying what the states lack
	// changes no membership already recorded).
	e.storedCursor = c
	e.cursor.Store(min(c, sc))
	if sc < c {
		e.dropped = true // read the log from sc
	}
	err = e.store.ScanStates(ctx, func(id string, b []byte, _ []kith.Member) error {
		if b == nil {
			return nil
		}
		st, err := DecodeState(b)
		if err != nil {
			return err
		}
		if st.Due > 0 {
			e.schedule(id, st.Due)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audience: load schedule: %w", err)
	}
	e.started = true
	return nil
}

// Health reports whether the engine is making progress.
func (e *Engine) Health() kith.WorkerHealth {
	h := e.status.Health()
	h.Worker = "audiences"
	h.Skipped += e.attr.Undecodable() // events read from the log it could not attribute
	return h
}

// Run applies handed-over batches, catches up from the log when needed,
// fires scheduled expiries and runs backfills, until ctx ends. Errors are
// logged and retried; nothing is skipped.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started {
		if err := e.Start(ctx); err != nil {
			return err
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		worked, err := e.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			e.status.Fail(err, time.Now())
			e.log.Error("audience engine failed; retrying", "err", err, "backoff", backoff)
			sleepCtx(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		e.status.OK()
		if worked {
			continue
		}
		wait := time.Second
		if len(e.due) > 0 {
			wait = min(wait, max(0, time.UnixMicro(e.due[0].at).Sub(e.now())))
		}
		if len(e.dirty) > 0 {
			wait = min(wait, max(0, e.flushEvery-time.Since(e.lastFlush)))
		}
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-time.After(wait):
		}
	}
	// Write what is pending, so a restart need not replay it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := e.flush(fctx); err != nil {
		e.log.Warn("audience engine: states not written at stop; they are re-derived at start", "err", err)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Step does one unit of work if there is one: a definition change, a
// re-derived cluster, predictions, a handed-over batch, catching up with
// the indexer, or due expiries. Tests drive the engine with it.
func (e *Engine) Step(ctx context.Context) (bool, error) {
	worked, err := e.step(ctx)
	if err != nil {
		e.recover(ctx)
	}
	return worked, err
}

// recover goes back to what the store holds after a failed unit of work:
// states in memory may have changed without being written, so they are
// dropped and the engine re-reads the log from where the stored states
// are (memberships recorded meanwhile are kept and compared against).
func (e *Engine) recover(ctx context.Context) {
	e.cache, e.dirty = nil, map[string]bool{}
	c, sc, err := e.store.AudienceCursors(ctx)
	if err != nil {
		return // the next step fails too and tries again
	}
	e.storedCursor = c
	e.cursor.Store(min(c, sc))
	e.mu.Lock()
	e.queue, e.queued, e.dropped = nil, 0, true
	e.mu.Unlock()
}

func (e *Engine) step(ctx context.Context) (bool, error) {
	if len(e.dirty) > 0 && (len(e.dirty) >= e.maxCache/2 || e.flushEvery > 0 && time.Since(e.lastFlush) >= e.flushEvery) {
		return true, e.flush(ctx)
	}
	worked, err := e.work(ctx)
	if worked || err != nil {
		return worked, err
	}
	if len(e.dirty) > 0 && e.flushEvery < 0 {
		return true, e.flush(ctx)
	}
	return false, nil
}

// work does one unit of work other than writing states.
func (e *Engine) work(ctx context.Context) (bool, error) {
	if !e.started {
		if err := e.Start(ctx); err != nil {
			return false, err
		}
	}
	e.mu.Lock()
	if len(e.erasing) > 0 {
		reqs := e.erasing
		e.erasing = nil
		e.mu.Unlock()
		var ferr error
		for _, r := range reqs {
			n, err := e.EraseNow(ctx, r.ids)
			r.done <- eraseResult{n, err}
			if err != nil && ferr == nil {
				ferr = err
			}
		}
		return true, ferr
	}
	reprog, replace, refresh := e.reprog, e.replace, e.refresh
	e.reprog, e.replace, e.refresh = false, nil, nil
	var h *handover
	if len(e.queue) > 0 && !reprog && len(replace) == 0 && len(refresh) == 0 {
		// Fold every queued batch that continues the first into one unit
		// of work: one evaluation per touched profile and one commit,
		// however far behind the engine is.
		first := e.queue[0]
		h = &handover{b: first.b, msgs: first.msgs}
		n := 1
		for n < len(e.queue) && len(h.msgs) < coalesce {
			nx := e.queue[n]
			if len(nx.msgs) == 0 || len(h.msgs) == 0 || nx.msgs[0].Seq != h.msgs[len(h.msgs)-1].Seq+1 {
				break
			}
			if n == 1 {
				h.b = joinBatches(h.b, kith.IndexBatch{})
				h.msgs = slices.Clone(h.msgs)
			}
			h.b = joinBatches(h.b, nx.b)
			h.msgs = append(h.msgs, nx.msgs...)
			n++
		}
		for _, q := range e.queue[:n] {
			e.queued -= len(q.msgs)
		}
		e.queue = e.queue[n:]
		e.busy = 1
	}
	dropped := e.dropped
	e.mu.Unlock()
	switch {
	case reprog:
		return true, e.withRetry(func() error { return e.backfill(ctx) }, func() { e.mu.Lock(); e.reprog = true; e.mu.Unlock() })
	case len(replace) > 0:
		return true, e.withRetry(func() error { return e.rederive(ctx, replace) }, func() {
			e.mu.Lock()
			e.replace = append(replace, e.replace...)
			e.mu.Unlock()
		})
	case len(refresh) > 0:
		return true, e.withRetry(func() error { return e.predicted(ctx, refresh) }, func() {
			e.mu.Lock()
			e.refresh = append(refresh, e.refresh...)
			e.mu.Unlock()
		})
	case h != nil:
		defer func() { e.mu.Lock(); e.busy = 0; e.mu.Unlock() }()
		if h.b.Cursor <= e.cursor.Load() {
			return true, nil // already applied (read from the log)
		}
		if len(h.msgs) == 0 || h.msgs[0].Seq != e.cursor.Load()+1 {
			// Not contiguous with what was applied: read the log.
			return true, e.catchUp(ctx, h.msgs[0].Seq-1)
		}
		// On failure recover() drops the queue and re-reads the log.
		if err := e.applyBatch(ctx, h.b, h.msgs, false); err != nil {
			return true, err
		}
		e.recordLag(h.msgs)
		return true, nil
	}
	if dropped {
		head, err := e.store.IndexCursor(ctx)
		if err != nil {
			return false, err
		}
		e.mu.Lock()
		e.dropped = false
		e.mu.Unlock()
		return true, e.catchUp(ctx, head)
	}
	if len(e.due) > 0 && e.due[0].at <= e.now().UnixMicro() {
		return true, e.expire(ctx)
	}
	return false, nil
}

func (e *Engine) withRetry(f func() error, requeue func()) error {
	if err := f(); err != nil {
		requeue()
		return err
	}
	return nil
}

// recordLag notes, for each event just committed, how long after its
// arrival that was. Events older than a minute on arrival at the engine
// (a catch-up after a restart, a backfill) say nothing about real time.
func (e *Engine) recordLag(msgs []kith.Message) {
	done := time.Now()
	for _, m := range msgs {
		if !m.ReceivedAt.IsZero() && done.Sub(m.ReceivedAt) < time.Minute {
			e.lag.add(done.Sub(m.ReceivedAt))
		}
	}
}

// CatchUp applies the log from the engine's cursor up to the indexer's,
// attributing events by their identifiers. Start-up calls it for what the
// engine had not applied when the process stopped.
func (e *Engine) CatchUp(ctx context.Context) error {
	head, err := e.store.IndexCursor(ctx)
	if err != nil {
		return err
	}
	if err := e.catchUp(ctx, head); err != nil {
		e.cache = nil
		return err
	}
	return nil
}

const scanPage = 5000

// catchUp applies (cursor, upto] read from the log.
func (e *Engine) catchUp(ctx context.Context, upto int64) error {
	for e.cursor.Load() < upto {
		msgs, err := e.store.ReadLog(ctx, e.cursor.Load(), min(scanPage, int(upto-e.cursor.Load())))
		if err != nil {
			return fmt.Errorf("audience: read log: %w", err)
		}
		if len(msgs) == 0 {
			// The rest of the stretch was deleted (erased or expired):
			// nothing to apply, but the engine is there.
			return e.applyBatch(ctx, kith.IndexBatch{Cursor: upto}, nil, true)
		}
		owners, err := e.resolve(ctx, msgs)
		if err != nil {
			return err
		}
		b := kith.IndexBatch{Cursor: msgs[len(msgs)-1].Seq}
		for i, m := range msgs {
			if owners[i] != "" {
				b.Timeline = append(b.Timeline, kith.TimelineEntry{ProfileID: owners[i], Seq: m.Seq})
			}
		}
		// Profiles merged meanwhile: fold the absorbed states in.
		if err := e.applyBatch(ctx, b, msgs, true); err != nil {
			return err
		}
		e.recordLag(msgs)
	}
	return nil
}

// resolve attributes each message to the canonical profile owning its
// strongest identifier that has an owner ("" for none), under the rules in
// force, as the indexer reads it; a message that does not decode is logged
// and counted (Undecodable).
func (e *Engine) resolve(ctx context.Context, msgs []kith.Message) ([]string, error) {
	out, err := e.attr.Owners(ctx, e.store, msgs)
	if err != nil {
		return nil, fmt.Errorf("audience: attribute events: %w", err)
	}
	return out, nil
}

// Undecodable counts the events read from the log that the engine could
// not attribute because they do not decode (each logged as a warning).
func (e *Engine) Undecodable() int64 { return e.attr.Undecodable() }

// coalesce is the most events the engine folds in one unit of work.
const coalesce = 20000

// joinBatches appends b's derived facts to a (a copy: handed-over batches
// are shared with the indexer).
func joinBatches(a, b kith.IndexBatch) kith.IndexBatch {
	return kith.IndexBatch{
		Cursor:   max(a.Cursor, b.Cursor),
		Timeline: append(slices.Clip(a.Timeline), b.Timeline...),
		Merges:   append(slices.Clip(a.Merges), b.Merges...),
		Traits:   append(slices.Clip(a.Traits), b.Traits...),
	}
}

// work is the states a unit of work touches, loaded once and written once.
type work struct {
	e       *Engine
	ctx     context.Context
	states  map[string]*State
	gone    map[string]bool
	touched map[string]int64 // canonical → causing seq (0 for none)
	changes []kith.MembershipChange

	// tracked is the engine's tracked trait keys for this unit of work
	// (nil: none), and before each loaded profile's values of them as
	// last recorded in the trait change stream, to tell what changed.
	tracked      map[string]bool
	before       map[string]map[string]trackedValue
	traitChanges []kith.TraitChange
}

func (e *Engine) newWork(ctx context.Context) *work {
	w := &work{e: e, ctx: ctx, states: map[string]*State{}, gone: map[string]bool{}, touched: map[string]int64{}}
	if t := e.tracked.Load(); t != nil && len(*t) > 0 {
		w.tracked, w.before = *t, map[string]map[string]trackedValue{}
	}
	return w
}

// TrackTraits sets the trait keys — computed, predicted or from events —
// whose changes the engine records in the trait change stream from now
// on (activation's destinations subscribe to them). Predicted and event
// traits it tracks are kept in its states like those audiences read.
func (e *Engine) TrackTraits(keys []string) {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	e.tracked.Store(&m)
}

// stateTraits are the trait keys the engine keeps in states: those the
// audiences read and those it tracks.
func (e *Engine) stateTraits(prog *Program) map[string]bool {
	keys := map[string]bool{}
	for _, k := range prog.TraitKeys {
		keys[k] = true
	}
	if t := e.tracked.Load(); t != nil {
		for k := range *t {
			keys[k] = true
		}
	}
	return keys
}

// trackedValue is a tracked trait's value (JSON) and where it came from.
type trackedValue struct {
	json       string
	provenance string
}

// trackedValues returns a profile's values of the tracked traits at now:
// computed traits from its aggregates, the others from its traits.
func trackedValues(prog *Program, st *State, tracked map[string]bool, now time.Time) map[string]trackedValue {
	out := map[string]trackedValue{}
	if st == nil {
		return out
	}
	computed := map[string]bool{}
	for _, c := range prog.Computed {
		computed[c.Key] = true
	}
	if len(computed) > 0 {
		for k, v := range prog.ComputedValues(st, now) {
			if !tracked[k] {
				continue
			}
			if b, err := json.Marshal(v); err == nil {
				out[k] = trackedValue{json: string(b), provenance: kith.ProvenanceComputed}
			}
		}
	}
	for k, tv := range st.Traits {
		if !tracked[k] || computed[k] {
			continue
		}
		p := kith.ProvenanceEvent
		if tv.P {
			p = kith.ProvenancePredicted
		}
		out[k] = trackedValue{json: string(tv.V), provenance: p}
	}
	return out
}

// recordTraits appends the tracked traits of profile id that changed
// since they were loaded (or last recorded) to the work's trait changes.
func (w *work) recordTraits(prog *Program, id string, now time.Time, seq int64) {
	before, ok := w.before[id]
	if !ok {
		return
	}
	after := trackedValues(prog, w.states[id], w.tracked, now)
	for _, k := range sortedKeys(after) {
		if a, b := after[k], before[k]; a.json != b.json {
			w.traitChanges = append(w.traitChanges, kith.TraitChange{ProfileID: id, Key: k, Value: json.RawMessage(a.json),
				Provenance: a.provenance, At: now, CauseSeq: seq})
		}
	}
	for _, k := range sortedKeys(before) {
		if _, ok := after[k]; !ok && w.tracked[k] {
			w.traitChanges = append(w.traitChanges, kith.TraitChange{ProfileID: id, Key: k, Value: json.RawMessage("null"),
				Provenance: before[k].provenance, At: now, CauseSeq: seq})
		}
	}
	// What the stream now holds: the new values of the tracked keys,
	// and the untracked ones as they were.
	for k, v := range before {
		if !w.tracked[k] {
			after[k] = v
		}
	}
	w.before[id] = after
}

// load fetches the states and memberships of ids not loaded yet (new
// profiles get an empty state).
func (w *work) load(ids []string) error {
	var need []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if _, ok := w.states[id]; ok || seen[id] {
			continue
		}
		if c, ok := w.e.cache[id]; ok {
			w.states[id] = c.st
			continue
		}
		seen[id] = true
		need = append(need, id)
	}
	if len(need) == 0 {
		return w.remember(ids)
	}
	got, mem, err := w.e.store.LoadProfiles(w.ctx, need)
	if err != nil {
		return fmt.Errorf("audience: load states and memberships: %w", err)
	}
	if w.e.cache == nil {
		w.e.cache = map[string]*cached{}
	}
	for _, id := range need {
		b := got[id]
		st, err := loadState(b, mem[id])
		if err != nil {
			return err
		}
		w.states[id] = st
		w.e.cache[id] = &cached{st: st, enc: b}
	}
	return w.remember(ids)
}

// remember notes, for loaded profiles not noted yet, their tracked
// traits' values as last recorded in the trait change stream (kept in
// the cache, read from the store once): what the work's values are
// compared with. Recorded values, not values recomputed now: a window
// that slid meanwhile, a definition changed, or a crash that lost
// states written behind the stream then still show as what they are.
func (w *work) remember(ids []string) error {
	if w.tracked == nil {
		return nil
	}
	var need []string
	for _, id := range ids {
		if _, ok := w.before[id]; ok {
			continue
		}
		if c, ok := w.e.cache[id]; ok && c.sentLoaded {
			w.before[id] = c.sent
			continue
		}
		need = append(need, id)
	}
	if len(need) == 0 {
		return nil
	}
	got, err := w.e.store.LoadTraitValues(w.ctx, need)
	if err != nil {
		return fmt.Errorf("audience: load recorded trait values: %w", err)
	}
	for _, id := range need {
		sent := map[string]trackedValue{}
		for k, v := range got[id] {
			sent[k] = trackedValue{json: string(v)}
		}
		w.before[id] = sent
		if c, ok := w.e.cache[id]; ok {
			c.sent, c.sentLoaded = sent, true
		}
	}
	return nil
}

// absorb folds the state of absorbed into survivor; the absorbed profile
// leaves its audiences.
func (w *work) absorb(survivor, absorbed string, at time.Time, causeSeq int64) {
	a := w.states[absorbed]
	if a == nil || survivor == absorbed {
		return
	}
	w.states[survivor].Merge(a)
	for _, k := range sortedKeys(a.Members) {
		w.changes = append(w.changes, kith.MembershipChange{Audience: k, ProfileID: absorbed, At: at, Cause: "merge", CauseSeq: causeSeq})
	}
	delete(w.states, absorbed)
	w.gone[absorbed] = true
	delete(w.touched, absorbed)
	w.touched[survivor] = max(w.touched[survivor], causeSeq)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// evaluate decides the touched profiles and records their changes, and
// those of their tracked traits.
func (w *work) evaluate(prog *Program, now time.Time, cause string) {
	for _, id := range sortedKeys(w.touched) {
		chs, _ := decide(prog, id, w.states[id], now, cause, w.touched[id])
		w.changes = append(w.changes, chs...)
		if w.tracked != nil {
			w.recordTraits(prog, id, now, w.touched[id])
		}
	}
}

// decide evaluates one profile at now, updates its memberships and next
// due time in st, and returns its entries and exits, and whether the
// stored part of st changed. It touches nothing but st, so a backfill runs
// it on every core.
func decide(prog *Program, id string, st *State, now time.Time, cause string, seq int64) ([]kith.MembershipChange, bool) {
	oldDue := st.Due
	in, due, changed := prog.evaluate(st, now)
	c := cause
	if c == "event" && seq == 0 {
		c = "update"
	}
	var out []kith.MembershipChange
	var exits []string
	for k := range st.Members {
		if i, ok := prog.audIdx[k]; !ok || !in[i] {
			exits = append(exits, k)
		}
	}
	slices.Sort(exits)
	for _, k := range exits {
		ch := kith.MembershipChange{Audience: k, ProfileID: id, At: now, Cause: c, CauseSeq: seq}
		if _, ok := prog.audIdx[k]; !ok {
			ch.Cause, ch.CauseSeq = "deleted", 0
		}
		out = append(out, ch)
		delete(st.Members, k)
	}
	for i, a := range prog.Audiences {
		if !in[i] {
			continue
		}
		if _, ok := st.Members[a.Key]; !ok {
			if st.Members == nil {
				st.Members = map[string]int64{}
			}
			st.Members[a.Key] = now.UnixMicro()
			out = append(out, kith.MembershipChange{Audience: a.Key, ProfileID: id, Entered: true, At: now, Cause: c, CauseSeq: seq})
		}
	}
	st.Due = 0
	if !due.IsZero() {
		st.Due = due.UnixMicro()
	}
	return out, changed || st.Due != oldDue
}

// commit records the changes, moving the membership cursor to c when it
// is past it; the touched and removed states are written behind (flush).
func (w *work) commit(c int64) error {
	e := w.e
	b := kith.AudienceBatch{Changes: w.changes, TraitChanges: w.traitChanges}
	if c > e.storedCursor {
		b.Cursor = c
	}
	if len(b.Changes) > 0 || len(b.TraitChanges) > 0 || b.Cursor > 0 {
		if err := e.store.ApplyAudienceBatch(w.ctx, b); err != nil {
			return fmt.Errorf("audience: apply batch: %w", err)
		}
		e.storedCursor = max(e.storedCursor, b.Cursor)
	}
	if e.cache == nil {
		e.cache = map[string]*cached{}
	}
	for id := range w.gone {
		delete(e.cache, id)
		e.dirty[id] = true
		e.schedule(id, 0)
	}
	for id := range w.touched {
		if ch, ok := e.cache[id]; !ok || ch.st != w.states[id] {
			e.cache[id] = &cached{st: w.states[id]} // a new profile or a rebuilt state
		}
		if sent, ok := w.before[id]; ok {
			e.cache[id].sent, e.cache[id].sentLoaded = sent, true
		}
		e.dirty[id] = true
		e.schedule(id, w.states[id].Due)
	}
	if c > 0 {
		e.moved(c)
	}
	return nil
}

// flush writes the changed states, with the log position they reflect.
func (e *Engine) flush(ctx context.Context) error {
	e.lastFlush = time.Now()
	if len(e.dirty) == 0 {
		return nil
	}
	b := kith.AudienceBatch{StatesCursor: e.cursor.Load()}
	encs := map[string][]byte{}
	for _, id := range sortedKeys(e.dirty) {
		c, ok := e.cache[id]
		if !ok {
			b.States = append(b.States, kith.ProfileState{ProfileID: id})
			continue
		}
		enc := c.st.Encode()
		if c.enc != nil && bytes.Equal(enc, c.enc) {
			continue
		}
		encs[id] = enc
		b.States = append(b.States, kith.ProfileState{ProfileID: id, State: enc})
	}
	if err := e.store.ApplyAudienceBatch(ctx, b); err != nil {
		return fmt.Errorf("audience: write states: %w", err)
	}
	for id, enc := range encs {
		e.cache[id].enc = enc
	}
	e.dirty = map[string]bool{}
	if len(e.cache) > e.maxCache {
		e.cache = nil // everything is written: start afresh
	}
	return nil
}

// Flush writes every changed state now (tests, and before a backfill).
func (e *Engine) Flush(ctx context.Context) error { return e.flush(ctx) }

// applyBatch folds one applied index batch into the engine. With
// foldMembers it also folds in the states of members merged into a touched
// profile that it was not told about (after reading the log itself).
func (e *Engine) applyBatch(ctx context.Context, b kith.IndexBatch, msgs []kith.Message, foldMembers bool) error {
	prog := e.Program()
	now := e.now()
	w := e.newWork(ctx)
	// The graph as of the end of the batch: profiles absorbed in it point
	// at their survivors.
	parent := map[string]string{}
	find := func(p string) string {
		for {
			q, ok := parent[p]
			if !ok {
				return p
			}
			p = q
		}
	}
	for _, m := range b.Merges {
		parent[m.Absorbed] = m.Survivor
	}
	prof := make(map[int64]string, len(b.Timeline))
	var ids []string
	for _, t := range b.Timeline {
		prof[t.Seq] = find(t.ProfileID)
		ids = append(ids, prof[t.Seq])
	}
	for _, m := range b.Merges {
		ids = append(ids, m.Absorbed, find(m.Survivor))
	}
	tkeys := e.stateTraits(prog)
	for _, t := range b.Traits {
		if tkeys[t.Key] {
			ids = append(ids, find(t.ProfileID))
		}
	}
	if err := w.load(ids); err != nil {
		return err
	}
	last := map[string]int64{}
	for _, m := range msgs {
		if p := prof[m.Seq]; p != "" {
			last[p] = m.Seq
		}
	}
	for _, m := range b.Merges {
		s := find(m.Survivor)
		w.touched[s] = max(w.touched[s], last[s])
		w.absorb(s, m.Absorbed, now, last[s])
	}
	if foldMembers {
		if err := e.foldMembers(w, ids, now); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		p := prof[m.Seq]
		if p == "" {
			continue
		}
		if _, ok := w.touched[p]; !ok {
			w.touched[p] = 0
		}
		w.touched[p] = max(w.touched[p], m.Seq)
		if prog.Matches(nameOf(m)) {
			prog.Apply(w.states[p], EventOf(m), now)
		}
	}
	for _, t := range b.Traits {
		if !tkeys[t.Key] {
			continue
		}
		p := find(t.ProfileID)
		w.states[p].SetTrait(t.Key, TraitValue{V: t.Value, T: t.EventTime.UnixMicro()})
		if _, ok := w.touched[p]; !ok {
			w.touched[p] = 0
		}
	}
	w.evaluate(prog, now, "event")
	return w.commit(b.Cursor)
}

// nameOf is the name aggregates match an event by: the track event or
// page/screen name, else the type (identify, group, alias).
func nameOf(m kith.Message) string {
	if m.Event != "" {
		return m.Event
	}
	return m.Type
}

// foldMembers folds into each loaded canonical profile the states of its
// members that the engine still holds apart (merges it learns of only from
// the graph, after reading the log itself).
func (e *Engine) foldMembers(w *work, ids []string, now time.Time) error {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || w.gone[id] {
			continue
		}
		seen[id] = true
		cl, err := e.store.Cluster(w.ctx, id)
		if err != nil {
			if kith.ErrorCode(err) == kith.ENOTFOUND {
				continue
			}
			return fmt.Errorf("audience: cluster of %s: %w", id, err)
		}
		var others []string
		for _, m := range cl.Members {
			if m != id {
				others = append(others, m)
			}
		}
		if len(others) == 0 {
			continue
		}
		if err := w.load(others); err != nil {
			return err
		}
		for _, m := range others {
			if st := w.states[m]; len(st.Aggs) == 0 && len(st.Traits) == 0 && len(st.Members) == 0 {
				delete(w.states, m) // nothing held apart
				continue
			}
			w.absorb(id, m, now, 0)
		}
	}
	return nil
}

// expire re-evaluates the profiles whose scheduled change is due.
func (e *Engine) expire(ctx context.Context) error {
	now := e.now()
	var ids []string
	for len(e.due) > 0 && e.due[0].at <= now.UnixMicro() && len(ids) < scanPage {
		it := heap.Pop(&e.due).(dueItem)
		if e.dueAt[it.id] == it.at {
			delete(e.dueAt, it.id)
			ids = append(ids, it.id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	w := e.newWork(ctx)
	if err := w.load(ids); err != nil {
		return err
	}

	for _, id := range ids {
		w.touched[id] = 0
	}
	w.evaluate(e.Program(), now, "expiry")
	return w.commit(0)
}

// rederive rebuilds the states of re-derived clusters from their events.
func (e *Engine) rederive(ctx context.Context, groups [][]string) error {
	prog := e.Program()
	now := e.now()
	w := e.newWork(ctx)
	var all []string
	for _, g := range groups {
		all = append(all, g...)
	}
	if err := w.load(all); err != nil {
		return err
	}
	// Everyone leaves; the new clusters are evaluated from scratch.
	old := map[string]map[string]int64{}
	for _, id := range all {
		if st := w.states[id]; st != nil {
			old[id] = st.Members
		}
		w.states[id] = &State{}
	}
	canon := map[string]bool{}
	for _, id := range all {
		c, err := e.store.Canonical(ctx, id)
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			continue // erased since: it only leaves
		}
		if err != nil {
			return fmt.Errorf("audience: canonical of %s: %w", id, err)
		}
		canon[c] = true
	}
	for _, id := range all {
		if !canon[id] {
			w.gone[id] = true
			for _, k := range sortedKeys(old[id]) {
				w.changes = append(w.changes, kith.MembershipChange{Audience: k, ProfileID: id, At: now, Cause: "split"})
			}
		}
	}
	for c := range canon {
		st := &State{Members: old[c]}
		if err := e.rebuild(ctx, prog, c, st, now); err != nil {
			return err
		}
		w.states[c] = st
		w.touched[c] = 0
		delete(w.gone, c)
	}
	w.evaluate(prog, now, "split")
	return w.commit(0)
}

// rebuild recomputes a canonical profile's aggregates and traits from the
// store.
func (e *Engine) rebuild(ctx context.Context, prog *Program, id string, st *State, now time.Time) error {
	cl, err := e.store.Cluster(ctx, id)
	if err != nil {
		return fmt.Errorf("audience: cluster of %s: %w", id, err)
	}
	seqs := slices.Clone(cl.Seqs)
	slices.Sort(seqs)
	for len(seqs) > 0 {
		n := min(len(seqs), 1000)
		msgs, err := e.store.EventsBySeq(ctx, seqs[:n])
		if err != nil {
			return fmt.Errorf("audience: events of %s: %w", id, err)
		}
		for _, m := range msgs {
			prog.Apply(st, EventOf(m), now)
		}
		seqs = seqs[n:]
	}
	traits, err := e.store.Traits(ctx, id)
	if err != nil {
		return fmt.Errorf("audience: traits of %s: %w", id, err)
	}
	keys := e.stateTraits(prog)
	for _, t := range traits {
		if keys[t.Key] {
			st.SetTrait(t.Key, TraitValue{V: t.Value, T: t.EventTime.UnixMicro(), P: t.Provenance == kith.ProvenancePredicted})
		}
	}
	return nil
}

// predicted applies an insight run's predictions.
func (e *Engine) predicted(ctx context.Context, ps []kith.ProfileInsights) error {
	prog := e.Program()
	keys := e.stateTraits(prog)
	now := e.now()
	for len(ps) > 0 {
		n := min(len(ps), scanPage)
		w := e.newWork(ctx)
		ids := make([]string, n)
		for i, p := range ps[:n] {
			ids[i] = p.ProfileID
		}
		if err := w.load(ids); err != nil {
			return err
		}
		for _, p := range ps[:n] {
			st := w.states[p.ProfileID]
			hit := false
			for k, v := range p.Traits {
				if keys[k] {
					st.SetTrait(k, TraitValue{V: v, T: now.UnixMicro(), P: true})
					hit = true
				}
			}
			if hit && w.tracked != nil {
				// A run predicts from a snapshot: a profile erased since
				// must not be recorded again in the trait change stream.
				if _, err := e.store.Canonical(ctx, p.ProfileID); kith.ErrorCode(err) == kith.ENOTFOUND {
					delete(w.states, p.ProfileID)
					w.gone[p.ProfileID] = true
					continue
				} else if err != nil {
					return fmt.Errorf("audience: profile %s: %w", p.ProfileID, err)
				}
			}
			if hit {
				w.touched[p.ProfileID] = 0
			}
		}
		w.evaluate(prog, now, "prediction")
		if err := w.commit(0); err != nil {
			return err
		}
		ps = ps[n:]
	}
	return nil
}

// ErrUnchanged is returned by Put when the definition is the same as the
// stored one.
var ErrUnchanged = errors.New("audience: definition unchanged")

// dueItem and dueHeap schedule each profile's next time-based change; a
// profile's entry is current only while dueAt still holds its time.
type dueItem struct {
	at int64
	id string
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// schedule sets (at > 0) or clears a profile's next change.
func (e *Engine) schedule(id string, at int64) {
	defer func() { e.scheduled.Store(int64(len(e.dueAt))) }()
	if at <= 0 {
		delete(e.dueAt, id)
		return
	}
	if e.dueAt[id] == at {
		return
	}
	e.dueAt[id] = at
	heap.Push(&e.due, dueItem{at: at, id: id})
	if len(e.due) > 4*len(e.dueAt)+1024 {
		// Drop superseded entries so the heap stays proportional.
		e.due = e.due[:0]
		for id, at := range e.dueAt {
			e.due = append(e.due, dueItem{at: at, id: id})
		}
		heap.Init(&e.due)
	}
}

// NextDue is the earliest scheduled change (zero for none).
func (e *Engine) NextDue() time.Time {
	var best int64
	for _, at := range e.dueAt {
		if best == 0 || at < best {
			best = at
		}
	}
	if best == 0 {
		return time.Time{}
	}
	return time.UnixMicro(best).UTC()
}
