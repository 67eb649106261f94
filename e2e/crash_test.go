package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Sizes of the crash test's traffic: every batch has its own messageIds and
// spreads its events over all users, so each user's timeline holds events
// of many batches.
const (
	crashBatches  = 200
	crashPerBatch = 50
	crashUsers    = 100
	crashSenders  = 4
	// crashKillAt is how many acknowledged batches trigger the kill: about
	// 40% of them.
	crashKillAt = crashBatches * 2 / 5
)

// crashTraffic is the crash test's pre-built traffic.
type crashTraffic struct {
	run    string
	bodies [][]byte
	// ids[b] are the messageIds of batch b.
	ids [][]string
}

// newCrashTraffic builds the batches: track events with unique messageIds,
// user (b*perBatch+j) mod users for event j of batch b.
func newCrashTraffic(t *testing.T) crashTraffic {
	ct := crashTraffic{run: randomHex(4)}
	for b := 0; b < crashBatches; b++ {
		var items []map[string]any
		var ids []string
		for j := 0; j < crashPerBatch; j++ {
			id := fmt.Sprintf("crash-%s-%03d-%02d", ct.run, b, j)
			ids = append(ids, id)
			items = append(items, map[string]any{
				"type": "track", "messageId": id, "event": "Tick",
				"userId":     ct.user((b*crashPerBatch + j) % crashUsers),
				"properties": map[string]any{"batch": b, "n": j},
			})
		}
		ct.bodies = append(ct.bodies, mustJSON(t, map[string]any{"batch": items}))
		ct.ids = append(ct.ids, ids)
	}
	return ct
}

// user returns the user id of user u.
func (ct crashTraffic) user(u int) string {
	return fmt.Sprintf("crash-%s-u%03d", ct.run, u)
}

// postBatch sends one pre-encoded batch and reports whether the server
// acknowledged it: a 2xx whose body says success with nothing rejected.
func postBatch(s *server, writeKey string, body []byte) (bool, string) {
	h := http.Header{"Content-Type": {"application/json"}, "Authorization": {basicAuth(writeKey)}}
	res, err := s.request(http.MethodPost, "/v1/batch", h, body)
	if err != nil {
		return false, err.Error()
	}
	if res.Status/100 != 2 {
		return false, res.String()
	}
	var cr collectResponse
	if err := json.Unmarshal(res.Body, &cr); err != nil || !cr.Success || len(cr.Rejected) > 0 {
		return false, "2xx without success: " + res.String()
	}
	return true, ""
}

// userEvents reads every user's timeline with limit 100 per page and
// returns how often each messageId appears. A user without a profile (404)
// has no events.
func userEvents(t *testing.T, s *server, ct crashTraffic) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for u := 0; u < crashUsers; u++ {
		ref := "user_id:" + ct.user(u)
		if res := s.admin(t, http.MethodGet, refPath(ref), nil); res.Status == http.StatusNotFound {
			continue
		} else if res.Status != http.StatusOK {
			t.Fatalf("GET %s: %v", refPath(ref), res)
		}
		for _, e := range s.events(t, ref, url.Values{"limit": {"100"}}) {
			seen[e.MessageID]++
			if e.UserID != ct.user(u) || e.Type != "track" || e.Event != "Tick" {
				t.Errorf("user %s: unexpected event %+v", ct.user(u), e)
			}
		}
	}
	return seen
}

// TestCrashRecovery kills kith with SIGKILL while batches are in flight,
// restarts it on the same data directory, and proves that every batch it
// acknowledged is stored exactly once, that nothing is stored twice, and
// that after everything is resent the acknowledged events count as
// duplicates: deduplication survives the crash and the counters add up.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	src := s.createSource(t, "crash")
	ct := newCrashTraffic(t)

	// Send from several goroutines; the sender whose acknowledgement
	// reaches crashKillAt signals the kill, while the others are still
	// sending.
	var (
		acked    [crashBatches]atomic.Bool
		nAcked   atomic.Int64
		inFlight atomic.Int64
		killed   atomic.Bool
		killNow  = make(chan struct{})
		killOnce sync.Once
		work     = make(chan int)
		wg       sync.WaitGroup
		failMu   sync.Mutex
		failures []string
	)
	for w := 0; w < crashSenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if killed.Load() {
					continue
				}
				inFlight.Add(1)
				ok, why := postBatch(s, src.WriteKey, ct.bodies[b])
				inFlight.Add(-1)
				if !ok {
					if !killed.Load() {
						failMu.Lock()
						failures = append(failures, fmt.Sprintf("batch %d before the kill: %s", b, why))
						failMu.Unlock()
					}
					continue
				}
				acked[b].Store(true)
				if nAcked.Add(1) >= crashKillAt {
					killOnce.Do(func() { close(killNow) })
				}
			}
		}()
	}
	allSent := make(chan struct{})
	go func() {
		for b := 0; b < crashBatches; b++ {
			work <- b
		}
		close(work)
		wg.Wait()
		close(allSent)
	}()
	failureList := func() []string {
		failMu.Lock()
		defer failMu.Unlock()
		return slices.Clone(failures)
	}
	select {
	case <-killNow:
	case <-allSent:
		// Both may be ready at once; only a missing kill signal is an error.
		select {
		case <-killNow:
		default:
			t.Fatalf("only %d of %d batches were acknowledged, so the kill never came; failures: %v",
				nAcked.Load(), crashBatches, failureList())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d batches acknowledged after 60s; failures: %v", nAcked.Load(), failureList())
	}
	killed.Store(true)
	pending := inFlight.Load()
	s.kill()
	<-allSent
	if f := failureList(); len(f) > 0 {
		t.Errorf("batches refused before the kill: %v", f)
	}
	var ackedIDs []string
	nAckedBatches := 0
	for b := range acked {
		if acked[b].Load() {
			nAckedBatches++
			ackedIDs = append(ackedIDs, ct.ids[b]...)
		}
	}
	t.Logf("killed kith after %d of %d batches were acknowledged, with %d requests in flight", nAckedBatches, crashBatches, pending)

	// After the restart, every acknowledged event is there exactly once and
	// nothing is there twice.
	s.restart()
	st := s.waitProcessed(t, int64(len(ackedIDs)), 60*time.Second)
	checkCountsAddUp(t, st)
	before := st.source(t, src.ID)
	if before.Accepted < int64(len(ackedIDs)) || before.Duplicate != 0 || before.RejectedTotal() != 0 {
		t.Errorf("stats after the restart: want accepted >= %d acknowledged events, no duplicates, no rejections; got %+v",
			len(ackedIDs), before)
	}
	t.Logf("after the restart: %d events accepted, %d of them acknowledged", before.Accepted, len(ackedIDs))
	seen := userEvents(t, s, ct)
	for _, id := range ackedIDs {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s: stored %d times after the crash, want once", id, seen[id])
		}
	}
	stored := 0
	for id, n := range seen {
		stored += n
		if n > 1 {
			t.Errorf("event %s: stored %d times after the crash", id, n)
		}
	}
	if int64(stored) != before.Accepted {
		t.Errorf("after the crash: the timelines hold %d events, stats accepted %d", stored, before.Accepted)
	}
	if t.Failed() {
		return
	}

	// Resend everything, acknowledged batches included. Only the events
	// that were not stored are accepted; the rest are duplicates.
	work2 := make(chan int)
	var wg2 sync.WaitGroup
	for w := 0; w < crashSenders; w++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for b := range work2 {
				if ok, why := postBatch(s, src.WriteKey, ct.bodies[b]); !ok {
					t.Errorf("resending batch %d: %s", b, why)
				}
			}
		}()
	}
	for b := 0; b < crashBatches; b++ {
		work2 <- b
	}
	close(work2)
	wg2.Wait()

	total := int64(crashBatches * crashPerBatch)
	st = s.waitProcessed(t, total, 60*time.Second)
	checkCountsAddUp(t, st)
	after := st.source(t, src.ID)
	if after.Accepted != total {
		t.Errorf("stats after resending: want accepted %d (every event once), got %+v", total, after)
	}
	if after.Duplicate != before.Accepted {
		t.Errorf("stats after resending: want duplicate %d (every event stored before the resend, all %d acknowledged ones included), got %+v",
			before.Accepted, len(ackedIDs), after)
	}
	if after.Received != before.Received+total {
		t.Errorf("stats after resending: want received %d + %d, got %+v", before.Received, total, after)
	}
	seen = userEvents(t, s, ct)
	for _, ids := range ct.ids {
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("event %s: stored %d times after resending, want once", id, seen[id])
			}
		}
	}
	if len(seen) != int(total) {
		t.Errorf("after resending: the timelines hold %d distinct events, want %d", len(seen), total)
	}
}
