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
	ids  []string // nil: every dead letter
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
	w.mu.Lock()
	w.replays = append(w.replays, rq)
	w.mu.Unlock()
	w.notify()
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
// retrying deliveries in this step, and returns the requests, to be
// answered once the step is recorded.
func (w *worker) takeReplays(ctx context.Context, st *step, now time.Time) ([]*replay, error) {
	w.mu.Lock()
	rqs := w.replays
	w.replays = nil
	w.mu.Unlock()
	for _, rq := range rqs {
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

// answer ends replay requests with err (nil: done).
func answer(rqs []*replay, err error) {
	for _, rq := range rqs {
		if err != nil {
			rq.n, rq.err = 0, err
		}
		close(rq.done)
	}
}
