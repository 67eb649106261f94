package loadgen

import (
	"context"
	"testing"
	"time"
)

// BenchmarkGenerator measures payload generation, which must stay far
// cheaper than the server's decoding so the client is never the bottleneck.
func BenchmarkGenerator(b *testing.B) {
	g := NewGenerator(1, DefaultUsers, testBase)
	buf := make([]byte, 0, 100*450)
	b.ReportAllocs()
	for b.Loop() {
		buf = g.AppendBatch(buf[:0], 100)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRunNull runs the whole benchmark against an in-process null
// server: the ceiling of this machine's client and HTTP stack.
func BenchmarkRunNull(b *testing.B) {
	for _, gzip := range []bool{false, true} {
		name := "plain"
		if gzip {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			url, stop, err := StartNull("")
			if err != nil {
				b.Fatal(err)
			}
			defer stop()
			var acked float64
			for b.Loop() {
				rep, err := Run(context.Background(), Config{Target: url, Events: 50_000, Gzip: gzip, ReadRate: -1, Null: true, Timeout: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				acked += rep.AckedPerSec
			}
			b.ReportMetric(acked/float64(b.N), "acked-events/s")
		})
	}
}
