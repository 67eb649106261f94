package activation_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
)

// BenchmarkDeliverBatched delivers a backlog of 20,000 indexed events to
// one fast local webhook receiver in batches of 500 and reports
// events/s (the issue asks for ≥ 20,000/s).
func BenchmarkDeliverBatched(b *testing.B) {
	const events = 20_000
	for b.Loop() {
		b.StopTimer()
		r := newRig(b)
		rc := newReceiver(b, nil)
		var bodies []string
		for i := range events {
			bodies = append(bodies, track(fmt.Sprintf("u%d", i%1000), "Viewed", i))
		}
		r.add(bodies...)
		d := r.create(kith.Destination{Name: "hook", Type: kith.DestinationWebhook, Config: webhookTo(rc.URL, `"batch":500`).Config, Events: every})
		b.StartTimer()
		start := time.Now()
		e := r.engine(activation.Config{BatchSize: 2000})
		for r.counts(d).Delivered < events {
			time.Sleep(2 * time.Millisecond)
		}
		b.ReportMetric(events/time.Since(start).Seconds(), "events/s")
		e.Close()
	}
}
