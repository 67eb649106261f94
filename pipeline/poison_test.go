package pipeline_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/pipeline"
)

// refusingStore is a real store that refuses, as PostgreSQL refuses a
// value it cannot hold, every index batch holding the timeline entry of
// one event.
type refusingStore struct {
	kith.Store
	seq     int64
	refused int
}

func (s *refusingStore) ApplyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error {
	for _, e := range b.Timeline {
		if e.Seq == s.seq {
			s.refused++
			return fmt.Errorf("apply: %w", kith.Errorf(kith.EINVALID, "the database refused a value"))
		}
	}
	return s.Store.ApplyIndexBatch(ctx, from, b)
}

// One event whose derived rows the store refuses is found by narrowing
// the batches and set aside; every other event is applied, the indexer
// says so in its health, and it does not retry the same batch forever.
func TestIndexerSetsAsidePoisonedEvent(t *testing.T) {
	store := identifiedStore(t, 300)
	rs := &refusingStore{Store: store, seq: 137}
	ix := runIndexer(t, rs, func(ix *pipeline.Indexer) bool { return ix.Cursor() >= 300 }, 20*time.Second)
	if ix.Cursor() != 300 {
		t.Fatalf("cursor %d, want 300: the indexer did not get past the poisoned event", ix.Cursor())
	}
	// 100 events, then 50, 25, 13, 7, 4, 2, 1: 8 refusals at most.
	if rs.refused < 2 || rs.refused > 8 {
		t.Errorf("the store refused %d batches; narrowing 100 events down to one takes 2 to 8", rs.refused)
	}
	h := ix.Health()
	if h.Skipped != 1 || h.Failing != 0 || h.Failures != int64(rs.refused) {
		t.Errorf("health %+v, want 1 skipped, not failing, %d failures", h, rs.refused)
	}
	for _, i := range []int{0, 135, 137, 299} {
		p := profileOf(t, store, fmt.Sprintf("user_id:u%d", i))
		if (p == "") != (i == 136) { // seq 137 is the 137th event, u136
			t.Errorf("u%d: profile %q", i, p)
		}
	}
	st, err := store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st["src"].Processed != 300 {
		t.Errorf("processed %d, want 300 (the event set aside is processed)", st["src"].Processed)
	}
}

// cursorRefusingStore refuses every batch that reaches one event, whatever
// it derives: setting the event aside does not help. It records when it
// refused.
type cursorRefusingStore struct {
	kith.Store
	seq int64
	mu  sync.Mutex
	at  []time.Time
}

func (s *cursorRefusingStore) ApplyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error {
	if from < s.seq && b.Cursor >= s.seq {
		s.mu.Lock()
		s.at = append(s.at, time.Now())
		s.mu.Unlock()
		return kith.Errorf(kith.EINVALID, "the database refused a value")
	}
	return s.Store.ApplyIndexBatch(ctx, from, b)
}

// refusals returns how many batches were refused, and how many of them
// came at least gap after the one before.
func (s *cursorRefusingStore) refusals(gap time.Duration) (n, spaced int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.at); i++ {
		if s.at[i].Sub(s.at[i-1]) >= gap {
			spaced++
		}
	}
	return len(s.at), spaced
}

// When setting the event aside does not clear the refusal, the indexer
// backs off and reports itself failing instead of retrying in a tight
// loop. The test waits for three refusals that came after a pause of at
// least the first backoff (100 ms), then counts how many came before: a
// tight loop refuses thousands of batches in that time.
func TestIndexerBacksOffWhenSettingAsideDoesNotHelp(t *testing.T) {
	rs := &cursorRefusingStore{Store: identifiedStore(t, 50), seq: 20}
	const backoff = 100 * time.Millisecond
	ix := runIndexer(t, rs, func(*pipeline.Indexer) bool {
		_, spaced := rs.refusals(backoff)
		return spaced >= 3
	}, 30*time.Second)
	if ix.Cursor() != 19 {
		t.Errorf("cursor %d, want 19 (stuck before the refused event)", ix.Cursor())
	}
	// Narrowing 50 events down to one takes 6 refusals; setting the event
	// aside and narrowing 31 again takes 6 more; then one per backoff.
	n, spaced := rs.refusals(backoff)
	if spaced < 3 {
		t.Fatalf("%d refusals, %d after a pause: the indexer never backed off", n, spaced)
	}
	if n > 12+spaced+1 {
		t.Errorf("%d refusals before the third backoff, want at most %d: the indexer retries without backing off", n, 12+spaced+1)
	}
	if h := ix.Health(); !h.Stuck() || h.Skipped != 1 {
		t.Errorf("health %+v, want stuck with the one event set aside", h)
	}
}

// identifiedStore is a store whose log holds n identify events, of users
// u0 … u(n-1) with a trait n each.
func identifiedStore(t *testing.T, n int) kith.Store {
	t.Helper()
	store := openStore(t)
	var bodies []string
	for i := range n {
		bodies = append(bodies, fmt.Sprintf(`{"type":"identify","userId":"u%d","traits":{"n":%d}}`, i, i))
	}
	appendAll(t, store, "src", batch(bodies...))
	return store
}

// runIndexer runs an indexer over store in batches of 100 until done says
// so or the time is up, and returns it stopped.
func runIndexer(t *testing.T, store kith.Store, done func(*pipeline.Indexer) bool, within time.Duration) *pipeline.Indexer {
	t.Helper()
	secret, err := store.Secret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 100})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { ix.Run(ctx); close(stopped) }()
	for deadline := time.Now().Add(within); !done(ix) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-stopped
	return ix
}
