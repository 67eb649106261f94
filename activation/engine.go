package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/pipeline"
)

// Store is what the engine reads and writes: the log, the identity and
// consent reads that decide whom a message is about and whether it may
// go, the audience change stream, and the destinations' state.
type Store interface {
	LogHead(ctx context.Context) (int64, error)
	ReadLog(ctx context.Context, after int64, limit int) ([]kith.Message, error)
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
	Canonical(ctx context.Context, profileID string) (string, error)
	Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error)
	Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error)
	Traits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error)
	Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error)
	TraitChanges(ctx context.Context, after int64, limit int) ([]kith.TraitChange, error)

	Destinations(ctx context.Context) ([]kith.Destination, error)
	Destination(ctx context.Context, name string) (kith.Destination, error)
	UpdateDestination(ctx context.Context, d kith.Destination) error
	DestinationProgress(ctx context.Context, id string) (kith.DestinationProgress, error)
	AdvanceDestination(ctx context.Context, id string, u kith.DestinationUpdate) error
	PendingDeliveries(ctx context.Context, id string) ([]kith.Delivery, error)
	Deliveries(ctx context.Context, id string, dead bool, after string, limit int) ([]kith.Delivery, error)
	Delivery(ctx context.Context, id, delivery string) (kith.Delivery, error)
	ReceivedBy(ctx context.Context, profiles []string) ([]string, error)
}

// Config is what an Engine is built from.
type Config struct {
	Store Store
	// Attribution attributes log events to the profiles the indexer
	// applied them to (pipeline.NewAttribution with the rules in force
	// and the store's keyer): consent is checked, and order kept, per
	// profile.
	Attribution *pipeline.Attribution
	// Cursor returns the indexer's cursor (pipeline.Indexer.Cursor): a
	// worker reads no event the indexer has not applied, so every event
	// it reads has a profile.
	Cursor func() int64
	// Policy decides retries (zero: the defaults).
	Policy Policy
	// BatchSize is how many log events, or audience changes, a worker
	// reads in one step, and how many retries it makes (default 500). A
	// crash re-sends at most one step's messages.
	BatchSize int
	// Poll is how often an idle worker looks for new events when Notify
	// is not called (default 250 ms).
	Poll time.Duration
	// BreakAfter is how many requests to a destination may fail in a row
	// before its worker stops taking new messages from the log and only
	// retries (default 3).
	BreakAfter int
	// TrackTraits, if set, is told the trait keys the destinations
	// subscribe to whenever they change (audience.Engine.TrackTraits),
	// so that their changes are recorded for them.
	TrackTraits func(keys []string)
	// Transport, if set, carries every request (tests reaching a TLS
	// receiver); nil gives each destination its own connection pool.
	Transport http.RoundTripper
	Now       func() time.Time
	Logger    *slog.Logger
}

// Engine delivers to every destination that is not paused, each in its
// own worker goroutine. It is safe for concurrent use.
type Engine struct {
	cfg       Config
	store     Store
	attr      *pipeline.Attribution
	transport transport
	now       func() time.Time
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	// mu serialises Reload, SetPaused, Forget and Close, and guards the
	// rest.
	mu      sync.Mutex
	workers map[string]*worker // by destination id
	closed  bool
	// holds counts the Forget calls not yet released: no worker starts
	// while one is, and held are the destinations whose workers they
	// stopped.
	holds int
	held  []kith.Destination
	// unrecorded keeps, by destination id, the profiles a stopped
	// worker had sent messages about without recording it
	// (worker.unrecorded), for its next worker.
	unrecorded map[string]map[string]bool
	// owners and pages are what the workers share of their
	// attributions and of the log they read.
	owners *owners
	pages  *logPages
}

// New returns an engine; Start starts its workers.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Attribution == nil || cfg.Cursor == nil {
		return nil, errors.New("activation: an engine needs a store, an attribution and the indexer's cursor")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.BreakAfter <= 0 {
		cfg.BreakAfter = 3
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Policy = cfg.Policy.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		cfg: cfg, store: cfg.Store, attr: cfg.Attribution, transport: transport{base: cfg.Transport},
		now: cfg.Now, log: cfg.Logger, ctx: ctx, cancel: cancel, workers: map[string]*worker{},
		unrecorded: map[string]map[string]bool{}, owners: newOwners(), pages: newLogPages(),
	}, nil
}

// Start starts a worker for every destination that is not paused.
func (e *Engine) Start(ctx context.Context) error { return e.Reload(ctx) }

// Reload reads the destinations again and makes the workers match: a new
// destination gets a worker, a deleted or paused one loses it, a changed
// one gets a new worker with its new settings (its deliveries and
// progress carry over through the store). The API calls it after every
// change it makes to a destination.
func (e *Engine) Reload(ctx context.Context) error {
	return e.match(ctx, func(string) bool { return true }, false)
}

// Changed makes one destination's worker match the store after the API
// changed that destination (created, updated, paused, resumed or deleted
// it): it stops the worker if there is one and starts a new one unless
// the destination is gone or paused, so that the worker reads its
// settings, progress and retrying deliveries again.
func (e *Engine) Changed(ctx context.Context, id string) error {
	return e.match(ctx, func(x string) bool { return x == id }, true)
}

// match makes the workers of the destinations in scope match the store:
// one for each that is not paused, with its current settings. restart
// replaces them even when their settings are unchanged.
func (e *Engine) match(ctx context.Context, scope func(id string) bool, restart bool) error {
	// The store is read under the lock: two changes made quickly one
	// after the other (pause, then resume) must be applied in the order
	// they read the store, or the older one would undo the newer.
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("activation: the engine is closed")
	}
	ds, err := e.store.Destinations(ctx)
	if err != nil {
		return fmt.Errorf("activation: reading the destinations: %w", err)
	}
	want := map[string]kith.Destination{}
	traits := map[string]bool{}
	for _, d := range ds {
		if !d.Paused && scope(d.ID) {
			want[d.ID] = d
		}
		for _, k := range d.Traits {
			traits[k] = true // paused ones too: their changes wait for them
		}
	}
	if e.cfg.TrackTraits != nil {
		e.cfg.TrackTraits(slices.Sorted(maps.Keys(traits)))
	}
	for id, w := range e.workers {
		if !scope(id) {
			continue
		}
		if d, ok := want[id]; !ok || restart || !sameSettings(d, w.d) {
			w.stop()
			delete(e.workers, id)
			e.keepUnrecorded(id, w)
		}
	}
	if e.holds > 0 {
		return nil // Forget's release starts them
	}
	for id, d := range want {
		if _, ok := e.workers[id]; !ok {
			e.start(d)
		}
	}
	return nil
}

// start starts a worker for d; e.mu is held.
func (e *Engine) start(d kith.Destination) {
	w := newWorker(e, d)
	w.unrecorded = e.unrecorded[d.ID]
	delete(e.unrecorded, d.ID)
	wctx, cancel := context.WithCancel(e.ctx)
	w.cancel = cancel
	e.workers[d.ID] = w
	go w.run(wctx)
}

// sameSettings reports whether a running worker's destination is still
// the stored one.
func sameSettings(a, b kith.Destination) bool {
	a.Config, b.Config = compactJSON(a.Config), compactJSON(b.Config)
	return reflect.DeepEqual(a, b)
}

func compactJSON(b json.RawMessage) json.RawMessage {
	var m any
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	out, _ := json.Marshal(m)
	return out
}

// stop ends the worker and waits for it: an attempt in flight is
// abandoned (nothing of it recorded, so it is made again).
func (w *worker) stop() {
	w.cancel()
	<-w.done
}

// SetPaused pauses or resumes a destination by name: a paused one keeps
// its position and its retries, and its worker stops until it is
// resumed; events that arrive meanwhile wait in the log.
func (e *Engine) SetPaused(ctx context.Context, name string, paused bool) (kith.Destination, error) {
	d, err := e.store.Destination(ctx, name)
	if err != nil {
		return kith.Destination{}, fmt.Errorf("activation: destination %s: %w", name, err)
	}
	if d.Paused != paused {
		d.Paused = paused
		if err := e.store.UpdateDestination(ctx, d); err != nil {
			return kith.Destination{}, fmt.Errorf("activation: destination %s: %w", name, err)
		}
	}
	return d, e.Changed(ctx, d.ID)
}

// Notify wakes every idle worker to look for new events and audience
// changes now rather than at its next poll. The server calls it when the
// indexer or the audience engine has applied a batch.
func (e *Engine) Notify() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.workers {
		w.notify()
	}
}

// Close stops every worker and waits for them. Attempts in flight are
// abandoned, and made again after a restart with the same delivery ids.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.cancel()
	for id, w := range e.workers {
		<-w.done
		delete(e.workers, id)
	}
	return nil
}

// Health returns each running worker's health ("destination <name>"), so
// /healthz and /metrics show a destination that fails request after
// request, or whose worker cannot read or record its state.
func (e *Engine) Health() []kith.WorkerHealth {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]kith.WorkerHealth, 0, len(e.workers))
	for _, w := range e.workers {
		out = append(out, w.status.Health())
	}
	slices.SortFunc(out, func(a, b kith.WorkerHealth) int { return strings.Compare(a.Worker, b.Worker) })
	return out
}

// State is how a destination's worker is doing, beside the stored
// counts: for the API, the CLI and the console.
type State struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Running bool   `json:"running"`
	// Progress is the position the worker has recorded.
	Progress kith.DestinationProgress `json:"progress"`
	// Pending counts the deliveries waiting for a retry, or behind one.
	Pending int `json:"pending"`
	// NextRetry is when the next one is due (zero when none).
	NextRetry time.Time `json:"nextRetry,omitzero"`
	// Waiting: requests failed so often in a row that new messages wait
	// in the log until a retry goes through.
	Waiting bool              `json:"waiting"`
	Health  kith.WorkerHealth `json:"health"`
	// Attempts are the latest requests, oldest first.
	Attempts []Attempt `json:"attempts"`
}

// State returns the state of a destination's worker by id; ok is false
// when no worker runs for it (paused, unknown, or not yet loaded).
func (e *Engine) State(id string) (s State, ok bool) {
	e.mu.Lock()
	w := e.workers[id]
	e.mu.Unlock()
	if w == nil {
		return State{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s = State{
		ID: w.d.ID, Name: w.d.Name, Running: true, Progress: w.snap.progress, Pending: w.snap.pending,
		NextRetry: w.snap.nextRetry, Waiting: w.snap.waiting, Health: w.status.Health(),
		Attempts: slices.Clone(w.attempts),
	}
	return s, true
}
