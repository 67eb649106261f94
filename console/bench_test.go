package console_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/console"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// consoleRig is a console over a fresh embedded store, signed in.
type consoleRig struct {
	store  *sqlite.DB
	browse func(method, path string, form url.Values) *httptest.ResponseRecorder
}

func newRig(b *testing.B) *consoleRig {
	f := newFixture(b, nil)
	return &consoleRig{store: f.db, browse: f.signIn(f.console(console.Config{}), kith.ScopeAll)}
}

func (r *consoleRig) get(b *testing.B, path string) {
	if rec := r.browse("GET", path, nil); rec.Code != 200 {
		b.Fatalf("GET %s: %d", path, rec.Code)
	}
}

// BenchmarkCustomer360 renders the 360 page of a customer with 10,000
// events (its timeline paginated at 50).
func BenchmarkCustomer360(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	base := time.Now().Add(-10000 * time.Minute)
	var msgs []kith.Message
	for i := range 10000 {
		at := base.Add(time.Duration(i) * time.Minute)
		event, props := "Product Viewed", fmt.Sprintf(`{"product_id":"p-%d","price":%d}`, i%500, i%90)
		if i%20 == 0 {
			event, props = "Order Completed", fmt.Sprintf(`{"order_id":"o-%d","revenue":%d,"products":[{"product_id":"p-%d","price":10,"quantity":1}]}`, i, 10+i%50, i%500)
		}
		raw := fmt.Sprintf(`{"type":"track","event":%q,"userId":"u1","messageId":"m%d","properties":%s,"context":{"traits":{"email":"ada@example.com"},"library":{"name":"analytics.js"}}}`, event, i, props)
		msgs = append(msgs, kith.Message{SourceID: "web", MessageID: "m" + strconv.Itoa(i), Type: "track", Event: event, UserID: "u1", Timestamp: at, ReceivedAt: at, Raw: []byte(raw)})
	}
	if _, err := r.store.Append(ctx, kith.AppendBatch{Events: msgs}); err != nil {
		b.Fatal(err)
	}
	secret, _ := r.store.Secret(ctx)
	ix := pipeline.New(r.store, secret, pipeline.Config{BatchSize: 5000})
	for {
		n, err := ix.Step(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	b.ResetTimer()
	for b.Loop() {
		r.get(b, "/customers/user_id:u1")
	}
}

// BenchmarkOverview renders the overview with KITH_BENCH_PROFILES profiles
// (default 100,000; the target is stated for 1,000,000).
func BenchmarkOverview(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("KITH_BENCH_PROFILES")); err == nil {
		n = v
	}
	cursor := int64(0)
	for done := 0; done < n; {
		k := min(100000, n-done)
		ps := make([]kith.NewProfile, k)
		for i := range ps {
			ps[i] = kith.NewProfile{ID: fmt.Sprintf("p_%012d", done+i), CreatedAt: time.Now()}
		}
		if err := r.store.ApplyIndexBatch(ctx, cursor, kith.IndexBatch{Cursor: cursor + 1, Profiles: ps}); err != nil {
			b.Fatal(err)
		}
		cursor++
		done += k
	}
	b.ResetTimer()
	for b.Loop() {
		r.get(b, "/")
	}
}
