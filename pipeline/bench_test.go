package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/postgres"
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
		store, err := sqlite.Open(context.Background(), b.TempDir(), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		total += timeIndex(b, store, msgs, pipeline.Config{BatchSize: 5000})
		store.Close()
	}
	b.ReportMetric(float64(len(msgs)*b.N)/total.Seconds(), "events/s")
}

// BenchmarkIdentityResolution measures the indexer with the identity rules
// on a stream built to exercise them: people browse anonymously in
// sessions (anonymous_id and ga_client_id, new each session: a new
// anonymous profile), and three events in ten are a login (user_id,
// e-mail and the session's anonymous_id), which merges the session's
// profile into the person's when both exist: about one event in five
// merges (reported as merges/event). The rules are the defaults except
// that a person may have 100 anonymous and GA client ids (the default 5
// would, rightly, stop merging this stream's frequent sessions after the
// fifth).
// KITH_BENCH_EVENTS sets the stream length (default 200,000;
// BENCHMARKS.md uses 1,000,000).
func BenchmarkIdentityResolution(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("KITH_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	people := n / 60
	rng := rand.New(rand.NewPCG(42, 1))
	session := make([]int, people)
	msgs := make([]kith.Message, 0, n)
	logins := 0
	for i := 0; i < n; i++ {
		p := rng.IntN(people)
		var body string
		if rng.IntN(10) < 3 {
			body = fmt.Sprintf(`{"type":"identify","userId":"u%d","anonymousId":"a%d-%d","traits":{"email":"p%d@example.com","plan":"pro"}}`, p, p, session[p], p)
			session[p]++
			logins++
		} else {
			body = fmt.Sprintf(`{"type":"track","event":"Product Viewed","anonymousId":"a%d-%d","properties":{"product_id":"p%d"},"integrations":{"Google Analytics":{"clientId":"g%d-%d"}}}`, p, session[p], i%500, p, session[p])
		}
		parsed := collect.Parse([]byte(`{"batch":[`+body+`]}`), "batch", collect.Meta{ReceivedAt: time.Now()}, collect.DefaultLimits())
		if len(parsed.Messages) != 1 {
			b.Fatalf("fixture rejected: %v", parsed.Rejected)
		}
		m := parsed.Messages[0]
		m.SourceID = "bench"
		msgs = append(msgs, m)
	}
	rules := identity.DefaultRules()
	for i := range rules.Types {
		if n := rules.Types[i].Name; n == kith.IdentAnonymousID || n == "ga_client_id" {
			rules.Types[i].Limit = 100
		}
	}
	b.ResetTimer()
	var total time.Duration
	var merges int
	for range b.N {
		store := benchStore(b)
		total += timeIndex(b, store, msgs, pipeline.Config{Rules: identity.NewCurrent(rules).Load})
		merges = countMerges(b, store, people)
		store.Close()
	}
	b.ReportMetric(float64(len(msgs)*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(float64(merges)/float64(len(msgs)), "merges/event")
	b.ReportMetric(float64(logins)/float64(len(msgs)), "logins/event")
}

// timeIndex logs msgs into store (untimed) and returns how long a running
// indexer with cfg takes to apply them all.
func timeIndex(b *testing.B, store kith.Store, msgs []kith.Message, cfg pipeline.Config) time.Duration {
	b.Helper()
	b.StopTimer()
	defer b.StopTimer()
	for i := 0; i < len(msgs); i += 5000 {
		if _, err := store.Append(context.Background(), kith.AppendBatch{Events: msgs[i:min(i+5000, len(msgs))]}); err != nil {
			b.Fatal(err)
		}
	}
	secret, _ := store.Secret(context.Background())
	ix := pipeline.New(store, secret, cfg)
	head, _ := store.LogHead(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.StartTimer()
	start := time.Now()
	go func() { ix.Run(ctx); close(done) }()
	for ix.Cursor() < head {
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	cancel()
	<-done
	return took
}

// benchStore opens a fresh embedded store, or, when
// KITH_BENCH_POSTGRES_URL is set, a fresh schema in that PostgreSQL
// database (dropped afterwards).
func benchStore(b *testing.B) kith.Store {
	b.Helper()
	ctx := context.Background()
	base := os.Getenv("KITH_BENCH_POSTGRES_URL")
	if base == "" {
		s, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err == nil {
			c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// countMerges sums the merges of every person's profile.
func countMerges(b *testing.B, store kith.Store, people int) int {
	secret, _ := store.Secret(context.Background())
	keyer := identity.NewKeyer(secret)
	total := 0
	for p := range people {
		k := keyer.Key(identity.Normalise(kith.IdentUserID, fmt.Sprintf("u%d", p)))
		o, err := store.LookupIdentifiers(context.Background(), []kith.IdentKey{k})
		if err != nil {
			b.Fatal(err)
		}
		if owner, ok := o[k]; ok {
			ms, err := store.Merges(context.Background(), owner.Canonical)
			if err != nil {
				b.Fatal(err)
			}
			total += len(ms)
		}
	}
	return total
}
