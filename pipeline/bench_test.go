package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// BenchmarkIndex measures how fast the indexer applies a logged stream of
// identify/track/page events from 10,000 people to the embedded store.
// Reported as events/s; compare with the collection rate in BENCHMARKS.md.
func BenchmarkIndex(b *testing.B) {
	const users = 10000
	var msgs []kith.Message
	for i := 0; i < 50000; i++ {
		u := (i * 7919) % users
		var body string
		switch i % 5 {
		case 0:
			body = fmt.Sprintf(`{"type":"identify","userId":"u%d","anonymousId":"a%d","traits":{"email":"user%d@example.com","name":"User %d","plan":"pro"},"context":{"library":{"name":"bench"},"ip":"10.0.0.1"}}`, u, u, u, u)
		case 1, 2:
			body = fmt.Sprintf(`{"type":"track","event":"Product Viewed","anonymousId":"a%d","properties":{"product_id":"p%d","price":19.99,"category":"shoes"},"context":{"library":{"name":"bench"}}}`, u, i%500)
		case 3:
			body = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u%d","properties":{"order_id":"o%d","revenue":42.5,"currency":"EUR","products":[{"product_id":"p1","price":42.5,"quantity":1}]}}`, u, i)
		default:
			body = fmt.Sprintf(`{"type":"page","name":"Home","anonymousId":"a%d","properties":{"path":"/","title":"Home"}}`, u)
		}
		p := collect.Parse([]byte(`{"batch":[`+body+`]}`), "batch", collect.Meta{ReceivedAt: time.Now()}, collect.DefaultLimits())
		if len(p.Messages) != 1 {
			b.Fatalf("fixture rejected: %v", p.Rejected)
		}
		m := p.Messages[0]
		m.SourceID = "bench"
		msgs = append(msgs, m)
	}
	b.ResetTimer()
	var total time.Duration
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		store, err := sqlite.Open(context.Background(), b.TempDir(), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(msgs); i += 5000 {
			if _, err := store.Append(context.Background(), kith.AppendBatch{Events: msgs[i : i+5000]}); err != nil {
				b.Fatal(err)
			}
		}
		secret, _ := store.Secret(context.Background())
		ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 5000})
		head, _ := store.LogHead(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { ix.Run(ctx); close(done) }()
		for ix.Cursor() < head {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cancel()
		<-done
		b.StopTimer()
		store.Close()
	}
	b.ReportMetric(float64(len(msgs)*b.N)/total.Seconds(), "events/s")
}
