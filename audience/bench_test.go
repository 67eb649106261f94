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
