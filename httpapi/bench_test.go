package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/kithcdp/kith/loadgen"
)

// BenchmarkCollectAckPath measures the acknowledged-ingest path alone —
// HTTP, parsing, group commit to the embedded log — with the indexer
// stopped, against the null server's ceiling in the same run.
func BenchmarkCollectAckPath(b *testing.B) {
	s := startStack(&testing.T{}, b.TempDir(), time.Now)
	s.cancel() // stop the indexer: this measures the ack path only
	<-s.done
	defer s.stop()
	s.t = &testing.T{}
	s.createSource("bench")
	nullURL, stopNull, err := loadgen.StartNull("")
	if err != nil {
		b.Fatal(err)
	}
	defer stopNull()
	cfg := loadgen.Config{Events: 50000, BatchSize: 100, Concurrency: 8, Users: 20000, ReadRate: -1, Null: true}
	var kithRate, nullRate float64
	for i := 0; i < b.N; i++ {
		cfg.Target, cfg.WriteKey = nullURL, "x"
		rn, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Target, cfg.WriteKey = s.srv.URL, s.writeKey
		rk, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		kithRate += rk.AckedPerSec
		nullRate += rn.AckedPerSec
	}
	b.ReportMetric(kithRate/float64(b.N), "kith-events/s")
	b.ReportMetric(nullRate/float64(b.N), "null-events/s")
	b.ReportMetric(kithRate/nullRate, "ratio")
}
