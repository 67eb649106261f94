package activation

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/privacy"
)

// Filtered reasons: why a message a destination subscribes to was not
// sent. They label its filtered counters.
const (
	// FilteredSubscription: an event outside the destination's event
	// filter (type, name or source).
	FilteredSubscription = "subscription"
	// FilteredConsent: the profile has not granted every consent
	// category the destination lists (privacy.Allowed).
	FilteredConsent = "consent"
	// FilteredNoProfile: an audience change of a profile that no longer
	// exists (erased), so there is no one to send it about.
	FilteredNoProfile = "no_profile"
)

// Delivery kinds.
const (
	kindEvent    = "event"
	kindAudience = "audience"
)

// unattributed prefixes the key of an event attributed to no profile
// (its own key, followed by its log position).
const unattributed = "seq:"

// aboutProfile reports whether a delivery's key is a profile id: an
// event or audience message about someone, not an unattributed event or
// a deletion.
func aboutProfile(d *kith.Delivery) bool {
	return (d.Kind == kindEvent || d.Kind == kindAudience || d.Kind == kindTrait) && !strings.HasPrefix(d.Key, unattributed)
}

// Attempt is one request a worker made, for the console's list of recent
// attempts.
type Attempt struct {
	At       time.Time     `json:"at"`
	Messages int           `json:"messages"`
	Status   int           `json:"status,omitempty"`
	Latency  time.Duration `json:"latency"`
	Outcome  string        `json:"outcome"`
	Error    string        `json:"error,omitempty"`
}

// maxRecorded bounds the profiles a worker remembers having recorded as
// recipients (a few MB); past it, it starts over.
const maxRecorded = 50_000

// recentAttempts is how many attempts a worker remembers.
const recentAttempts = 20

// errGone stops a worker whose destination was deleted.
var errGone = errors.New("destination deleted")

// worker delivers to one destination in its own goroutine: nothing it
// waits for (a slow receiver, a hanging connection, its backoff, its rate
// limit) holds up another destination.
type worker struct {
	e      *Engine
	d      kith.Destination
	status *kith.WorkerStatus
	wake   chan struct{}
	// asked is signalled with wake when a request (a replay) waits for
	// the worker's next step, so that it does not wait out a backoff.
	asked  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	// The rest is the worker goroutine's, but for what State reads
	// under mu.
	sender Sender
	mapper *mapper // nil: messages go as they are
	// traits caches the traits of the profiles a step's mapping read.
	traits map[string]map[string]json.RawMessage
	limits Limits
	rate   limiter
	loaded bool
	// progress is the position stored (and reached) so far.
	progress kith.DestinationProgress
	// queues holds the retrying deliveries of each key (a profile),
	// oldest first: the first is retried at its NextAt, the others wait
	// behind it. due orders the keys by their first delivery's NextAt.
	queues  map[string][]*kith.Delivery
	due     dueHeap
	pending int
	// fails counts the requests that failed in a row; at BreakAfter the
	// worker stops taking new messages from the log until one succeeds.
	fails int
	// lastOrder is the last position order gave.
	lastOrder int64

	// unrecorded holds the profiles the worker sent messages about (or
	// tried to) that no recorded step names yet: those of a step that
	// failed to record, or was abandoned by a stop. The next recorded
	// step records them; after a stop the engine keeps them for the
	// destination's next worker and for Forget.
	unrecorded map[string]bool
	// recorded holds profiles this worker has recorded as recipients
	// (DestinationUpdate.Recipients), so that later steps do not write
	// them again: a row per profile per step, on the writer the ack path
	// shares. A record goes only through Forget, which stops the worker
	// first; a new worker starts with none. Bounded by maxRecorded.
	recorded map[string]bool

	mu       sync.Mutex
	snap     snapshot
	attempts []Attempt
	replays  []*replay
}

// snapshot is what State shows of the worker goroutine's state.
type snapshot struct {
	progress  kith.DestinationProgress
	pending   int
	waiting   bool
	nextRetry time.Time
}

func newWorker(e *Engine, d kith.Destination) *worker {
	return &worker{
		e:      e,
		d:      d,
		status: &kith.WorkerStatus{Name: "destination " + d.Name},
		wake:   make(chan struct{}, 1),
		asked:  make(chan struct{}, 1),
		done:   make(chan struct{}),
		rate:   limiter{rate: d.RateLimit},
	}
}

// notify wakes the worker if it is waiting for something to do.
func (w *worker) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// ask hands the worker a request for its next step (under w.mu) and
// wakes it, also out of a backoff.
func (w *worker) ask(rq *replay) {
	w.mu.Lock()
	w.replays = append(w.replays, rq)
	w.mu.Unlock()
	w.notify()
	select {
	case w.asked <- struct{}{}:
	default:
	}
}

// run is the worker's goroutine: steps until stopped, reporting every
// failure and backing off while they last.
func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	var backoff time.Duration
	for ctx.Err() == nil {
		stepped, err := w.serve(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errGone) {
			w.e.log.Info("activation: destination deleted; its worker stops", "destination", w.d.Name)
			return
		}
		w.loaded = false // what is in memory may be ahead of the store
		w.status.Fail(err, w.e.now())
		w.e.log.Warn("activation: destination worker failed; it retries", "destination", w.d.Name, "err", err)
		if stepped {
			backoff = 0 // it worked for a while: start over
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-w.asked:
			// A replay waits for an answer: try again now rather than
			// keep it waiting out the backoff.
			t.Stop()
		}
	}
}

// serve builds the sender, loads the destination's state and steps until
// an error; stepped says whether a step went through before it.
func (w *worker) serve(ctx context.Context) (stepped bool, err error) {
	if w.sender == nil {
		s, err := newSender(w.d, w.e.transport)
		if err != nil {
			return false, fmt.Errorf("destination %s: its config: %w", w.d.Name, err)
		}
		mp, err := newMapper(w.d.Mapping)
		if err != nil {
			return false, fmt.Errorf("destination %s: its mapping: %w", w.d.Name, err)
		}
		w.sender, w.limits, w.mapper = s, s.Limits(), mp
		w.limits.Messages = max(w.limits.Messages, 1)
	}
	if !w.loaded {
		if err := w.load(ctx); err != nil {
			return false, err
		}
	}
	for {
		more, err := w.step(ctx)
		if err != nil {
			return stepped, err
		}
		stepped = true
		if more {
			continue
		}
		wait := w.e.cfg.Poll
		if w.waiting() {
			wait = time.Hour // the log waits; only a retry is due
		}
		if w.due.Len() > 0 {
			wait = min(wait, w.due[0].at.Sub(w.e.now()))
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return stepped, ctx.Err()
		case <-w.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// load reads the stored progress and retrying deliveries.
func (w *worker) load(ctx context.Context) error {
	p, err := w.e.store.DestinationProgress(ctx, w.d.ID)
	if kith.ErrorCode(err) == kith.ENOTFOUND {
		return errGone
	} else if err != nil {
		return fmt.Errorf("destination %s: reading its progress: %w", w.d.Name, err)
	}
	ds, err := w.e.store.PendingDeliveries(ctx, w.d.ID)
	if err != nil {
		return fmt.Errorf("destination %s: reading its retries: %w", w.d.Name, err)
	}
	w.progress = p
	w.queues = map[string][]*kith.Delivery{}
	w.due = w.due[:0]
	w.pending = 0
	for i := range ds {
		d := &ds[i]
		w.queues[d.Key] = append(w.queues[d.Key], d)
		w.pending++
	}
	for key, q := range w.queues {
		// In the store's order (by seq): the first is retried first.
		heap.Push(&w.due, dueKey{at: q[0].NextAt, key: key})
	}
	w.loaded = true
	w.publish()
	return nil
}

// waiting reports whether the destination failed BreakAfter requests in
// a row while messages wait for a retry: new messages then stay in the
// log until a retry goes through.
func (w *worker) waiting() bool {
	return w.fails >= w.e.cfg.BreakAfter && w.pending > 0
}

// step is one unit of work, recorded in one AdvanceDestination: the
// retries that are due, then new events from the log, then new audience
// changes. more says that work is left over (a full read, retries still
// due).
func (w *worker) step(ctx context.Context) (more bool, err error) {
	if w.unrecorded == nil {
		w.unrecorded = map[string]bool{}
	}
	st := &step{put: map[string]int{}, recipients: w.unrecorded}
	st.u.Progress = w.progress
	clear(w.traits)
	now := w.e.now()
	replays, err := w.takeReplays(ctx, st, now)
	if err != nil {
		return false, err
	}
	defer func() { answer(replays, err) }()

	if more, err = w.retryDue(ctx, st, now); err != nil {
		return false, err
	}
	p := &st.u.Progress
	streams := []struct {
		read func(context.Context) (read, error)
		pos  *int64
	}{
		{w.events, &p.LogSeq},
		{func(ctx context.Context) (read, error) { return w.replayed(ctx, *p) }, &p.ReplayAt},
		{w.changes, &p.ChangeSeq},
		{w.traitChanges, &p.TraitSeq},
	}
	for _, s := range streams {
		if w.waiting() {
			break // new messages wait where they are
		}
		if s.pos == &p.ReplayAt && !p.Replaying() || s.pos == &p.TraitSeq && len(w.d.Traits) == 0 {
			continue
		}
		if s.pos == &p.ChangeSeq && p.Sync > 0 {
			// The audiences' members first; their changes wait.
			synced, err := w.sync(ctx, st)
			if err != nil {
				return false, err
			}
			more = more || synced
			continue
		}
		rd, err := s.read(ctx)
		if err != nil {
			return false, err
		}
		handled, err := w.deliver(ctx, st, rd.items)
		if err != nil {
			return false, err
		}
		*s.pos = rd.reached(*s.pos, handled)
		more = more || rd.full && handled == len(rd.items)
	}
	if p.ReplayTo > 0 && !p.Replaying() {
		p.ReplayAt, p.ReplayTo, p.ReplayID = 0, 0, 0 // the replay is over
	}
	if st.empty(w.progress) {
		w.publish()
		return more, nil
	}
	for p := range st.recipients {
		if !w.recorded[p] {
			st.u.Recipients = append(st.u.Recipients, p)
		}
	}
	slices.Sort(st.u.Recipients)
	if err := w.e.store.AdvanceDestination(ctx, w.d.ID, st.u); err != nil {
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			return false, errGone
		}
		return false, fmt.Errorf("destination %s: recording its progress: %w", w.d.Name, err)
	}
	w.progress = st.u.Progress
	w.unrecorded = nil
	if w.recorded == nil || len(w.recorded)+len(st.u.Recipients) > maxRecorded {
		w.recorded = make(map[string]bool, len(st.u.Recipients))
	}
	for _, p := range st.u.Recipients {
		w.recorded[p] = true
	}
	if !st.failed {
		w.status.OK()
	}
	w.publish()
	return more, nil
}

// read is what a worker read of one stream (the log, the audience
// changes): its items in order, how far it covers the stream (upTo), and
// whether it was a whole batch (more may follow at once).
type read struct {
	items []item
	upTo  int64
	full  bool
}

// reached is the stream position after handling items[:handled], from
// position from: upTo when every item was handled, else the last handled
// item's (the rest is read again).
func (rd read) reached(from int64, handled int) int64 {
	switch {
	case handled == len(rd.items):
		return max(from, rd.upTo)
	case handled > 0:
		return rd.items[handled-1].seq
	}
	return from
}

// step collects one unit of work's update.
type step struct {
	u kith.DestinationUpdate
	// put indexes u.Put by delivery id, so a delivery changed twice in a
	// step is put once, as it ended.
	put map[string]int
	// failed: a request failed in this step (the worker is not healthy
	// just because its progress was recorded).
	failed bool
	// recipients are the profiles the step sent messages about (tried
	// to: a request that failed may still have reached the receiver).
	recipients map[string]bool
}

func (s *step) putDelivery(d kith.Delivery) {
	if i, ok := s.put[d.ID]; ok {
		s.u.Put[i] = d
		return
	}
	s.put[d.ID] = len(s.u.Put)
	s.u.Put = append(s.u.Put, d)
}

func (s *step) filter(reason string) {
	if s.u.Filtered == nil {
		s.u.Filtered = map[string]int64{}
	}
	s.u.Filtered[reason]++
}

// empty reports whether the step changed nothing to record.
func (s *step) empty(from kith.DestinationProgress) bool {
	return s.u.Progress == from && len(s.u.Put) == 0 && len(s.u.Done) == 0 && s.u.Delivered == 0 &&
		len(s.u.Filtered) == 0 && len(s.recipients) == 0
}

// item is one message read from a stream: sent (d) or filtered (reason)
// or skipped (neither: not subscribed, and not counted).
type item struct {
	seq    int64
	d      *kith.Delivery
	reason string
}

// retryDue retries the deliveries whose time has come, each alone, at
// most a batch of them per step.
func (w *worker) retryDue(ctx context.Context, st *step, now time.Time) (more bool, err error) {
	for budget := w.e.cfg.BatchSize; w.due.Len() > 0 && !w.due[0].at.After(now); {
		if budget == 0 {
			return true, nil
		}
		dk := heap.Pop(&w.due).(dueKey)
		q := w.queues[dk.key]
		if len(q) == 0 || !q[0].NextAt.Equal(dk.at) {
			continue // stale: the key's first delivery changed since
		}
		budget--
		if err := w.attempt(ctx, st, []*kith.Delivery{q[0]}); err != nil {
			return false, err
		}
	}
	return false, nil
}

// deliver sends the new messages among items in order, in requests
// within the sender's limits, and says how many items it handled: all,
// unless the destination failed so often in a row that the rest should
// wait in the log. A message whose profile has a delivery waiting for a
// retry is not sent: it waits behind that one.
func (w *worker) deliver(ctx context.Context, st *step, items []item) (handled int, err error) {
	i := 0
	for i < len(items) {
		if w.waiting() {
			break
		}
		var group []*kith.Delivery
		bytes := 0
		j := i
		for ; j < len(items); j++ {
			it := items[j]
			if it.d == nil {
				if it.reason != "" {
					st.filter(it.reason)
				}
				continue
			}
			it.d.Seq = w.order()
			if len(w.queues[it.d.Key]) > 0 {
				w.enqueue(st, it.d)
				continue
			}
			if len(group) > 0 && (len(group) == w.limits.Messages || w.limits.Bytes > 0 && bytes+len(it.d.Body) > w.limits.Bytes) {
				break
			}
			group = append(group, it.d)
			bytes += len(it.d.Body)
		}
		if len(group) > 0 {
			if err := w.attempt(ctx, st, group); err != nil {
				return 0, err
			}
		}
		i = j
	}
	// Counters of items not handled must not be recorded: they are read
	// again. Filtered items are counted as the loop passes them, so only
	// handled ones are.
	return i, nil
}

// order returns the next position in the order the worker takes
// messages in, which Delivery.Seq keeps: a key's deliveries are retried
// in it, whatever stream each came from (the log, the audience or trait
// changes, a first sync). It follows the clock (Unix nanoseconds), so it
// keeps growing across restarts, and never repeats within a worker.
func (w *worker) order() int64 {
	n := w.e.now().UnixNano()
	if n <= w.lastOrder {
		n = w.lastOrder + 1
	}
	w.lastOrder = n
	return n
}

// enqueue makes d wait behind its key's retrying deliveries.
func (w *worker) enqueue(st *step, d *kith.Delivery) {
	if d.FirstAt.IsZero() {
		d.FirstAt = w.e.now()
	}
	// Due as soon as the ones before it are through.
	d.NextAt = d.FirstAt
	w.queues[d.Key] = append(w.queues[d.Key], d)
	w.pending++
	st.putDelivery(*d)
}

// attempt sends ds in one request (after the rate limit's wait) and
// settles each by the policy's decision. ds are either one delivery
// waiting for its retry (the first of its key's queue) or new messages.
func (w *worker) attempt(ctx context.Context, st *step, ds []*kith.Delivery) error {
	if wait := w.rate.reserve(w.e.now(), len(ds)); wait > 0 && !sleep(ctx, wait) {
		return ctx.Err()
	}
	msgs := make([]Message, len(ds))
	for i, d := range ds {
		msgs[i] = Message{ID: d.ID, Body: d.Body}
		if aboutProfile(d) {
			st.recipients[d.Key] = true
		}
	}
	res := w.sender.Send(ctx, requestID(msgs), msgs)
	if ctx.Err() != nil {
		// Stopped, not failed: nothing is decided and nothing recorded.
		return ctx.Err()
	}
	now := w.e.now()
	first := ds[0].FirstAt
	attempts := ds[0].Attempts + 1
	if first.IsZero() {
		first = now
	}
	dec := w.e.cfg.Policy.Decide(res, attempts, first, now)
	w.record(Attempt{At: now, Messages: len(ds), Status: res.Status, Latency: res.Latency, Outcome: dec.Outcome.String(), Error: dec.Error})
	switch dec.Outcome {
	case Delivered:
		w.fails = 0
		w.status.OK()
	case Retry:
		w.fails++
		st.failed = true
		w.status.Fail(fmt.Errorf("destination %s: %s", w.d.Name, dec.Error), now)
	case Dead:
		w.status.Skip(int64(len(ds)))
		if res.Err != nil || retryable(res.Status) {
			w.fails++ // gave up on a failure that would have been retried
			st.failed = true
		}
		w.e.log.Warn("activation: messages dead-lettered", "destination", w.d.Name, "messages", len(ds), "status", res.Status, "error", dec.Error)
	}
	for _, d := range ds {
		w.settle(st, d, dec, res.Status, now)
	}
	return nil
}

// settle applies a decision to one delivery: a stored one is done,
// changed or dead-lettered; a new one is counted, or stored to be
// retried (blocking its key) or dead-lettered.
func (w *worker) settle(st *step, d *kith.Delivery, dec Decision, status int, now time.Time) {
	stored := w.isHead(d)
	if d.FirstAt.IsZero() {
		d.FirstAt = now
	}
	switch dec.Outcome {
	case Delivered:
		st.u.Delivered++
		if stored {
			st.u.Done = append(st.u.Done, d.ID)
			w.popHead(d.Key)
		}
		return
	case Retry:
		d.Attempts++
		d.NextAt = dec.NextAt
	case Dead:
		d.Attempts++
		d.Dead = true
		d.NextAt = time.Time{}
	}
	d.LastStatus, d.LastError = status, dec.Error // the store keeps it as kith.SafeText
	st.putDelivery(*d)
	switch {
	case stored && d.Dead:
		w.popHead(d.Key)
	case stored:
		heap.Push(&w.due, dueKey{at: d.NextAt, key: d.Key})
	case !d.Dead:
		// A new message of a key with nothing waiting (else it would
		// have been queued): it is the key's first now.
		w.queues[d.Key] = append(w.queues[d.Key], d)
		w.pending++
		if len(w.queues[d.Key]) == 1 {
			heap.Push(&w.due, dueKey{at: d.NextAt, key: d.Key})
		}
	}
}

// isHead reports whether d is the first of its key's queue (a stored
// delivery being retried).
func (w *worker) isHead(d *kith.Delivery) bool {
	q := w.queues[d.Key]
	return len(q) > 0 && q[0] == d
}

// popHead removes a key's first delivery; the next one, if any, is due
// at once (it only waited for the first).
func (w *worker) popHead(key string) {
	q := w.queues[key][1:]
	w.pending--
	if len(q) == 0 {
		delete(w.queues, key)
		return
	}
	w.queues[key] = q
	heap.Push(&w.due, dueKey{at: q[0].NextAt, key: key})
}

// requestID names a request: a single message's delivery id (a
// receiver's webhook-id, the same on every retry), or for a batch a
// digest of its messages' ids, the same whenever the same messages go
// together.
func requestID(msgs []Message) string {
	if len(msgs) == 1 {
		return msgs[0].ID
	}
	h := sha256.New()
	for _, m := range msgs {
		h.Write([]byte(m.ID))
		h.Write([]byte{0})
	}
	return "bat_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// deliveryID is a message's id for a destination, derived from where it
// came from so that a message sent again after a crash keeps it.
func deliveryID(destination string, stream byte, seq int64) string {
	return "dlv_" + destination + "_" + string(stream) + strconv.FormatInt(seq, 10)
}

// events reads the next log events the indexer has applied and decides
// each: filtered, or a message for its profile.
func (w *worker) events(ctx context.Context) (read, error) {
	from := w.progress.LogSeq
	cursor := w.e.cfg.Cursor()
	if cursor <= from {
		return read{upTo: from}, nil
	}
	if w.d.Events == nil {
		// Not subscribed to events: skip ahead, so that subscribing later
		// starts from then rather than replaying the log.
		return read{upTo: cursor}, nil
	}
	return w.readLog(ctx, from, cursor, "")
}

// replayed reads the next events of a replay of the log (p.Replaying):
// as events does, up to the replay's end, with delivery ids of the
// replay's own, so that a receiver that deduplicates takes them again.
// A destination subscribed to no events has nothing to replay.
func (w *worker) replayed(ctx context.Context, p kith.DestinationProgress) (read, error) {
	if w.d.Events == nil {
		return read{upTo: p.ReplayTo}, nil // nothing it would be sent
	}
	to := min(p.ReplayTo, w.e.cfg.Cursor())
	if to <= p.ReplayAt {
		// The indexer has not applied that far (or not yet loaded its
		// cursor, just after a start): the replay waits.
		return read{upTo: p.ReplayAt}, nil
	}
	return w.readLog(ctx, p.ReplayAt, to, "_r"+strconv.FormatInt(p.ReplayID, 10))
}

// readLog reads the log events after from up to to (the indexer's cursor
// at most) and decides each; their delivery ids end in suffix.
func (w *worker) readLog(ctx context.Context, from, cursor int64, suffix string) (read, error) {
	limit := w.e.cfg.BatchSize
	msgs, err := w.e.pages.read(ctx, w.e.store.ReadLog, from, limit)
	if err != nil {
		return read{}, fmt.Errorf("destination %s: reading the log after %d: %w", w.d.Name, from, err)
	}
	rd := read{upTo: cursor, full: len(msgs) == limit}
	if rd.full {
		rd.upTo = min(cursor, msgs[len(msgs)-1].Seq)
	}
	var selected []kith.Message
	for _, m := range msgs {
		if m.Seq > cursor {
			rd.full = false
			break
		}
		it := item{seq: m.Seq}
		if selects(w.d.Events, m) {
			selected = append(selected, m)
		} else {
			it.reason = FilteredSubscription
		}
		rd.items = append(rd.items, it)
	}
	owners, err := w.e.owners.attribute(ctx, func(ctx context.Context, ms []kith.Message) ([]string, error) {
		return w.e.attr.Owners(ctx, w.e.store, ms)
	}, selected)
	if err != nil {
		return read{}, fmt.Errorf("destination %s: attributing events: %w", w.d.Name, err)
	}
	allowed := w.consent()
	k := 0
	for i := range rd.items {
		it := &rd.items[i]
		if it.reason != "" {
			continue
		}
		m, owner := selected[k], owners[k]
		k++
		ok, err := allowed(ctx, owner)
		if err != nil {
			return read{}, err
		}
		if !ok {
			it.reason = FilteredConsent
			continue
		}
		key := owner
		if key == "" {
			// Nobody to keep in order with: its own key.
			key = unattributed + strconv.FormatInt(m.Seq, 10)
		}
		body, err := w.mapped(ctx, m.Raw, owner)
		if err != nil {
			return read{}, fmt.Errorf("destination %s: event %d: %w", w.d.Name, m.Seq, err)
		}
		it.d = &kith.Delivery{ID: deliveryID(w.d.ID, 'e', m.Seq) + suffix, Destination: w.d.ID, Key: key, Kind: kindEvent, Body: body}
	}
	return rd, nil
}

// mapped returns a message reshaped by the destination's mapping (as it
// is without one); profile is whom it is about ("" for no one), whose
// traits the mapping may read, once per step.
func (w *worker) mapped(ctx context.Context, body []byte, profile string) ([]byte, error) {
	if w.mapper == nil {
		return body, nil
	}
	var traits map[string]json.RawMessage
	if w.mapper.needsTraits() && profile != "" {
		var ok bool
		if traits, ok = w.traits[profile]; !ok {
			// The profile may have been merged since the event was
			// applied to it: the unified profile's traits.
			canonical, err := w.e.store.Canonical(ctx, profile)
			var ts []kith.Trait
			if err == nil {
				ts, err = w.e.store.Traits(ctx, canonical)
			}
			if err != nil && kith.ErrorCode(err) != kith.ENOTFOUND {
				return nil, fmt.Errorf("reading the traits of %s: %w", profile, err)
			}
			traits = make(map[string]json.RawMessage, len(ts))
			for _, t := range ts {
				traits[t.Key] = t.Value
			}
			if w.traits == nil {
				w.traits = map[string]map[string]json.RawMessage{}
			}
			w.traits[profile] = traits
		}
	}
	return w.mapper.apply(body, traits)
}

// consent returns the destination's consent check for one step: a
// profile passes when it has granted every category the destination
// lists, by the one check every output makes (privacy.Allowed). Each
// profile's consent is read once per step. A message attributed to no
// profile has granted nothing.
func (w *worker) consent() func(ctx context.Context, profile string) (bool, error) {
	cats := w.d.Consent
	cache := map[string]bool{}
	return func(ctx context.Context, profile string) (bool, error) {
		if len(cats) == 0 {
			return true, nil
		}
		if profile == "" {
			return false, nil
		}
		if ok, seen := cache[profile]; seen {
			return ok, nil
		}
		ok, err := privacy.Allows(ctx, w.e.store, profile, cats...)
		if err != nil {
			return false, fmt.Errorf("destination %s: reading the consent of %s: %w", w.d.Name, profile, err)
		}
		cache[profile] = ok
		return ok, nil
	}
}

// selects reports whether an event filter selects m: each list that is
// not empty must contain m's call type, event name, source id.
func selects(f *kith.EventFilter, m kith.Message) bool {
	return f != nil &&
		(len(f.Types) == 0 || slices.Contains(f.Types, m.Type)) &&
		(len(f.Events) == 0 || slices.Contains(f.Events, m.Event)) &&
		(len(f.Sources) == 0 || slices.Contains(f.Sources, m.SourceID))
}

// record keeps an attempt among the recent ones.
func (w *worker) record(a Attempt) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.attempts) == recentAttempts {
		copy(w.attempts, w.attempts[1:])
		w.attempts = w.attempts[:recentAttempts-1]
	}
	w.attempts = append(w.attempts, a)
}

// publish makes the worker goroutine's state visible to State.
func (w *worker) publish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.snap.progress = w.progress
	w.snap.pending = w.pending
	w.snap.waiting = w.waiting()
	w.snap.nextRetry = time.Time{}
	if w.due.Len() > 0 {
		w.snap.nextRetry = w.due[0].at
	}
}

// sleep waits d unless ctx ends first (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dueKey is a key whose first delivery is due at at.
type dueKey struct {
	at  time.Time
	key string
}

// dueHeap orders keys by when their first delivery is due. Entries go
// stale when a key's first delivery changes; they are skipped when
// popped.
type dueHeap []dueKey

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueKey)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
