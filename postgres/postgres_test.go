package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/storetest"
)

// envURL names the environment variable that enables these tests.
const envURL = storetest.PostgresEnv

// testURL returns the test database URL, or skips the test (fails it
// under CI).
func testURL(tb testing.TB) string {
	tb.Helper()
	return storetest.PostgresURL(tb)
}

// newSchema creates a uniquely named, empty schema, drops it when the test
// ends, and returns the test URL with its search_path set to the schema.
func newSchema(tb testing.TB) string {
	tb.Helper()
	base := testURL(tb)
	ctx := context.Background()
	suffix := make([]byte, 6)
	rand.Read(suffix)
	name := "kith_test_" + hex.EncodeToString(suffix)

	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v", envURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("connect to drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", name, err)
		}
	})
	return withSearchPath(tb, base, name)
}

// withSearchPath adds a search_path run-time parameter to a connection
// string in URL or key=value form.
func withSearchPath(tb testing.TB, conn, schema string) string {
	if !strings.HasPrefix(conn, "postgres://") && !strings.HasPrefix(conn, "postgresql://") {
		return conn + " search_path=" + schema
	}
	u, err := url.Parse(conn)
	if err != nil {
		tb.Fatalf("parse %s: %v", envURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// mustOpen opens the store at url or fails the test.
func mustOpen(tb testing.TB, url string) *DB {
	tb.Helper()
	db, err := Open(context.Background(), url)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return db
}

// TestStore runs the conformance suite, each subtest in a fresh schema.
func TestStore(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) kith.Store {
		return mustOpen(t, newSchema(t))
	})
}

// TestPersistence runs the reopen part of the conformance suite.
func TestPersistence(t *testing.T) {
	testURL(t)
	storetest.RunPersistence(t, func(t *testing.T) (kith.Store, func() kith.Store) {
		url := newSchema(t)
		return mustOpen(t, url), func() kith.Store { return mustOpen(t, url) }
	})
}

// TestMigrateConcurrent starts several stores on one empty schema at once:
// every migration must be applied exactly once and all must open.
func TestMigrateConcurrent(t *testing.T) {
	url := newSchema(t)
	const starters = 6
	var wg sync.WaitGroup
	dbs := make([]*DB, starters)
	errs := make([]error, starters)
	for i := range starters {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), url) })
	}
	wg.Wait()
	for i := range starters {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	var n, newest int
	err := dbs[0].pool.QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &newest)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || newest != len(migrations) {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d", n, newest, len(migrations))
	}
	var cursors int
	if err := dbs[0].pool.QueryRow(t.Context(), `SELECT count(*) FROM index_cursor`).Scan(&cursors); err != nil {
		t.Fatal(err)
	}
	if cursors != 1 {
		t.Errorf("index_cursor has %d rows, want 1", cursors)
	}
}

// TestMigrateNewerSchema checks that a binary refuses a database migrated
// by a newer one instead of running against a schema it does not know.
func TestMigrateNewerSchema(t *testing.T) {
	url := newSchema(t)
	db := mustOpen(t, url)
	_, err := db.pool.Exec(t.Context(), `INSERT INTO schema_migrations (version) VALUES ($1)`, len(migrations)+1)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if db, err := Open(t.Context(), url); err == nil {
		db.Close()
		t.Fatal("Open succeeded on a schema newer than the binary")
	}
}

// TestNoPersonalDataInKeys checks the schema rule that identifiers are
// keyed by their hash: no index of the identifiers table covers the value.
func TestNoPersonalDataInKeys(t *testing.T) {
	db := mustOpen(t, newSchema(t))
	defer db.Close()
	rows, err := db.pool.Query(t.Context(), `
		SELECT indexdef FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename IN ('identifiers', 'traits', 'merges')`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range defs {
		if strings.Contains(def, "(value") || strings.Contains(def, " value") || strings.Contains(def, "ident)") {
			t.Errorf("index on personal data: %s", def)
		}
	}
}

// TestAppendText checks the PostgreSQL-specific limits of the ack path:
// a \u0000 escape in the raw JSON is stored (raw is json, not jsonb), while
// a value the database refuses (a NUL byte in a typed field or in a
// rejection reason) fails the batch with EINVALID and writes nothing, so
// the committer can tell refused data from an unavailable database and
// commit the group's requests one by one.
func TestAppendText(t *testing.T) {
	db := mustOpen(t, newSchema(t))
	defer db.Close()
	now := time.Now()
	ok := kith.Message{SourceID: "s", MessageID: "a", Type: "track", Event: "e", Timestamp: now, ReceivedAt: now, Raw: []byte(`{"e":"a\u0000b"}`)}
	if _, err := db.Append(t.Context(), kith.AppendBatch{Events: []kith.Message{ok}}); err != nil {
		t.Fatalf("Append with a \\u0000 escape in Raw: %v", err)
	}
	bad := ok
	bad.MessageID, bad.UserID = "b", "user\x00x"
	good := ok
	good.MessageID = "c"
	_, err := db.Append(t.Context(), kith.AppendBatch{Events: []kith.Message{good, bad}})
	if kith.ErrorCode(err) != kith.EINVALID {
		t.Fatalf("Append with a NUL byte in userId: %v, want EINVALID", err)
	}
	if head, err := db.LogHead(t.Context()); err != nil || head != 1 {
		t.Errorf("LogHead = %d, %v; want 1 (nothing of the failed batch stored)", head, err)
	}
	_, err = db.Append(t.Context(), kith.AppendBatch{Events: []kith.Message{good}, Rejected: map[string]map[string]int64{"s": {"x\x00": 1}}})
	if kith.ErrorCode(err) != kith.EINVALID {
		t.Fatalf("Append with a NUL byte in a rejection reason: %v, want EINVALID", err)
	}
	if head, err := db.LogHead(t.Context()); err != nil || head != 1 {
		t.Errorf("LogHead = %d, %v; want 1 (nothing of the failed batch stored)", head, err)
	}
}

// BenchmarkAppend measures the ack path: group commits of 500 events of
// about 350 bytes each, deduplicated and counted.
func BenchmarkAppend(b *testing.B) {
	db := mustOpen(b, newSchema(b))
	defer db.Close()
	const perBatch = 500
	revenue := 42.5
	props, _ := json.Marshal(map[string]any{
		"order_id": "o-12345", "revenue": revenue, "currency": "EUR",
		"products": []any{map[string]any{"product_id": "p-1", "sku": "SKU-1", "name": "Kaffee", "price": 42.5, "quantity": 1}},
	})
	now := time.Now().UTC()
	events := make([]kith.Message, perBatch)
	batch := 0
	for b.Loop() {
		for i := range events {
			id := fmt.Sprintf("bench-%d-%d", batch, i)
			events[i] = kith.Message{
				SourceID: "src_bench", MessageID: id, Type: "track", Event: "Order Completed",
				UserID: "user-" + id, Timestamp: now, ReceivedAt: now, Revenue: &revenue,
				Raw: []byte(`{"type":"track","event":"Order Completed","messageId":"` + id + `","userId":"user-` + id + `","properties":` + string(props) + `}`),
			}
		}
		batch++
		if _, err := db.Append(context.Background(), kith.AppendBatch{Events: events}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
}

// Suppressed events were once counted as the rejection reason
// "suppressed"; upgrading moves that counter to Counts.Suppressed.
func TestSuppressedCounterMigrates(t *testing.T) {
	url := newSchema(t)
	db := mustOpen(t, url)
	for _, q := range []string{
		`INSERT INTO counters (source_id, name, value) VALUES ('s', 'received', 5), ('s', 'rejected:suppressed', 3), ('s', 'rejected:invalid_json', 2)`,
		`DELETE FROM schema_migrations WHERE version = 13`, // before the move
	} {
		if _, err := db.pool.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db = mustOpen(t, url)
	defer db.Close()
	c, err := db.Counts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := kith.Counts{Received: 5, Suppressed: 3, Rejected: map[string]int64{kith.ReasonInvalidJSON: 2}}
	if got := c["s"]; got.Received != want.Received || got.Suppressed != want.Suppressed || !maps.Equal(got.Rejected, want.Rejected) {
		t.Errorf("counts after upgrade %+v, want %+v", got, want)
	}
}
