package activation_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// stallingStore is a real store whose AdvanceDestination stalls from its
// stallAt-th call on until the worker is stopped, recording nothing: the
// messages of that step were sent, and the process dies before it
// records them, as under kill -9.
type stallingStore struct {
	activation.Store
	stallAt int

	mu      sync.Mutex
	calls   int
	stalled chan struct{}
}

func (s *stallingStore) AdvanceDestination(ctx context.Context, id string, u kith.DestinationUpdate) error {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.mu.Unlock()
	if n >= s.stallAt {
		if n == s.stallAt {
			close(s.stalled)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.AdvanceDestination(ctx, id, u)
}

// A restart re-sends nothing that was recorded, and re-sends what was
// sent but not recorded with the same delivery ids: at least once, with
// ids a receiver deduplicates by.
func TestRestartResendsOnlyUnrecorded(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.addViews(25, 5)
	d := r.hook("hook", rc.URL)

	st := &stallingStore{Store: r.store, stallAt: 2, stalled: make(chan struct{})}
	e := r.engine(activation.Config{Store: st, BatchSize: 10})
	<-st.stalled // events 1–10 recorded, 11–20 sent and not recorded
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.requests()); n != 20 {
		t.Fatalf("%d requests before the crash, want 20", n)
	}
	r.reopen()
	if p, err := r.store.DestinationProgress(context.Background(), d.ID); err != nil || p.LogSeq != 10 {
		t.Fatalf("stored progress %+v %v, want log 10", p, err)
	}

	r.engine(activation.Config{BatchSize: 10})
	r.waitDelivered(d, 25)
	times := map[int64]int{}
	var order []int64
	for _, m := range messages(t, rc) {
		seq := seqOf(t, m.ID)
		times[seq]++
		order = append(order, seq)
		if want := fmt.Sprintf("u%d-%d", (seq-1)%5, seq-1); m.MessageID != want {
			t.Errorf("%s carries %s, want %s", m.ID, m.MessageID, want)
		}
	}
	for seq := int64(1); seq <= 25; seq++ {
		want := 1
		if seq > 10 && seq <= 20 {
			want = 2 // sent, not recorded: sent again after the restart
		}
		if times[seq] != want {
			t.Errorf("event %d sent %d times, want %d", seq, times[seq], want)
		}
	}
	if !slices.IsSorted(order[20:]) || order[20] != 11 {
		t.Errorf("after the restart: %v, want 11 … 25 in order", order[20:])
	}
}

// Retries are kept in the store: after a restart the waiting deliveries
// are loaded again, retried with their ids and sent in order, and the
// events already delivered are not sent again.
func TestRestartRetriesStoredDeliveries(t *testing.T) {
	r := newRig(t)
	rc, heal := failingFor(t, "bad", http.StatusBadGateway)
	r.add(track("bad", "A", 1), track("ok", "A", 2), track("bad", "B", 3), track("ok", "B", 4), track("bad", "C", 5))
	d := r.hook("hook", rc.URL)
	e := r.engine(activation.Config{})
	waitFor(t, func() string { return fmt.Sprintf("counts %+v", r.counts(d)) }, func() bool {
		c := r.counts(d)
		return c.Delivered == 2 && c.Retrying == 3
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	r.reopen()
	pending, err := r.store.PendingDeliveries(context.Background(), d.ID)
	if err != nil || len(pending) != 3 || pending[0].Attempts == 0 || pending[1].Attempts != 0 {
		t.Fatalf("stored deliveries %+v %v: bad's first failed, the other two wait behind it", pending, err)
	}
	before := len(rc.requests())

	heal()
	r.engine(activation.Config{})
	r.waitDelivered(d, 5)
	var after []string
	for _, m := range messages(t, rc)[before:] {
		after = append(after, m.ID)
	}
	want := []string{"dlv_" + d.ID + "_e1", "dlv_" + d.ID + "_e3", "dlv_" + d.ID + "_e5"}
	if !slices.Equal(after, want) {
		t.Errorf("after the restart %v, want %v", after, want)
	}
	if c := r.counts(d); c.Retrying != 0 {
		t.Errorf("counts %+v", c)
	}
}
