package sqlite_test

import (
	"context"
	"database/sql"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
	"github.com/kithcdp/kith/storetest"
)

func open(t *testing.T, dir string) kith.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformance runs the storage conformance suite on the embedded store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) kith.Store { return open(t, t.TempDir()) })
	storetest.RunPersistence(t, func(t *testing.T) (kith.Store, func() kith.Store) {
		dir := t.TempDir()
		return open(t, dir), func() kith.Store { return open(t, dir) }
	})
}

// TestDataDirectoryIsExclusive checks that a second store cannot open a
// data directory in use (the dedup index lives in one process's memory),
// and can once the first is closed.
func TestDataDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first := open(t, dir)
	if db, err := sqlite.Open(context.Background(), dir, sqlite.Options{}); err == nil {
		db.Close()
		first.Close()
		t.Fatal("a second store opened a data directory in use")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := open(t, dir)
	second.Close()
}

// TestStateRebuiltAfterOSCrash checks the recovery rule for the unsynced
// derived state: a store left open in another boot (an OS crash or power
// cut) has its state.db discarded and rebuilt from the log, while one left
// open in this boot (a process crash, which loses nothing) is kept.
func TestStateRebuiltAfterOSCrash(t *testing.T) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot id on this system: state.db runs with synchronous=NORMAL instead")
	}
	ctx := context.Background()
	tests := []struct {
		name       string
		session    string
		wantCursor int64
	}{
		{"process crash in this boot keeps the state", "open " + strings.TrimSpace(string(boot)), 1},
		{"left open in another boot is rebuilt", "open 00000000-0000-0000-0000-000000000000", 0},
		{"closed cleanly in another boot is kept", "closed 00000000-0000-0000-0000-000000000000", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := open(t, dir)
			m := kith.Message{SourceID: "s", MessageID: "m1", Type: "track", Event: "e", UserID: "u",
				Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{"type":"track"}`)}
			if _, err := db.Append(ctx, kith.AppendBatch{Events: []kith.Message{m}}); err != nil {
				t.Fatal(err)
			}
			if err := db.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 1}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "state.session"), []byte(tc.session+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			db = open(t, dir)
			defer db.Close()
			cur, err := db.IndexCursor(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cur != tc.wantCursor {
				t.Fatalf("cursor %d after reopening, want %d", cur, tc.wantCursor)
			}
			if head, _ := db.LogHead(ctx); head != 1 {
				t.Fatalf("the log lost events: head %d", head)
			}
		})
	}
}

// TestStateMigrationRederives checks that a derived state from before the
// orders table is emptied on upgrade, so the indexer re-derives it from the
// log and orders already indexed get their rows.
func TestStateMigrationRederives(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 7, Profiles: []kith.NewProfile{{ID: "p1", CreatedAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	// Turn state.db back into the first schema version.
	downgrade(t, s, dir, `DROP TABLE orders`, `DROP TABLE consents`, `PRAGMA user_version = 1`)

	s = open(t, dir)
	defer s.Close()
	cur, err := s.IndexCursor(ctx)
	if err != nil || cur != 0 {
		t.Errorf("cursor after upgrade = %d, %v; want 0 (re-derive from the log)", cur, err)
	}
	if _, err := s.Canonical(ctx, "p1"); kith.ErrorCode(err) != kith.ENOTFOUND {
		t.Errorf("old derived profile still there: %v", err)
	}
	if err := s.ScanOrders(ctx, func(kith.CustomerOrders) error { return nil }); err != nil {
		t.Errorf("orders table missing after upgrade: %v", err)
	}
}

// Suppressed events were once counted as the rejection reason
// "suppressed"; upgrading moves that counter to Counts.Suppressed.
func TestSuppressedCounterMigrates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open(t, dir).Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	} else if version < 8 {
		t.Fatalf("log.db schema version %d, want the counter move (8) applied", version)
	}
	for _, q := range []string{
		`INSERT INTO counters (source_id, name, value) VALUES ('s', 'received', 5), ('s', 'rejected:suppressed', 3), ('s', 'rejected:invalid_json', 2)`,
		// Before the move (log.db migration 8): the migrations after it
		// run again too, so they must be idempotent.
		`PRAGMA user_version = 7`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := open(t, dir)
	defer s.Close()
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := kith.Counts{Received: 5, Suppressed: 3, Rejected: map[string]int64{kith.ReasonInvalidJSON: 2}}
	if got := c["s"]; got.Received != want.Received || got.Suppressed != want.Suppressed || !maps.Equal(got.Rejected, want.Rejected) {
		t.Errorf("counts after upgrade %+v, want %+v", got, want)
	}
}

// TestIdentifierIndexMigrates checks the upgrade that drops the unique
// index on identifier keys: the rows are kept, found by key after the
// upgrade and after a restart (the index in memory is rebuilt from the
// table), and a known identifier is widened, not added twice.
func TestIdentifierIndexMigrates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	k1, k2 := kith.IdentKey{1, 2, 3}, kith.IdentKey{9, 9, 9}
	s := open(t, dir)
	if err := s.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 1,
		Profiles:    []kith.NewProfile{{ID: "p1", CreatedAt: at}},
		Identifiers: []kith.IdentifierUpsert{{Key: k1, Type: "email", Value: "a@example.org", ProfileID: "p1", SourceID: "s", MessageID: "m1", FirstSeen: at, LastSeen: at}},
	}); err != nil {
		t.Fatal(err)
	}
	// Turn state.db's identifiers back into the table with a unique key.
	downgrade(t, s, dir,
		`CREATE TABLE old (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, type TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
			source_id TEXT NOT NULL, message_id TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL)`,
		`INSERT INTO old SELECT * FROM identifiers`,
		`DROP TABLE identifiers`,
		`ALTER TABLE old RENAME TO identifiers`,
		`CREATE INDEX identifiers_profile ON identifiers (profile_id)`,
		`PRAGMA user_version = 3`,
	)

	for i := 0; i < 2; i++ { // the upgrade, then a restart
		s = open(t, dir)
		got, err := s.LookupIdentifiers(ctx, []kith.IdentKey{k1, k2})
		if err != nil {
			t.Fatal(err)
		}
		want := map[kith.IdentKey]kith.IdentOwner{k1: {ProfileID: "p1", Canonical: "p1"}}
		if i == 1 {
			want[k2] = kith.IdentOwner{ProfileID: "p1", Canonical: "p1"}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("open %d: lookup = %v, want %v", i, got, want)
		}
		if i == 0 {
			later := at.Add(time.Hour)
			if err := s.ApplyIndexBatch(ctx, 1, kith.IndexBatch{Cursor: 2, Identifiers: []kith.IdentifierUpsert{
				{Key: k1, Type: "email", Value: "a@example.org", ProfileID: "p1", SourceID: "s", MessageID: "m2", FirstSeen: later, LastSeen: later},
				{Key: k2, Type: "user_id", Value: "u2", ProfileID: "p1", SourceID: "s", MessageID: "m2", FirstSeen: later, LastSeen: later},
				{Key: k2, Type: "user_id", Value: "u2", ProfileID: "p1", SourceID: "s", MessageID: "m2", FirstSeen: at, LastSeen: later},
			}}); err != nil {
				t.Fatal(err)
			}
		}
		ids, err := s.Identities(ctx, "p1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 2 {
			t.Fatalf("open %d: identities %+v, want a@example.org and u2 once each", i, ids)
		}
		for _, id := range ids {
			if !id.FirstSeen.Equal(at) || !id.LastSeen.Equal(at.Add(time.Hour)) {
				t.Errorf("open %d: %s seen %v to %v, want %v to %v", i, id.Value, id.FirstSeen, id.LastSeen, at, at.Add(time.Hour))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var unique int
	db := stateFile(t, dir)
	if err := db.QueryRow(`SELECT COUNT(*) FROM pragma_index_list('identifiers') WHERE "unique"`).Scan(&unique); err != nil || unique != 0 {
		t.Errorf("unique indexes on identifiers after the upgrade: %d, %v; want none", unique, err)
	}
}

// downgrade closes s and runs qs on the state.db of dir, to make it what an
// older version left.
func downgrade(t *testing.T, s kith.Store, dir string, qs ...string) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := stateFile(t, dir)
	defer db.Close() // before the store opens the file again
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// stateFile opens the state.db of dir directly, closed with the test.
func stateFile(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
