package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

// testEmptyStore checks the state of a fresh store.
func testEmptyStore(t *testing.T, s kith.Store) {
	ctx := t.Context()
	head, err := s.LogHead(ctx)
	noErr(t, err, "LogHead")
	if head != 0 {
		t.Errorf("LogHead of an empty log = %d, want 0", head)
	}
	msgs, err := s.ReadLog(ctx, 0, 10)
	noErr(t, err, "ReadLog")
	if len(msgs) != 0 {
		t.Errorf("ReadLog of an empty log returned %d events", len(msgs))
	}
	msgs, err = s.EventsBySeq(ctx, []int64{1, 2, 3})
	noErr(t, err, "EventsBySeq")
	if len(msgs) != 0 {
		t.Errorf("EventsBySeq on an empty log returned %d events", len(msgs))
	}
	cur, err := s.IndexCursor(ctx)
	noErr(t, err, "IndexCursor")
	if cur != 0 {
		t.Errorf("IndexCursor of a fresh store = %d, want 0", cur)
	}
	// An empty batch is a valid group commit (nothing arrived).
	mustAppend(t, s, kith.AppendBatch{})
	counts := mustCounts(t, s)
	for src, c := range counts {
		if normCounts(c).Received != 0 || c.Processed != 0 {
			t.Errorf("fresh store has counts for %q: %+v", src, c)
		}
	}
}

// testAppendRoundTrip checks that every field of a message survives the
// log: times at microsecond precision returned in UTC, revenue absent versus
// present (including zero), and Raw as the same JSON value.
func testAppendRoundTrip(t *testing.T, s kith.Store) {
	cet := time.FixedZone("CET", 3600)
	rev := 1234.5
	zero := 0.0
	neg := -17.25

	plain := message("src-a", "m-1", base)

	withRevenue := message("src-a", "m-2", time.Date(2025, 3, 1, 13, 0, 0, 999999000, cet))
	withRevenue.Type = "track"
	withRevenue.Event = "Order Completed"
	withRevenue.Revenue = &rev
	withRevenue.Raw = rawOf(withRevenue, map[string]any{
		"revenue": rev, "currency": "EUR", "order_id": "o-1",
		"products": []any{map[string]any{"sku": "A-1", "price": 1234.5, "quantity": 1}},
	})

	page := message("src-b", "m-1", at(-60*24*400)) // over a year old
	page.Type = "page"
	page.Event = "Home"
	page.UserID = ""
	page.Raw = rawOf(page, map[string]any{"title": "Grüße, 世界 \"quoted\" \\ backslash"})

	identify := message("src-b", "m-2", at(3))
	identify.Type = "identify"
	identify.Event = ""
	identify.AnonymousID = ""
	identify.Revenue = &zero
	identify.Raw = []byte(`{"type":"identify","messageId":"m-2","traits":{"email":"a@example.com","n":[1,2.5,null,true]}}`)

	refund := message("src-b", "m-3", at(4))
	refund.Revenue = &neg
	refund.ReceivedAt = time.Date(2025, 3, 1, 12, 4, 0, 1000, time.UTC) // one microsecond past the second

	want := []kith.Message{plain, withRevenue, page, identify, refund}
	res := mustAppend(t, s, kith.AppendBatch{Events: want})
	for i, d := range res.Duplicate {
		if d {
			t.Errorf("Duplicate[%d] = true for a unique messageId", i)
		}
	}
	got := readAll(t, s)
	checkMessages(t, got, want)

	head, err := s.LogHead(t.Context())
	noErr(t, err, "LogHead")
	if len(got) > 0 && head != got[len(got)-1].Seq {
		t.Errorf("LogHead = %d, want the last Seq %d", head, got[len(got)-1].Seq)
	}
}

// testAppendSeqAcrossBatches checks that Seq keeps increasing over batches
// and that the log keeps append order.
func testAppendSeqAcrossBatches(t *testing.T, s kith.Store) {
	var want []kith.Message
	var heads []int64
	for b := range 4 {
		var batch []kith.Message
		for i := range b + 1 { // batch sizes 1, 2, 3, 4
			// Timestamps deliberately out of order: the log is in append
			// order, not event-time order.
			batch = append(batch, message("src", fmt.Sprintf("b%d-%d", b, i), at(100-10*b-i)))
		}
		mustAppend(t, s, kith.AppendBatch{Events: batch})
		want = append(want, batch...)
		head, err := s.LogHead(t.Context())
		noErr(t, err, "LogHead")
		heads = append(heads, head)
	}
	got := readAll(t, s)
	checkMessages(t, got, want)
	for i := 1; i < len(heads); i++ {
		if heads[i] <= heads[i-1] {
			t.Errorf("LogHead after batch %d = %d, not above %d", i, heads[i], heads[i-1])
		}
	}
	if len(got) == len(want) && heads[len(heads)-1] != got[len(got)-1].Seq {
		t.Errorf("LogHead = %d, want last Seq %d", heads[len(heads)-1], got[len(got)-1].Seq)
	}
}

// testAppendDedup checks deduplication by (SourceID, MessageID) within a
// batch, across batches, and not across sources, and the counters it feeds.
func testAppendDedup(t *testing.T, s kith.Store) {
	first := message("s1", "m1", at(0))
	first.Event = "first copy"
	first.Raw = rawOf(first, nil)
	second := message("s1", "m1", at(1))
	second.Event = "second copy"
	second.Raw = rawOf(second, nil)

	batches := []struct {
		events []kith.Message
		dup    []bool
	}{
		{
			events: []kith.Message{first, message("s1", "m2", at(0)), second, message("s2", "m1", at(0))},
			dup:    []bool{false, false, true, false},
		},
		{
			events: []kith.Message{message("s1", "m2", at(2)), message("s1", "m3", at(2)), message("s2", "m1", at(2)), message("s2", "m2", at(2)), message("s2", "m2", at(3))},
			dup:    []bool{true, false, true, false, true},
		},
		{
			// A batch of only duplicates stores nothing.
			events: []kith.Message{message("s1", "m1", at(4)), message("s2", "m2", at(4))},
			dup:    []bool{true, true},
		},
	}
	var want []kith.Message
	for bi, b := range batches {
		res := mustAppend(t, s, kith.AppendBatch{Events: b.events})
		for i := range b.dup {
			if res.Duplicate[i] != b.dup[i] {
				t.Errorf("batch %d: Duplicate[%d] (%s/%s) = %v, want %v", bi, i, b.events[i].SourceID, b.events[i].MessageID, res.Duplicate[i], b.dup[i])
			}
			if !b.dup[i] {
				want = append(want, b.events[i])
			}
		}
	}
	checkMessages(t, readAll(t, s), want)
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 6, Accepted: 3, Duplicate: 3},
		"s2": {Received: 5, Accepted: 2, Duplicate: 3},
	})
}

// testAppendRejected checks that rejections are counted by source and
// reason, together with events or alone, and for sources without events.
func testAppendRejected(t *testing.T, s kith.Store) {
	mustAppend(t, s, kith.AppendBatch{
		Events: []kith.Message{message("s1", "a", at(0)), message("s1", "b", at(0))},
		Rejected: map[string]map[string]int64{
			"s1": {kith.ReasonMissingEvent: 2},
			"s3": {kith.ReasonInvalidJSON: 1, kith.ReasonMissingType: 4},
		},
	})
	mustAppend(t, s, kith.AppendBatch{
		Rejected: map[string]map[string]int64{
			"s1": {kith.ReasonMissingEvent: 1, kith.ReasonEventTooLarge: 3},
		},
	})
	mustAppend(t, s, kith.AppendBatch{
		Events: []kith.Message{message("s1", "a", at(1)), message("s2", "a", at(1))},
		Rejected: map[string]map[string]int64{
			"s2": {kith.ReasonMessageIDTooLong: 1},
		},
	})
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 9, Accepted: 2, Duplicate: 1, Rejected: map[string]int64{kith.ReasonMissingEvent: 3, kith.ReasonEventTooLarge: 3}},
		"s2": {Received: 2, Accepted: 1, Rejected: map[string]int64{kith.ReasonMessageIDTooLong: 1}},
		"s3": {Received: 5, Rejected: map[string]int64{kith.ReasonInvalidJSON: 1, kith.ReasonMissingType: 4}},
	})
	if n := len(readAll(t, s)); n != 3 {
		t.Errorf("log holds %d events, want 3", n)
	}
}

// testAppendSuppressed checks that events dropped for a suppressed person
// are received and counted as suppressed, not as a rejection, with events
// or alone.
func testAppendSuppressed(t *testing.T, s kith.Store) {
	mustAppend(t, s, kith.AppendBatch{
		Events:     []kith.Message{message("s1", "a", at(0))},
		Rejected:   map[string]map[string]int64{"s1": {kith.ReasonMissingEvent: 1}},
		Suppressed: map[string]int64{"s1": 2},
	})
	mustAppend(t, s, kith.AppendBatch{Suppressed: map[string]int64{"s1": 1, "s2": 4}})
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 5, Accepted: 1, Suppressed: 3, Rejected: map[string]int64{kith.ReasonMissingEvent: 1}},
		"s2": {Received: 4, Suppressed: 4},
	})
	if n := len(readAll(t, s)); n != 1 {
		t.Errorf("log holds %d events, want 1", n)
	}
}

// testAppendConcurrent runs several appenders at once, with messageIds that
// race against each other, while a reader follows the log the way the
// indexer does (ReadLog after its cursor). Every unique event must be stored
// exactly once, and the follower must not skip any: an event may not become
// visible below a Seq the follower has already passed.
func testAppendConcurrent(t *testing.T, s kith.Store) {
	const (
		writers   = 6
		batches   = 12
		perBatch  = 15
		sharedIDs = batches // one racing messageId per batch round
	)
	ctx := t.Context()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted = map[string]int{}
		errs     []error
	)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var events []kith.Message
				for i := range perBatch {
					events = append(events, message("src", fmt.Sprintf("w%d-b%d-%d", w, b, i), at(i)))
				}
				events = append(events, message("src", fmt.Sprintf("shared-%d", b), at(b)))
				res, err := s.Append(ctx, kith.AppendBatch{Events: events})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if len(res.Duplicate) != len(events) {
					errs = append(errs, fmt.Errorf("len(Duplicate) = %d, want %d", len(res.Duplicate), len(events)))
				} else {
					for i, e := range events {
						if !res.Duplicate[i] {
							accepted[e.MessageID]++
						}
					}
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}

	// The follower.
	followed := map[int64]string{}
	var followErr error
	stop := make(chan struct{})
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		cursor := int64(0)
		for {
			// Sample stop before reading: only a read that started after
			// every Append returned is guaranteed to see all events.
			stopped := false
			select {
			case <-stop:
				stopped = true
			default:
			}
			page, err := s.ReadLog(ctx, cursor, 50)
			if err != nil {
				followErr = err
				return
			}
			for _, m := range page {
				followed[m.Seq] = m.MessageID
				cursor = m.Seq
			}
			if len(page) == 0 {
				if stopped {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	wg.Wait()
	// The follower drains what is left and stops at the first empty page
	// read after this point.
	close(stop)
	<-followDone
	if len(errs) > 0 {
		t.Fatalf("concurrent Append failed: %v", errs[0])
	}
	if followErr != nil {
		t.Fatalf("ReadLog while appending: %v", followErr)
	}

	for id, n := range accepted {
		if n != 1 {
			t.Errorf("messageId %q accepted %d times", id, n)
		}
	}
	wantUnique := writers*batches*perBatch + sharedIDs
	if len(accepted) != wantUnique {
		t.Errorf("%d distinct messageIds accepted, want %d", len(accepted), wantUnique)
	}
	log := readAll(t, s)
	if len(log) != wantUnique {
		t.Errorf("log holds %d events, want %d", len(log), wantUnique)
	}
	seen := map[string]bool{}
	var skipped []int64
	for i, m := range log {
		if seen[m.MessageID] {
			t.Errorf("messageId %q stored twice", m.MessageID)
		}
		seen[m.MessageID] = true
		if i > 0 && m.Seq <= log[i-1].Seq {
			t.Errorf("Seq %d follows %d", m.Seq, log[i-1].Seq)
		}
		if followed[m.Seq] != m.MessageID {
			skipped = append(skipped, m.Seq)
		}
	}
	if len(skipped) > 0 {
		t.Errorf("a follower reading after its cursor skipped %d events (Seqs %v...): events became visible below a Seq already read, so Seq order is not commit order",
			len(skipped), skipped[:min(len(skipped), 5)])
	}
	total := int64(writers * batches * (perBatch + 1))
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"src": {Received: total, Accepted: int64(wantUnique), Duplicate: total - int64(wantUnique)},
	})
}

// testAppendCanceledContext checks that an Append with a cancelled context
// is all or nothing: either it fails and stores nothing, or it succeeds and
// stores everything.
func testAppendCanceledContext(t *testing.T, s kith.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := kith.AppendBatch{
		Events:   []kith.Message{message("s1", "a", at(0)), message("s1", "b", at(0))},
		Rejected: map[string]map[string]int64{"s1": {kith.ReasonMissingType: 1}},
	}
	_, err := s.Append(ctx, b)
	log := readAll(t, s)
	counts := mustCounts(t, s)
	if err != nil {
		if len(log) != 0 {
			t.Errorf("failed Append stored %d events", len(log))
		}
		checkCounts(t, counts, map[string]kith.Counts{"s1": {}})
		return
	}
	checkMessages(t, log, b.Events)
	checkCounts(t, counts, map[string]kith.Counts{
		"s1": {Received: 3, Accepted: 2, Rejected: map[string]int64{kith.ReasonMissingType: 1}},
	})
}

// testReadLogPaging checks the after/limit contract of ReadLog.
func testReadLogPaging(t *testing.T, s kith.Store) {
	var want []kith.Message
	for b := range 3 {
		var batch []kith.Message
		for i := range 9 {
			batch = append(batch, message("src", fmt.Sprintf("%d-%d", b, i), at(b*10+i)))
		}
		mustAppend(t, s, kith.AppendBatch{Events: batch})
		want = append(want, batch...)
	}
	all := readAll(t, s)
	checkMessages(t, all, want)
	if len(all) != len(want) {
		return
	}

	for _, limit := range []int{1, 2, 7, 27, 100} {
		var got []kith.Message
		after := int64(0)
		for {
			page, err := s.ReadLog(t.Context(), after, limit)
			noErr(t, err, "ReadLog")
			if len(page) > limit {
				t.Fatalf("ReadLog(%d, %d) returned %d events", after, limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		if len(got) != len(all) {
			t.Errorf("limit %d: paged through %d events, want %d", limit, len(got), len(all))
			continue
		}
		for i := range got {
			if got[i].Seq != all[i].Seq || got[i].MessageID != all[i].MessageID {
				t.Errorf("limit %d: event %d is %d/%s, want %d/%s", limit, i, got[i].Seq, got[i].MessageID, all[i].Seq, all[i].MessageID)
			}
		}
	}

	// Starting in the middle, and after a Seq that falls in a gap.
	mid := all[12]
	page, err := s.ReadLog(t.Context(), mid.Seq, 3)
	noErr(t, err, "ReadLog")
	checkMessages(t, page, want[13:16])
	page, err = s.ReadLog(t.Context(), all[len(all)-1].Seq, 10)
	noErr(t, err, "ReadLog")
	if len(page) != 0 {
		t.Errorf("ReadLog after the head returned %d events", len(page))
	}
}

// testEventsBySeq checks that EventsBySeq keeps the requested order and
// skips Seqs that do not exist.
func testEventsBySeq(t *testing.T, s kith.Store) {
	var batch []kith.Message
	for i := range 6 {
		batch = append(batch, message("src", fmt.Sprintf("m%d", i), at(i)))
	}
	mustAppend(t, s, kith.AppendBatch{Events: batch})
	all := readAll(t, s)
	if len(all) != 6 {
		t.Fatalf("log holds %d events, want 6", len(all))
	}
	head := all[5].Seq
	tests := []struct {
		name string
		seqs []int64
		want []int // indexes into all
	}{
		{"empty", nil, nil},
		{"one", []int64{all[3].Seq}, []int{3}},
		{"given order", []int64{all[4].Seq, all[1].Seq, all[5].Seq, all[0].Seq}, []int{4, 1, 5, 0}},
		{"missing skipped", []int64{head + 1000, all[2].Seq, 0, -5, head + 1, all[3].Seq}, []int{2, 3}},
		{"only missing", []int64{head + 1, head + 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.EventsBySeq(t.Context(), tt.seqs)
			noErr(t, err, "EventsBySeq")
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %v, want %d", len(got), ids(got), len(tt.want))
			}
			for i, idx := range tt.want {
				if got[i].Seq != all[idx].Seq {
					t.Errorf("event %d has Seq %d, want %d", i, got[i].Seq, all[idx].Seq)
				}
				if d := messageDiff(got[i], all[idx]); d != "" {
					t.Errorf("event %d: %s", i, d)
				}
			}
		})
	}
}

// testPruneDedup checks that PruneDedup forgets exactly the messageIds
// received before the cutoff, by the events' ReceivedAt.
func testPruneDedup(t *testing.T, s kith.Store) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := message("s1", "old", now.Add(-48*time.Hour))
	old.ReceivedAt = now.Add(-48 * time.Hour)
	recent := message("s1", "recent", now.Add(-time.Hour))
	recent.ReceivedAt = now.Add(-time.Hour)
	mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{old, recent}})

	// A cutoff older than both forgets nothing.
	noErr(t, s.PruneDedup(t.Context(), now.Add(-72*time.Hour)), "PruneDedup")
	res := mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "old", now), message("s1", "recent", now)}})
	if !res.Duplicate[0] || !res.Duplicate[1] {
		t.Errorf("after pruning before both: Duplicate = %v, want [true true]", res.Duplicate)
	}

	noErr(t, s.PruneDedup(t.Context(), now.Add(-24*time.Hour)), "PruneDedup")
	again := message("s1", "old", now)
	res = mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{again, message("s1", "recent", now)}})
	if res.Duplicate[0] {
		t.Errorf("messageId received 48h ago is still a duplicate after PruneDedup(now-24h)")
	}
	if !res.Duplicate[1] {
		t.Errorf("messageId received 1h ago was forgotten by PruneDedup(now-24h)")
	}
	// The re-accepted event starts a new dedup window.
	res = mustAppend(t, s, kith.AppendBatch{Events: []kith.Message{message("s1", "old", now)}})
	if !res.Duplicate[0] {
		t.Errorf("re-accepted messageId is not deduplicated again")
	}
	checkMessages(t, readAll(t, s), []kith.Message{old, recent, again})
	checkCounts(t, mustCounts(t, s), map[string]kith.Counts{
		"s1": {Received: 7, Accepted: 3, Duplicate: 4},
	})
}

// testAppendReportsSeqs checks AppendResult.Seqs, which a store may leave
// nil: when present, each stored event's entry is the Seq the log holds it
// at, and a duplicate's is 0.
func testAppendReportsSeqs(t *testing.T, s kith.Store) {
	ctx := t.Context()
	for round := 0; round < 3; round++ {
		var evs []kith.Message
		for i := 0; i < 5; i++ {
			evs = append(evs, message("s1", fmt.Sprintf("r%d-%d", round, i), at(round*10+i)))
		}
		evs = append(evs, evs[1]) // a duplicate inside the batch
		res, err := s.Append(ctx, kith.AppendBatch{Events: evs})
		noErr(t, err, "Append")
		if res.Seqs == nil {
			return // optional
		}
		if len(res.Seqs) != len(evs) {
			t.Fatalf("Seqs has %d entries for %d events", len(res.Seqs), len(evs))
		}
		if res.Seqs[len(evs)-1] != 0 {
			t.Errorf("a duplicate got Seq %d, want 0", res.Seqs[len(evs)-1])
		}
		stored, err := s.EventsBySeq(ctx, res.Seqs[:5])
		noErr(t, err, "EventsBySeq")
		if len(stored) != 5 {
			t.Fatalf("EventsBySeq(%v) found %d events", res.Seqs[:5], len(stored))
		}
		for i, m := range stored {
			if m.MessageID != evs[i].MessageID || m.Seq != res.Seqs[i] {
				t.Errorf("Seqs[%d] = %d holds %q, want %q", i, res.Seqs[i], m.MessageID, evs[i].MessageID)
			}
		}
	}
}
