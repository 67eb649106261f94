package activation

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kithcdp/kith"
)

// replay is a request to send dead letters again, handled by the
// destination's worker in its next step so that its memory of what waits
// stays the store's.
type replay struct {
	ids []string // nil: every dead letter
	// span, when set, is a stretch of the log to send again instead
	// (ReplayAt, ReplayTo, ReplayID).
	span *kith.DestinationProgress
	n    int
	err  error
	done chan struct{}
}

// Replay sends a destination's dead letters again: those with the given
// ids, or all of them when ids is empty. Each goes back among the
// retrying deliveries, due at once, in its profile's order; it keeps its
// id and its first attempt's time, so one that fails again after the
// maximum age is dead-lettered again at once. It returns how many it put
// back. A paused destination's dead letters wait for its resumption.
func (e *Engine) Replay(ctx context.Context, id string, ids []string) (int, error) {
	e.mu.Lock()
	w := e.workers[id]
	if w == nil {
		// No worker to disturb: put them back in the store directly,
		// under the lock, so that none starts meanwhile.
		defer e.mu.Unlock()
		return e.replayStored(ctx, id, ids)
	}
	e.mu.Unlock()
	rq := &replay{ids: ids, done: make(chan struct{})}
	w.ask(rq)
	select {
	case <-rq.done:
		return rq.n, rq.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-w.done:
		return 0, fmt.Errorf("activation: destination %s: its worker stopped", w.d.Name)
	}
}

// replayStored replays the dead letters of a destination no worker runs
// for, as one step that moves no stream.
func (e *Engine) replayStored(ctx context.Context, id string, ids []string) (int, error) {
	p, err := e.store.DestinationProgress(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("activation: destination %s: %w", id, err)
	}
	ds, err := deadLetters(ctx, e.store, id, ids)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	now := e.now()
	for i := range ds {
		revive(&ds[i], now)
	}
	if err := e.store.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: p, Put: ds}); err != nil {
		return 0, fmt.Errorf("activation: destination %s: replaying: %w", id, err)
	}
	return len(ds), nil
}

// deadLetters reads a destination's dead letters, those with the given
// ids or all.
func deadLetters(ctx context.Context, st Store, id string, ids []string) ([]kith.Delivery, error) {
	want := make(map[string]bool, len(ids))
	for _, x := range ids {
		want[x] = true
	}
	var out []kith.Delivery
	for after := ""; ; {
		page, err := st.Deliveries(ctx, id, true, after, 500)
		if err != nil {
			return nil, fmt.Errorf("activation: destination %s: reading its dead letters: %w", id, err)
		}
		for _, d := range page {
			if len(ids) == 0 || want[d.ID] {
				out = append(out, d)
			}
		}
		if len(page) < 500 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// revive makes a dead letter a delivery due at now.
func revive(d *kith.Delivery, now time.Time) {
	d.Dead = false
	d.NextAt = now
}

// takeReplays puts the requested dead letters back among the worker's
// retrying deliveries in this step, and starts a requested replay of the
// log; it returns the requests, to be answered once the step is
// recorded.
func (w *worker) takeReplays(ctx context.Context, st *step, now time.Time) ([]*replay, error) {
	w.mu.Lock()
	rqs := w.replays
	w.replays = nil
	w.mu.Unlock()
	for _, rq := range rqs {
		if rq.span != nil {
			rq.err = startSpan(&st.u.Progress, *rq.span)
			continue
		}
		ds, err := deadLetters(ctx, w.e.store, w.d.ID, rq.ids)
		if err != nil {
			answer(rqs, err)
			return nil, err
		}
		for i := range ds {
			d := &ds[i]
			if _, taken := st.put[d.ID]; taken {
				continue // in an earlier request of this step
			}
			revive(d, now)
			st.putDelivery(*d)
			w.insert(d)
			rq.n++
		}
	}
	return rqs, nil
}

// insert puts a delivery into its key's queue in log order; it is due at
// its NextAt if it comes first.
func (w *worker) insert(d *kith.Delivery) {
	q := w.queues[d.Key]
	i, _ := slices.BinarySearchFunc(q, d.Seq, func(x *kith.Delivery, seq int64) int { return cmp.Compare(x.Seq, seq) })
	w.queues[d.Key] = slices.Insert(q, i, d)
	w.pending++
	if i == 0 {
		heap.Push(&w.due, dueKey{at: d.NextAt, key: d.Key})
	}
}

// answer ends replay requests with err (nil: done, or each request's
// own refusal).
func answer(rqs []*replay, err error) {
	for _, rq := range rqs {
		if err != nil {
			rq.n, rq.err = 0, err
		}
		close(rq.done)
	}
}

// startSpan starts a replay of the log in a destination's progress,
// unless one is running (ECONFLICT: one at a time, so that neither is
// lost).
func startSpan(p *kith.DestinationProgress, span kith.DestinationProgress) error {
	if p.Replaying() {
		return kith.Errorf(kith.ECONFLICT, "a replay of the log is running (at position %d of %d); wait for it to end", p.ReplayAt, p.ReplayTo)
	}
	p.ReplayAt, p.ReplayTo, p.ReplayID = span.ReplayAt, span.ReplayTo, span.ReplayID
	return nil
}

// Span is a stretch of the log a replay sends again: the events that
// arrived in [From, To), which are those with After < Seq ≤ Through.
type Span struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	After   int64     `json:"after"`
	Through int64     `json:"through"`
}

// ReplayLog sends again the events that arrived from from until to
// (not included) and that the destination selects, as its worker sends
// new ones (consent, filters and mapping as they are now), with delivery
// ids of this replay's own, so that a receiver deduplicating by id takes
// them; beside the new events, so a profile's replayed events may reach
// the receiver after its newer ones. Only events the indexer has applied
// are replayed. One replay runs at a time per destination (ECONFLICT
// while one does). A paused destination's replay waits for its
// resumption.
func (e *Engine) ReplayLog(ctx context.Context, id string, from, to time.Time) (Span, error) {
	if !from.Before(to) {
		return Span{}, kith.Errorf(kith.EINVALID, "to: must be after from")
	}
	if e.cfg.Cursor() == 0 {
		// Just after a start the indexer has not loaded its position:
		// the log would look empty.
		if head, err := e.store.LogHead(ctx); err != nil {
			return Span{}, fmt.Errorf("activation: reading the log head: %w", err)
		} else if head > 0 {
			return Span{}, kith.Errorf(kith.EUNAVAILABLE, "the indexer is starting; replay again in a moment")
		}
	}
	sp := Span{From: from.UTC(), To: to.UTC()}
	var err error
	if sp.After, err = e.seqBefore(ctx, from); err != nil {
		return Span{}, err
	}
	if sp.Through, err = e.seqBefore(ctx, to); err != nil {
		return Span{}, err
	}
	if sp.Through <= sp.After {
		return sp, nil // nothing arrived then
	}
	span := &kith.DestinationProgress{ReplayAt: sp.After, ReplayTo: sp.Through, ReplayID: e.now().UnixMilli()}
	e.mu.Lock()
	w := e.workers[id]
	if w == nil {
		defer e.mu.Unlock()
		p, err := e.store.DestinationProgress(ctx, id)
		if err != nil {
			return Span{}, fmt.Errorf("activation: destination %s: %w", id, err)
		}
		if err := startSpan(&p, *span); err != nil {
			return Span{}, err
		}
		if err := e.store.AdvanceDestination(ctx, id, kith.DestinationUpdate{Progress: p}); err != nil {
			return Span{}, fmt.Errorf("activation: destination %s: starting a replay: %w", id, err)
		}
		return sp, nil
	}
	e.mu.Unlock()
	rq := &replay{span: span, done: make(chan struct{})}
	w.ask(rq)
	select {
	case <-rq.done:
		return sp, rq.err
	case <-ctx.Done():
		return Span{}, ctx.Err()
	case <-w.done:
		return Span{}, fmt.Errorf("activation: destination %s: its worker stopped", w.d.Name)
	}
}

// seqBefore returns the log position of the last event the indexer has
// applied that arrived before t (0 when none did), by a binary search
// over the log: positions follow arrival, as the log is appended in the
// order events are acknowledged.
func (e *Engine) seqBefore(ctx context.Context, t time.Time) (int64, error) {
	var found int64
	lo, hi := int64(0), e.cfg.Cursor()-1 // "after" values: the event read is the first with Seq > after
	for lo <= hi {
		mid := lo + (hi-lo)/2
		ms, err := e.store.ReadLog(ctx, mid, 1)
		if err != nil {
			return 0, fmt.Errorf("activation: reading the log after %d: %w", mid, err)
		}
		if len(ms) == 1 && ms[0].Seq <= e.cfg.Cursor() && ms[0].ReceivedAt.Before(t) {
			found, lo = ms[0].Seq, mid+1
		} else {
			hi = mid - 1
		}
	}
	return found, nil
}
