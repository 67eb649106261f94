package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

var t0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// appendAll parses Segment messages as collection would and logs them.
func appendAll(t *testing.T, store kith.Store, source string, bodies ...string) {
	t.Helper()
	var msgs []kith.Message
	for i, body := range bodies {
		p := collect.Parse([]byte(body), "batch", collect.Meta{ReceivedAt: t0.Add(time.Duration(i) * time.Second)}, collect.DefaultLimits())
		if len(p.Rejected) > 0 {
			t.Fatalf("fixture rejected: %v", p.Rejected)
		}
		for _, m := range p.Messages {
			m.SourceID = source
			msgs = append(msgs, m)
		}
	}
	if _, err := store.Append(context.Background(), kith.AppendBatch{Events: msgs}); err != nil {
		t.Fatal(err)
	}
}

func batch(items ...string) string {
	s := `{"batch":[`
	for i, it := range items {
		if i > 0 {
			s += ","
		}
		s += it
	}
	return s + `]}`
}

func openStore(t *testing.T) kith.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// drain runs the indexer with the default rules until the log is applied.
func drain(t *testing.T, store kith.Store, batchSize int) {
	t.Helper()
	drainWith(t, store, nil, batchSize)
}

// profileOf resolves a "type:value" reference under the default rules.
func profileOf(t *testing.T, store kith.Store, ref string) string {
	t.Helper()
	return ownerOf(t, store, identity.DefaultRules(), ref)
}

func TestStitching(t *testing.T) {
	tests := []struct {
		name string
		msgs []string
		// same lists groups of refs that must share one profile; apart
		// lists pairs that must not.
		same   [][]string
		apart  [][2]string
		merges int
	}{
		{
			name:   "anonymous visitor signs up",
			msgs:   []string{`{"type":"page","anonymousId":"a1"}`, `{"type":"identify","anonymousId":"a1","userId":"u1"}`},
			same:   [][]string{{"anonymous_id:a1", "user_id:u1"}},
			merges: 0,
		},
		{
			name: "two known profiles linked by email merge",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"ada@x.io"}}`,
				`{"type":"identify","anonymousId":"a9","traits":{"email":"bob@x.io"}}`,
				`{"type":"track","event":"e","anonymousId":"a9","context":{"traits":{"email":"ADA@x.io"}}}`,
			},
			same:   [][]string{{"user_id:u1", "email:ada@x.io", "anonymous_id:a9", "email:bob@x.io"}},
			merges: 1,
		},
		{
			name: "alias links previous user id",
			msgs: []string{
				`{"type":"track","event":"e","userId":"old-7"}`,
				`{"type":"track","event":"e","userId":"new-7"}`,
				`{"type":"alias","userId":"new-7","previousId":"old-7"}`,
			},
			same:   [][]string{{"user_id:old-7", "user_id:new-7"}},
			merges: 1,
		},
		{
			name: "alias with unknown previousId records it as anonymous id",
			msgs: []string{`{"type":"alias","userId":"u5","previousId":"dev-5"}`},
			same: [][]string{{"user_id:u5", "anonymous_id:dev-5"}},
		},
		{
			name: "blocked values never link",
			msgs: []string{
				`{"type":"identify","userId":"u1","traits":{"email":"null"},"anonymousId":"00000000"}`,
				`{"type":"identify","userId":"u2","traits":{"email":"null"},"anonymousId":"00000000"}`,
			},
			apart: [][2]string{{"user_id:u1", "user_id:u2"}},
		},
		{
			name: "external ids link channels",
			msgs: []string{
				`{"type":"identify","userId":"shop-1","context":{"externalIds":[{"id":"L-1","type":"loyalty_card"}]}}`,
				`{"type":"track","event":"Order Completed","anonymousId":"pos-till-3","context":{"externalIds":[{"id":"L-1","type":"loyalty_card"}]}}`,
			},
			same: [][]string{{"user_id:shop-1", "loyalty_card:L-1", "anonymous_id:pos-till-3"}},
		},
	}
	for _, tc := range tests {
		for _, bs := range []int{1, 1000} { // one event per batch, and all in one
			t.Run(fmt.Sprintf("%s/batch=%d", tc.name, bs), func(t *testing.T) {
				store := openStore(t)
				var items []string
				for _, m := range tc.msgs {
					items = append(items, batch(m))
				}
				appendAll(t, store, "src", items...)
				drain(t, store, bs)
				for _, group := range tc.same {
					want := profileOf(t, store, group[0])
					if want == "" {
						t.Fatalf("%s has no profile", group[0])
					}
					for _, ref := range group[1:] {
						if got := profileOf(t, store, ref); got != want {
							t.Errorf("%s -> %q, want %q (%s)", ref, got, want, group[0])
						}
					}
					ms, err := store.Merges(context.Background(), want)
					if err != nil {
						t.Fatal(err)
					}
					if len(ms) != tc.merges {
						t.Errorf("merges %d, want %d: %+v", len(ms), tc.merges, ms)
					}
				}
				for _, pair := range tc.apart {
					a, b := profileOf(t, store, pair[0]), profileOf(t, store, pair[1])
					if a == "" || a == b {
						t.Errorf("%s and %s must be separate profiles: %q %q", pair[0], pair[1], a, b)
					}
				}
			})
		}
	}
}

func TestTraitsLatestEventTimeWinsAcrossMerge(t *testing.T) {
	store := openStore(t)
	appendAll(t, store, "crm",
		batch(`{"type":"identify","userId":"u1","traits":{"tier":"silver","city":"Delft"},"timestamp":"2026-04-01T00:00:00Z"}`),
		batch(`{"type":"identify","anonymousId":"a1","traits":{"tier":"gold"},"timestamp":"2026-04-10T00:00:00Z"}`),
		// Linking event, but its trait is older than both.
		batch(`{"type":"identify","userId":"u1","anonymousId":"a1","traits":{"tier":"bronze"},"timestamp":"2026-03-01T00:00:00Z"}`),
	)
	drain(t, store, 2)
	id := profileOf(t, store, "user_id:u1")
	traits, err := store.Traits(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tr := range traits {
		got[tr.Key] = string(tr.Value)
	}
	if got["tier"] != `"gold"` || got["city"] != `"Delft"` {
		t.Fatalf("traits %v, want tier gold (latest event time) and city Delft", got)
	}
}

func TestFutureEventTimeDoesNotPinTraits(t *testing.T) {
	store := openStore(t)
	// A client clock in the year 9999, then a real update received later.
	appendAll(t, store, "web",
		batch(`{"type":"identify","userId":"u1","traits":{"plan":"bogus"},"timestamp":"9999-01-01T00:00:00Z"}`),
		batch(`{"type":"identify","userId":"u1","traits":{"plan":"pro"}}`),
	)
	drain(t, store, 100)
	traits, err := store.Traits(context.Background(), profileOf(t, store, "user_id:u1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(traits) != 1 || string(traits[0].Value) != `"pro"` {
		t.Fatalf("traits %+v, want plan pro", traits)
	}
}

func TestReplayAfterCrashAppliesEachEventOnce(t *testing.T) {
	store := openStore(t)
	var items []string
	for i := 0; i < 50; i++ {
		items = append(items, batch(fmt.Sprintf(`{"type":"track","event":"e","userId":"u%d","anonymousId":"a%d","messageId":"m%d"}`, i%7, i%11, i)))
	}
	appendAll(t, store, "web", items...)
	secret, _ := store.Secret(context.Background())

	// A first indexer applies two batches, then "crashes" (is dropped).
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 10})
	for i := 0; i < 2; i++ {
		if _, err := ix.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// A stale batch (derived from an old cursor) is refused.
	err := store.ApplyIndexBatch(context.Background(), 0, kith.IndexBatch{Cursor: 10})
	if kith.ErrorCode(err) != kith.ECONFLICT {
		t.Fatalf("stale apply: %v, want ECONFLICT", err)
	}
	// A new indexer resumes at the stored cursor.
	drain(t, store, 7)
	counts, _ := store.Counts(context.Background())
	if c := counts["web"]; c.Processed != 50 || c.Accepted != 50 {
		t.Fatalf("counts %+v, want 50 accepted and processed", c)
	}
	// Every event is on exactly one timeline, once.
	seen := map[int64]int{}
	profiles := map[string]bool{}
	for u := 0; u < 7; u++ {
		profiles[profileOf(t, store, fmt.Sprintf("user_id:u%d", u))] = true
	}
	for id := range profiles {
		entries, err := store.Timeline(context.Background(), id, kith.TimelineQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			seen[e.Seq]++
		}
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct events on timelines, want 50", len(seen))
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("event %d on timelines %d times", seq, n)
		}
	}
}

// TestHandOverMatchesLog proves that events handed over by the committer
// in memory derive exactly the state that reading them from the log does.
func TestHandOverMatchesLog(t *testing.T) {
	var bodies []string
	for i := 0; i < 300; i++ {
		var body string
		switch i % 4 {
		case 0:
			body = fmt.Sprintf(`{"type":"identify","userId":"u%d","anonymousId":"a%d","traits":{"email":"p%d@x.io","n":%d}}`, i%13, i%17, i%11, i)
		case 1:
			body = fmt.Sprintf(`{"type":"track","event":"e","anonymousId":"a%d"}`, i%17)
		case 2:
			body = fmt.Sprintf(`{"type":"alias","userId":"u%d","previousId":"old%d"}`, i%13, i%5)
		default:
			body = fmt.Sprintf(`{"type":"page","name":"P","userId":"u%d","context":{"traits":{"phone":"+31 6 %d"}}}`, i%13, i%7)
		}
		// Explicit messageIds: both runs must see the same messages.
		bodies = append(bodies, batch(fmt.Sprintf(`{"messageId":"m%d",`, i)+body[1:]))
	}
	viaLog, viaMemory := openStore(t), openStore(t)
	appendAll(t, viaLog, "web", bodies...)
	drain(t, viaLog, 50)

	// Commit the same messages in groups, handing each group over.
	secret, _ := viaMemory.Secret(context.Background())
	ix := pipeline.New(viaMemory, secret, pipeline.Config{BatchSize: 50})
	var msgs []kith.Message
	for i, body := range bodies {
		p := collect.Parse([]byte(body), "batch", collect.Meta{ReceivedAt: t0.Add(time.Duration(i) * time.Second)}, collect.DefaultLimits())
		for _, m := range p.Messages {
			m.SourceID = "web"
			msgs = append(msgs, m)
		}
	}
	for start := 0; start < len(msgs); start += 40 {
		group := msgs[start:min(start+40, len(msgs))]
		res, err := viaMemory.Append(context.Background(), kith.AppendBatch{Events: group})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Seqs) != len(group) {
			t.Fatalf("the embedded store reported %d seqs for %d events", len(res.Seqs), len(group))
		}
		stored := make([]kith.Message, len(group))
		for i, m := range group {
			m.Seq = res.Seqs[i]
			stored[i] = m
		}
		ix.Notify(stored)
		if _, err := ix.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, viaMemory, 50)

	describe := func(store kith.Store, ref string) string {
		id := profileOf(t, store, ref)
		p, err := store.Profile(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		traits, _ := store.Traits(context.Background(), id)
		var tv []string
		for _, tr := range traits {
			tv = append(tv, tr.Key+"="+string(tr.Value)+"@"+tr.MessageID)
		}
		merges, _ := store.Merges(context.Background(), id)
		return fmt.Sprintf("members=%d idents=%d events=%d merges=%d traits=%v", len(p.Members), p.Identifiers, p.Events, len(merges), tv)
	}
	for u := 0; u < 13; u++ {
		ref := fmt.Sprintf("user_id:u%d", u)
		if a, b := describe(viaLog, ref), describe(viaMemory, ref); a != b {
			t.Errorf("%s differs:\n log:    %s\n memory: %s", ref, a, b)
		}
	}
}

// TestOrdersAcrossChannels checks that Order Completed events become typed
// orders on the profile they resolve to, and that after a merge the
// unified profile has the orders of both channels.
func TestOrdersAcrossChannels(t *testing.T) {
	store := openStore(t)
	appendAll(t, store, "pos",
		batch(`{"type":"track","userId":"loyal-7","event":"Order Completed","timestamp":"2026-04-01T10:00:00Z",
			"properties":{"order_id":"pos-1","total":"19.90","currency":"eur","products":[{"sku":"MUG","name":"Mug","category":"Kitchen","price":9.95,"quantity":2}]}}`,
			`{"type":"track","userId":"loyal-7","event":"Product Viewed","properties":{"product_id":"x"}}`))
	appendAll(t, store, "web",
		batch(`{"type":"track","anonymousId":"a-9","event":"Order Completed","timestamp":"2026-03-01T10:00:00Z","properties":{"order_id":"web-1","revenue":5}}`,
			`{"type":"identify","userId":"loyal-7","anonymousId":"a-9"}`))
	drain(t, store, 1)
	id := profileOf(t, store, "user_id:loyal-7")
	var got []kith.CustomerOrders
	if err := store.ScanOrders(context.Background(), func(c kith.CustomerOrders) error {
		got = append(got, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ProfileID != id || len(got[0].Orders) != 2 {
		t.Fatalf("orders = %+v, want both orders on %s", got, id)
	}
	web, pos := got[0].Orders[0], got[0].Orders[1] // oldest first
	if web.OrderID != "web-1" || web.Revenue != 5 || web.SourceID != "web" || len(web.Items) != 0 {
		t.Errorf("web order = %+v", web)
	}
	want := kith.OrderItem{ProductID: "MUG", SKU: "MUG", Name: "Mug", Category: "Kitchen", Price: 9.95, Quantity: 2}
	if pos.OrderID != "pos-1" || pos.Revenue != 19.9 || pos.Currency != "EUR" || len(pos.Items) != 1 || pos.Items[0] != want {
		t.Errorf("pos order = %+v", pos)
	}
}

func TestRebuildProgress(t *testing.T) {
	store := openStore(t)
	appendAll(t, store, "web",
		batch(`{"type":"identify","userId":"u1"}`),
		batch(`{"type":"track","userId":"u1","event":"a"}`),
		batch(`{"type":"track","userId":"u2","event":"b"}`),
		batch(`{"type":"track","userId":"u3","event":"c"}`),
		batch(`{"type":"track","userId":"u1","event":"d"}`))
	secret, _ := store.Secret(context.Background())
	var logged bytes.Buffer
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 2, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if p := ix.Rebuild(); p.Active || p.Of != 0 {
		t.Fatalf("before starting: Rebuild() = %+v; want no rebuild", p)
	}
	steps := []kith.RebuildProgress{{Position: 2, Of: 5, Active: true}, {Position: 4, Of: 5, Active: true}, {Position: 5, Of: 5}}
	for i, want := range steps {
		if _, err := ix.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p := ix.Rebuild(); p != want {
			t.Errorf("after step %d: Rebuild() = %+v; want %+v", i+1, p, want)
		}
	}
	// The log says when the rebuild began and when it caught up, once.
	if n := strings.Count(logged.String(), "rebuilt the derived state from the log"); n != 1 || !strings.Contains(logged.String(), "rebuilding it from the log") {
		t.Errorf("log holds the end of the rebuild %d times (want 1) and its start: %s", n, logged.String())
	}
	// An indexer that starts on a derived state that is there rebuilds
	// nothing, however far behind it is.
	appendAll(t, store, "web", batch(`{"type":"track","userId":"u4","event":"e"}`))
	again := pipeline.New(store, secret, pipeline.Config{BatchSize: 2})
	if _, err := again.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := again.Rebuild(); p != (kith.RebuildProgress{Position: 6}) {
		t.Errorf("restart on a built state: Rebuild() = %+v; want position 6, no rebuild", p)
	}
}

// TestWaitingLeavesOutARebuild: while the derived state is rebuilt from
// the log, the events it re-applies are in Backlog but not in Waiting
// (what collection is refused on); events committed after the rebuild
// began are in both.
func TestWaitingLeavesOutARebuild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := openStore(t)
	appendAll(t, store, "web",
		batch(`{"type":"track","userId":"u1","event":"a"}`),
		batch(`{"type":"track","userId":"u2","event":"b"}`),
		batch(`{"type":"track","userId":"u3","event":"c"}`),
		batch(`{"type":"track","userId":"u4","event":"d"}`))
	secret, _ := store.Secret(ctx)
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 1})
	if _, err := ix.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if b, w := ix.Backlog(), ix.Waiting(); b != 3 || w != 0 {
		t.Fatalf("rebuilding 1 of 4: Backlog %d, Waiting %d; want 3, 0", b, w)
	}
	appendAll(t, store, "web", batch(`{"type":"track","userId":"u5","event":"e"}`), batch(`{"type":"track","userId":"u6","event":"f"}`))
	go ix.WatchHead(ctx)
	ix.Notify(nil)
	for deadline := time.Now().Add(5 * time.Second); ix.Backlog() != 5; {
		if time.Now().After(deadline) {
			t.Fatalf("Backlog %d, want 5 once the head is read", ix.Backlog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w := ix.Waiting(); w != 2 {
		t.Fatalf("two events committed during the rebuild: Waiting %d, want 2", w)
	}
	for range 5 {
		if _, err := ix.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b, w := ix.Backlog(), ix.Waiting(); b != 0 || w != 0 {
		t.Fatalf("caught up: Backlog %d, Waiting %d; want 0, 0", b, w)
	}
}
