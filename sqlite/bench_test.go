package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
)

// BenchmarkAppend measures one durable group commit of 800 events of
// ~350 bytes (8 concurrent requests of 100), fsync included.
func BenchmarkAppend(b *testing.B) {
	db, err := sqlite.Open(context.Background(), b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw := []byte(`{"type":"track","event":"Product Viewed","userId":"u1","properties":{"product_id":"p-1","price":19.99,"category":"shoes"},"context":{"library":{"name":"bench","version":"1.0"},"ip":"10.0.0.1","userAgent":"Mozilla/5.0"},"timestamp":"2026-01-01T00:00:00.000000Z"}`)
	const n = 800
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evs := make([]kith.Message, n)
		for j := range evs {
			evs[j] = kith.Message{SourceID: "s", MessageID: fmt.Sprintf("m-%d-%d", i, j), Type: "track", Event: "Product Viewed",
				UserID: "u1", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: raw}
		}
		if _, err := db.Append(context.Background(), kith.AppendBatch{Events: evs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
