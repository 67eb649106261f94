package audience_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// BenchmarkBackfill50 times the backfill of 50 audiences (over traits and
// computed traits) across KITH_BENCH_PROFILES profiles (default 100,000)
// on the embedded store: load every profile's state, evaluate all 50,
// record every entry.
//
//	KITH_BENCH_PROFILES=1000000 go test ./audience -run XXX -bench Backfill50 -benchtime 1x
func BenchmarkBackfill50(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("KITH_BENCH_PROFILES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	eng := audience.NewEngine(db, audience.Config{Now: func() time.Time { return now }})
	// 20 computed traits, defined before the profiles exist.
	for i := range 20 {
		text := fmt.Sprintf(`count(event "E%d" within 90d)`, i)
		if i%2 == 1 {
			text = fmt.Sprintf(`sum(properties.v of event "E%d")`, i)
		}
		if _, err := eng.Put(ctx, kith.Definition{Kind: kith.KindComputedTrait, Key: fmt.Sprintf("ct%d", i), Text: text}); err != nil {
			b.Fatal(err)
		}
	}
	for {
		if w, err := eng.Step(ctx); err != nil {
			b.Fatal(err)
		} else if !w {
			break
		}
	}
	prog := eng.Program()
	countries := []string{`"NL"`, `"BE"`, `"DE"`, `"FR"`}
	for start := 0; start < n; start += 20000 {
		var batch kith.AudienceBatch
		for i := start; i < min(n, start+20000); i++ {
			st := &audience.State{}
			st.SetTrait("country", audience.TraitValue{V: json.RawMessage(countries[i%4])})
			st.SetTrait("score", audience.TraitValue{V: json.RawMessage(strconv.Itoa(i % 100))})
			for j := range 3 {
				k := (i + j*7) % 20
				m := kith.Message{Seq: int64(i*3 + j + 1), Type: "track", Event: fmt.Sprintf("E%d", k), Timestamp: now.Add(-time.Duration(i%120) * 24 * time.Hour),
					Raw: json.RawMessage(fmt.Sprintf(`{"properties":{"v":%d}}`, i%50))}
				prog.Apply(st, audience.EventOf(m), now)
			}
			batch.States = append(batch.States, kith.ProfileState{ProfileID: fmt.Sprintf("p_%012d", i), State: st.Encode()})
		}
		if err := db.ApplyAudienceBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for iter := range b.N {
		// 50 audiences at once: each a trait comparison and a computed
		// trait, selecting between 1% and 50% of the profiles.
		for i := range 50 {
			text := fmt.Sprintf(`traits.score < %d and (traits.ct%d >= 1 or traits.country = "NL")`, 2+i, i%20)
			if _, err := eng.Put(ctx, kith.Definition{Kind: kith.KindAudience, Key: fmt.Sprintf("a%d_%d", iter, i), Text: text}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		for {
			if w, err := eng.Step(ctx); err != nil {
				b.Fatal(err)
			} else if !w {
				break
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/backfill")
	}
	var members int64
	for i := range 50 {
		s, _ := db.AudienceSize(ctx, fmt.Sprintf("a0_%d", i))
		members += s
	}
	b.ReportMetric(float64(members), "memberships")
}

// BenchmarkIndexWithDefinitions is the indexer's throughput over 100,000
// events (20,000 people, orders and page views) with no definitions, and
// with 20 computed traits and 50 audiences kept in real time: the engine
// folds each applied batch before the next one is derived (one goroutine,
// so the figure is the combined cost, not the two-core throughput).
//
//	go test ./audience -run XXX -bench IndexWithDefinitions -benchtime 1x
func BenchmarkIndexWithDefinitions(b *testing.B) {
	for _, defs := range []bool{false, true} {
		name := "none"
		if defs {
			name = "20traits_50audiences"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				r := newRig(b)
				ctx := context.Background()
				if defs {
					for i := range 20 {
						text := fmt.Sprintf(`count(event "Order Completed" where properties.sku = "s%d" within 90d)`, i)
						if i%2 == 1 {
							text = fmt.Sprintf(`sum(properties.revenue of event "Order Completed" where properties.sku = "s%d")`, i)
						}
						eng := r.eng
						if _, err := eng.Put(ctx, kith.Definition{Kind: kith.KindComputedTrait, Key: fmt.Sprintf("ct%d", i), Text: text}); err != nil {
							b.Fatal(err)
						}
					}
					for i := range 50 {
						text := fmt.Sprintf(`traits.ct%d >= 1 or count(event "Page Viewed" within %dd) >= 3`, i%20, 1+i)
						if _, err := r.eng.Put(ctx, kith.Definition{Kind: kith.KindAudience, Key: fmt.Sprintf("a%d", i), Text: text}); err != nil {
							b.Fatal(err)
						}
					}
				}
				var msgs []kith.Message
				for i := range 100000 {
					user := fmt.Sprintf("u%d", i%20000)
					if i%3 == 0 {
						msgs = append(msgs, r.event("track", "Order Completed", user, "", r.now.Add(-time.Duration(i%2000)*time.Hour), map[string]any{"sku": fmt.Sprintf("s%d", i%20), "revenue": i % 90}))
					} else {
						msgs = append(msgs, r.event("track", "Page Viewed", user, "", r.now.Add(-time.Duration(i%2000)*time.Hour), map[string]any{"path": "/"}))
					}
				}
				for i := 0; i < len(msgs); i += 5000 {
					if _, err := r.store.Append(ctx, kith.AppendBatch{Events: msgs[i : i+5000]}); err != nil {
						b.Fatal(err)
					}
				}
				ix := pipeline.New(r.store, mustSecret(b, r.store), pipeline.Config{BatchSize: 2000, Observer: r.eng})
				start := time.Now()
				for {
					n, err := ix.Step(ctx)
					if err != nil {
						b.Fatal(err)
					}
					for {
						w, err := r.eng.Step(ctx)
						if err != nil {
							b.Fatal(err)
						}
						if !w {
							break
						}
					}
					if n == 0 {
						break
					}
				}
				if err := r.eng.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(msgs))/time.Since(start).Seconds(), "events/s")
			}
		})
	}
}

func mustSecret(b *testing.B, db *sqlite.DB) []byte {
	s, err := db.Secret(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return s
}
